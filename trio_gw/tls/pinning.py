"""Public-key pinning of upstream certificates (Tyk ``pinned_public_keys``).

Theory of operation
-------------------
A pin is the SHA-256 digest of a certificate's DER ``SubjectPublicKeyInfo``,
written ``sha256//<base64>`` as curl's ``--pinnedpubkey`` and HPKP write it
(``docs/tls-stack.md`` §7: the same value as ``openssl x509 -pubkey |
openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64``).
Tyk's configuration may also name a certificate instead of a pin (a store id,
or a PEM file); the IO layer reads such a certificate and turns it into a pin
with :func:`spki_pin` before the policy is built, so a :class:`PinSet` only
ever holds digests.

The check runs right after the handshake and before a single byte of the
request is written, on the leaf the upstream presented (pinning an
intermediate would need the private chain API, and the chain is empty on
resumed sessions).  It is independent of chain verification: a pin is checked
even when ``tls_verify`` is off.  Digests are compared with
:func:`hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trio_gw.errors import ConfigError

__all__ = ["PIN_PREFIX", "PinSet", "is_pin", "matches_pins", "parse_pin", "spki_digest", "spki_pin"]

#: The spelling of a pin (curl ``--pinnedpubkey``, Tyk ``pinned_public_keys``).
PIN_PREFIX = "sha256//"
_DIGEST_SIZE = 32


def spki_digest(cert_der: bytes) -> bytes:
    """Return the SHA-256 digest of a certificate's DER SubjectPublicKeyInfo.

    Args:
        cert_der: the certificate in DER form.

    Returns:
        32 bytes.

    Raises:
        ValueError: ``cert_der`` is not a certificate.
    """
    cert = x509.load_der_x509_certificate(cert_der)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def spki_pin(cert_der: bytes) -> str:
    """Return the ``sha256//<base64>`` pin of a certificate (DER)."""
    return PIN_PREFIX + base64.b64encode(spki_digest(cert_der)).decode("ascii")


def is_pin(value: str) -> bool:
    """Tell whether ``value`` is spelled as a pin (``sha256//...``), valid or not."""
    return value.strip().lower().startswith(PIN_PREFIX)


def parse_pin(value: str, *, path: str) -> bytes:
    """Return the digest of a ``sha256//<base64>`` pin.

    Args:
        value: the pin as configured.
        path: where it was configured (for the error).

    Returns:
        The 32-byte digest.

    Raises:
        ConfigError: not a pin, bad base64, or not 32 bytes.
    """
    text = value.strip()
    if not text.lower().startswith(PIN_PREFIX):
        raise ConfigError(f"expected a pin 'sha256//<base64>', got {value[:80]!r}", path)
    try:
        digest = base64.b64decode(text[len(PIN_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ConfigError(f"the pin {value[:80]!r} is not valid base64", path) from exc
    if len(digest) != _DIGEST_SIZE:
        raise ConfigError(f"the pin {value[:80]!r} is {len(digest)} bytes; a SHA-256 pin is 32", path)
    return digest


@dataclass(frozen=True)
class PinSet:
    """The accepted public-key digests for one upstream (empty: no pinning)."""

    digests: frozenset[bytes] = frozenset()

    @classmethod
    def from_pins(cls, pins: Iterable[str], *, path: str) -> PinSet:
        """Build from ``sha256//`` pins (a :class:`ConfigError` names the first bad one)."""
        return cls(frozenset(parse_pin(p, path=f"{path}[{i}]") for i, p in enumerate(pins)))

    def __bool__(self) -> bool:
        return bool(self.digests)

    def describe(self) -> str:
        """Return the pins, sorted, for logs and tests."""
        return ", ".join(sorted(PIN_PREFIX + base64.b64encode(d).decode() for d in self.digests))


def matches_pins(pins: PinSet, cert_der: bytes) -> bool:
    """Tell whether the leaf ``cert_der`` carries one of the pinned public keys.

    Args:
        pins: the accepted digests; an empty set accepts every certificate.
        cert_der: the leaf the upstream presented (DER).

    Returns:
        True when ``pins`` is empty or the leaf's SPKI digest is in it.  A leaf
        that cannot be parsed matches nothing.
    """
    if not pins:
        return True
    try:
        digest = spki_digest(cert_der)
    except ValueError:
        return False
    found = False
    for pinned in pins.digests:  # no early exit: the time does not say which pin was close
        found |= hmac.compare_digest(pinned, digest)
    return found
