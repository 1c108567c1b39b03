"""What a route accepts as a client certificate, and the X.509 profile it implies.

Theory of operation
-------------------
:class:`ClientCertPolicy` is the frozen, validated configuration that
:func:`trio_gw.tls.client_auth.verify_client_certificate` applies.  It is
compiled once per snapshot: anchors parsed, the cryptography ``Store`` built
(roots only unless ``allow_partial_chain``: cryptography trusts every
certificate in its store, so with partial chains off the non-root CAs are
kept aside as untrusted chain material, which is what OpenSSL does without
``X509_V_FLAG_PARTIAL_CHAIN``).

The extension policies relax cryptography's WebPKI defaults (docs/tls-stack.md
§2) to what OpenSSL accepts from private client PKIs:

* end entity: SAN optional and of any criticality (CN-only and trustme-style
  critical SANs), AKI optional, basicConstraints of any kind (``CA:TRUE`` as
  ``openssl req -x509`` makes), keyUsage (when present) allowing
  digitalSignature or keyAgreement (OpenSSL's SSL-client purpose), and an
  EKU (when present) listing ``required_eku`` -- no EKU is accepted,
  ``anyExtendedKeyUsage`` alone is not (OpenSSL agrees);
* CA: keyUsage optional (keyCertSign required when present),
  basicConstraints of any criticality but required with ``CA:TRUE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, Policy, Store

from trio_gw.errors import CertificateError, ConfigError
from trio_gw.pki.parse import parse_der
from trio_gw.tls.revocation import RevocationCheckMode, parse_revocation_check_mode

__all__ = [
    "CA_EXTENSION_POLICY",
    "DEFAULT_MAX_DEPTH",
    "MAX_DEPTH_LIMIT",
    "ClientCertPolicy",
    "ee_extension_policy",
]

#: Intermediates allowed between the leaf and an anchor when not configured.
#: cryptography defaults to 8 and OpenSSL to 100; client PKIs rarely have
#: more than two intermediates (nginx's ``ssl_verify_depth`` default, 1,
#: allows a single one), so 4 leaves margin while keeping path building short.
DEFAULT_MAX_DEPTH: Final = 4
#: Largest ``max_depth`` a policy may set (cryptography's default).
MAX_DEPTH_LIMIT: Final = 8

_EKU_MARKER: Final = "trio-gw: extended key usage lacks the required purpose"


@dataclass(frozen=True)
class ClientCertPolicy:
    """What a route accepts as a client certificate; validated on construction.

    Args:
        trust_anchors: CA certificates (DER or parsed); a self-signed or, with
            ``allow_partial_chain``, any pinned leaf is an anchor too.
        allow_partial_chain: an anchor that is not a root ends the chain.
        max_depth: intermediates allowed between leaf and anchor (0: issued
            by an anchor), at most :data:`MAX_DEPTH_LIMIT`.
        revocation_check_mode: ``SKIP``, ``IGNORE_CA_ERROR`` or ``STRICT``.
        crls: CRLs known at compile time (from CA certificate entities);
            fetched ones are passed to
            :func:`~trio_gw.tls.client_auth.verify_client_certificate`.
        revocation_full_chain: check intermediates too, not just the leaf.
        allowed_fingerprints: when set, SHA-256 hex fingerprints of the only
            leaves accepted (lowercase, no colons).
        required_eku: the purpose a present EKU must list.

    Raises:
        ConfigError: no anchor, an unparsable anchor, or ``max_depth`` out of
            range.
    """

    trust_anchors: Sequence[x509.Certificate | bytes]
    allow_partial_chain: bool = False
    max_depth: int = DEFAULT_MAX_DEPTH
    revocation_check_mode: RevocationCheckMode | str = RevocationCheckMode.SKIP
    crls: Sequence[x509.CertificateRevocationList] = ()
    revocation_full_chain: bool = False
    allowed_fingerprints: frozenset[str] | None = None
    required_eku: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH
    anchors: tuple[x509.Certificate, ...] = field(init=False, repr=False, compare=False)
    """The parsed ``trust_anchors``."""
    store: Store = field(init=False, repr=False, compare=False)
    """The anchors path building may end at (roots only unless partial chains)."""
    untrusted_anchors: tuple[x509.Certificate, ...] = field(
        init=False, repr=False, compare=False
    )
    """Configured non-root CAs, used as chain material when partial chains are off."""

    def __post_init__(self) -> None:
        anchors = tuple(_anchor(a, i) for i, a in enumerate(self.trust_anchors))
        if not anchors:
            raise ConfigError(
                "at least one trust anchor is required", "ca_certificates"
            )
        if not 0 <= self.max_depth <= MAX_DEPTH_LIMIT:
            raise ConfigError(f"must be between 0 and {MAX_DEPTH_LIMIT}", "max_depth")
        try:
            mode = parse_revocation_check_mode(self.revocation_check_mode)
        except CertificateError as exc:
            raise ConfigError(str(exc), "revocation_check_mode") from exc
        roots = (
            anchors
            if self.allow_partial_chain
            else tuple(a for a in anchors if _self_issued(a))
        )
        if not roots:
            raise ConfigError(
                "no self-signed root among the anchors; enable allow_partial_chain",
                "ca_certificates",
            )
        untrusted = tuple(a for a in anchors if a not in roots)
        allowed = self.allowed_fingerprints
        if allowed is not None:
            allowed = frozenset(f.replace(":", "").lower() for f in allowed)
        set_ = object.__setattr__
        set_(self, "trust_anchors", anchors)
        set_(self, "revocation_check_mode", mode)
        set_(self, "crls", tuple(self.crls))
        set_(self, "allowed_fingerprints", allowed)
        set_(self, "anchors", anchors)
        set_(self, "store", Store(list(roots)))
        set_(self, "untrusted_anchors", untrusted)


def ee_extension_policy(
    required_eku: x509.ObjectIdentifier, eku_failures: list[str]
) -> ExtensionPolicy:
    """The end-entity extension policy (see the module docstring).

    Args:
        required_eku: the purpose a present EKU must list.
        eku_failures: appended to when the EKU check fails, so the caller
            can tell ``bad_eku`` from other failures without parsing text.

    Returns:
        The policy, for ``PolicyBuilder.extension_policies(ee_policy=...)``.
    """
    required = required_eku

    def check_eku(
        _: Policy, __: x509.Certificate, eku: x509.ExtendedKeyUsage | None
    ) -> None:
        if eku is not None and required not in eku:
            eku_failures.append(_EKU_MARKER)
            raise ValueError(_EKU_MARKER)

    return (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
        .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _check_ee_key_usage)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, check_eku)
    )


def _check_ee_key_usage(
    _: Policy, __: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    # OpenSSL's SSL-client purpose: digitalSignature or keyAgreement when present.
    if usage is not None and not (usage.digital_signature or usage.key_agreement):
        raise ValueError("keyUsage allows neither digitalSignature nor keyAgreement")


def _check_ca_key_usage(
    _: Policy, __: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("CA keyUsage lacks keyCertSign")


def _check_ca_flag(
    _: Policy, __: x509.Certificate, constraints: x509.BasicConstraints
) -> None:
    if not constraints.ca:
        raise ValueError("basicConstraints.cA must be asserted in a CA certificate")


#: The CA extension policy (see the module docstring).
CA_EXTENSION_POLICY: Final = (
    ExtensionPolicy.webpki_defaults_ca()
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _check_ca_key_usage)
    .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _check_ca_flag)
)


def _anchor(value: x509.Certificate | bytes, index: int) -> x509.Certificate:
    if isinstance(value, x509.Certificate):
        return value
    try:
        return parse_der(value)
    except CertificateError as exc:
        raise ConfigError(str(exc), f"ca_certificates[{index}]") from exc


def _self_issued(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer
