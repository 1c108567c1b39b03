"""Revocation of client certificates trusted by a listener's own truststore: nginx's ``ssl_ocsp``.

Theory of operation
-------------------
Two truststores accept client certificates in the handshake itself, before
any route or plugin sees them: the server truststore (``ssl_verify_client`` +
``ssl_client_certificate``, nginx's) and the Admin API's (``admin_mtls`` +
``admin_mtls_ca_certificates``).  nginx checks such certificates with
``ssl_ocsp on|leaf`` and fails closed; trio-gw does the same check, per
request, on the certificate the connection's handshake verified:

1. the path from the leaf to an anchor of *this* truststore is rebuilt from
   what the client sent and the anchors (name and signature, bounded depth).
   A certificate that does not chain to one of them was admitted by another
   trust anchor in the union the listener trusts (a route's ``mtls-auth``
   CA): that route's plugin checks it, this check has nothing to say;
2. :func:`~trio_gw.tls.client_revocation.check_chain_revocation` -- OCSP
   answers first (the IO layer's cache, fetched off the request path), then
   the CRLs at hand: the configured ones (``ssl_crl``) and those the
   certificates' distribution points name, as fetched;
3. :func:`~trio_gw.tls.client_revocation.revocation_refusal` under the mode
   ``ssl_ocsp`` gives (``on``: ``STRICT`` over the chain, ``leaf``:
   ``STRICT`` over the leaf): ``revoked`` or ``revocation_unknown``.

The check runs on every request, so a certificate revoked while a connection
(or a resumed session) lives is refused from its next request on.  Pure: the
caches are read through callables, time is a parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final

from cryptography import x509

from trio_gw.errors import CertificateError, ConfigError
from trio_gw.pki.parse import parse_certificates, parse_der
from trio_gw.tls.client_revocation import OcspAnswers, check_chain_revocation, issuer_in, parse_ssl_ocsp, revocation_refusal
from trio_gw.tls.revocation import RevocationCheckMode, crl_distribution_urls, parse_crl

__all__ = ["MAX_PATH_LENGTH", "TruststoreRevocation", "build_truststore_revocation", "check_truststore_revocation"]

#: Longest leaf-to-anchor path rebuilt (OpenSSL's default verify depth is 100; real chains are 2-4).
MAX_PATH_LENGTH: Final = 10

#: Reads a fetched CRL by distribution-point URL (the node's CRL cache), ``None`` on a miss.
CrlLookup = Callable[[str, float], "x509.CertificateRevocationList | None"]


@dataclass(frozen=True)
class TruststoreRevocation:
    """The revocation check of one truststore (see the module docstring)."""

    setting: str = "ssl_ocsp"
    mode: RevocationCheckMode = RevocationCheckMode.SKIP
    full_chain: bool = False
    anchors: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()

    @property
    def active(self) -> bool:
        """Whether anything is checked."""
        return self.mode is not RevocationCheckMode.SKIP and bool(self.anchors)


def build_truststore_revocation(
    setting: str, value: object, anchors_pem: Sequence[str], crl_data: Sequence[bytes], *, crl_setting: str
) -> TruststoreRevocation:
    """Compile a truststore's revocation check (at build time).

    Args:
        setting: ``ssl_ocsp`` or ``admin_ssl_ocsp`` (named in problems).
        value: its value (``off``, ``on``, ``leaf``).
        anchors_pem: the truststore's CA certificates, PEM.
        crl_data: the contents of the CRL files (``ssl_crl`` / ``admin_ssl_crl``).
        crl_setting: the CRL setting's name, for problems.

    Returns:
        The check; inactive when ``value`` is ``off``.

    Raises:
        ConfigError: a bad value, an anchor or a CRL that cannot be read, naming the setting.
    """
    mode, full_chain = parse_ssl_ocsp(value, setting)
    if mode is RevocationCheckMode.SKIP:
        return TruststoreRevocation(setting)
    anchors: list[x509.Certificate] = []
    for pem in anchors_pem:
        try:
            anchors.extend(parse_certificates(pem))
        except CertificateError as exc:
            raise ConfigError(f"a CA certificate of the truststore cannot be read: {exc}", setting) from exc
    crls = []
    for i, data in enumerate(crl_data):
        try:
            crls.append(parse_crl(data))
        except CertificateError as exc:
            raise ConfigError(str(exc), f"{crl_setting}[{i}]") from exc
    return TruststoreRevocation(setting, mode, full_chain, tuple(anchors), tuple(crls))


def check_truststore_revocation(
    policy: TruststoreRevocation,
    leaf_der: bytes | None,
    chain_der: Sequence[bytes],
    *,
    crl_for: CrlLookup | None,
    ocsp: OcspAnswers | None,
    now: float,
) -> tuple[str, str] | None:
    """Whether the connection's client certificate is refused for revocation.

    Args:
        policy: the truststore's check.
        leaf_der: the certificate the handshake verified (``None``: none was sent).
        chain_der: what the client sent after it (empty on a resumed session).
        crl_for: the node's fetched CRLs by URL (``None``: configured CRLs only).
        ocsp: the node's verified OCSP answers (``None``: CRLs only).
        now: Unix seconds.

    Returns:
        ``(reason, detail)`` -- reason ``revoked`` or ``revocation_unknown`` -- or
        ``None`` when the certificate is accepted or not this truststore's.
    """
    if not policy.active or leaf_der is None:
        return None
    path = _path_to_anchor(leaf_der, chain_der, policy.anchors)
    if path is None:
        return None
    checked = path if policy.full_chain else path[:1]
    crls = list(policy.crls)
    if crl_for is not None:
        for cert in checked:
            for url in crl_distribution_urls(cert):
                crl = crl_for(url, now)
                if crl is not None:
                    crls.append(crl)
    moment = datetime.fromtimestamp(now, timezone.utc)
    checks = check_chain_revocation(path, crls=crls, ocsp=ocsp, now=moment, full_chain=policy.full_chain)
    return revocation_refusal(checks, policy.mode)


def _path_to_anchor(
    leaf_der: bytes, chain_der: Sequence[bytes], anchors: Sequence[x509.Certificate]
) -> list[x509.Certificate] | None:
    """Leaf first, anchor last; ``None`` when the leaf does not chain to one of ``anchors``."""
    try:
        leaf = parse_der(leaf_der)
    except CertificateError:
        return None
    presented = []
    for der in chain_der:
        try:
            presented.append(parse_der(der))
        except CertificateError:
            continue
    path = [leaf]
    while len(path) <= MAX_PATH_LENGTH:
        current = path[-1]
        anchor = issuer_in(current, anchors)
        if anchor is not None:
            return path if anchor == current else [*path, anchor]
        issuer = issuer_in(current, [c for c in presented if c not in path])
        if issuer is None:
            return None
        path.append(issuer)
    return None
