"""What an ACME issuance gives and how it fails, without the ACME library.

:mod:`trio_gw.net.acme_client` drives certbot's ``acme`` package, which brings
``requests``, ``urllib3``, ``josepy`` and pyOpenSSL: about 17 MiB of resident
memory in every process.  The node imports that module only when the ``acme``
plugin is configured; everything else that names an account, a result or a
failure imports them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["CHALLENGE_TYPES", "HTTP_01", "TLS_ALPN_01", "AcmeAccount", "AcmeError", "IssuedCertificate"]

HTTP_01: Final = "http-01"
TLS_ALPN_01: Final = "tls-alpn-01"
CHALLENGE_TYPES: Final = (HTTP_01, TLS_ALPN_01)


class AcmeError(Exception):
    """An issuance that did not happen; ``reason`` is stable, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class AcmeAccount:
    """An ACME account: its key (PEM, secret: keep it sealed) and URL."""

    key_pem: str = field(repr=False)
    uri: str


@dataclass(frozen=True)
class IssuedCertificate:
    """What to store as a Certificate entity with SNIs: the chosen full chain and its key (secret)."""

    domains: tuple[str, ...]
    cert_pem: str
    key_pem: str = field(repr=False)
    not_after: int = 0
    chains_offered: int = 1
