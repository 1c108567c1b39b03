"""Build test PKIs with exact control over validity, names and extensions.

trustme covers the common case (a CA, leaves by name, ``not_before``/
``not_after`` on leaves).  This module covers what trustme cannot: expired or
not-yet-valid CAs, CN-only leaves, self-signed leaves, CAs without
``CA:TRUE``, chosen key types (RSA, EC, Ed25519) and chains of any depth.
Nothing is written to disk.

Times are Unix seconds, as everywhere in trio-gw.  Example::

    root = make_ca()
    leaf = issue(root, dns_names=["api.example"], not_after=EXPIRED_AT)
    entity = {"cert": leaf.chain_pem(), "key": leaf.key_pem()}
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Final, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    import trustme

#: Default validity window: 2000-01-01 to 3000-01-01 (trustme's choice).
DEFAULT_NOT_BEFORE: Final = 946_684_800
DEFAULT_NOT_AFTER: Final = 32_503_680_000
#: 2024-01-01T00:00:00Z: a convenient expiry in the past.
EXPIRED_AT: Final = 1_704_067_200
#: 2100-01-01T00:00:00Z: a convenient start in the future.
FUTURE_START: Final = 4_102_444_800
#: Key types :func:`make_key` knows.
KEY_KINDS: Final = ("ec", "rsa", "ed25519", "ed448")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Issued:
    """A certificate, its private key and the certificates above it.

    ``parents`` runs from the issuer upwards to the root (empty when
    self-signed).  ``chain_pem()`` is what a server sends: leaf, then the
    intermediates, without the root.
    """

    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes
    parents: tuple[Issued, ...] = field(default=(), repr=False)

    @classmethod
    def from_trustme(cls, ca: trustme.CA) -> Issued:
        """A trustme CA (and the CAs above it) as an :class:`Issued`, to sign what trustme cannot make.

        trustme 1.2 builds a CN-only leaf with an *empty* subjectAltName, which
        cryptography 51 refuses to build at all: a test that needs a SAN-less
        leaf under a trustme CA uses ``issue(Issued.from_trustme(ca), common_name=...)``.
        Only trustme's public attributes are read (``cert_pem``, ``private_key_pem``, ``parent_cert``).
        """
        parents: tuple[Issued, ...] = ()
        if ca.parent_cert is not None:
            parent = cls.from_trustme(ca.parent_cert)
            parents = (parent, *parent.parents)
        cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
        key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
        return cls(cert, cast("CertificateIssuerPrivateKeyTypes", key), parents)

    @property
    def root(self) -> Issued:
        """The self-signed certificate at the top (``self`` when self-signed)."""
        return self.parents[-1] if self.parents else self

    def cert_pem(self) -> str:
        """This certificate alone, as PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def cert_der(self) -> bytes:
        """This certificate alone, as DER."""
        return self.cert.public_bytes(serialization.Encoding.DER)

    def chain_pem(self) -> str:
        """This certificate then its intermediates (root excluded), as PEM."""
        return self.cert_pem() + "".join(p.cert_pem() for p in self.parents[:-1])

    def key_pem(self, *, password: bytes | None = None, fmt: str = "pkcs8") -> str:
        """The private key as PEM.

        Args:
            password: encrypt the key with this passphrase (PKCS#8 or
                OpenSSL legacy, depending on ``fmt``).
            fmt: ``"pkcs8"`` (``PRIVATE KEY``) or ``"traditional"`` (PKCS#1
                ``RSA PRIVATE KEY`` / SEC1 ``EC PRIVATE KEY``).

        Returns:
            The PEM text.
        """
        formats = {
            "pkcs8": serialization.PrivateFormat.PKCS8,
            "traditional": serialization.PrivateFormat.TraditionalOpenSSL,
        }
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, formats[fmt], encryption
        ).decode("ascii")


def make_key(kind: str = "ec", *, rsa_bits: int = 2048) -> CertificateIssuerPrivateKeyTypes:
    """Generate a private key.

    Args:
        kind: one of :data:`KEY_KINDS` (``"ec"`` is P-256).
        rsa_bits: modulus size for ``"rsa"``.

    Returns:
        A fresh key.

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}; expected one of {KEY_KINDS}")


def build_certificate(
    *,
    issuer: Issued | None = None,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    key_kind: str = "ec",
    common_name: str | None = None,
    organization_name: str | None = "trio-gw tests",
    organizational_unit_name: str | None = None,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    uris: Sequence[str] = (),
    emails: Sequence[str] = (),
    not_before: int = DEFAULT_NOT_BEFORE,
    not_after: int = DEFAULT_NOT_AFTER,
    is_ca: bool = False,
    path_length: int | None = None,
    basic_constraints: bool = True,
    client_auth: bool = True,
    server_auth: bool = True,
    serial: int | None = None,
    crl_urls: Sequence[str] = (),
    ocsp_urls: Sequence[str] = (),
    must_staple: bool = False,
    ekus: Sequence[x509.ObjectIdentifier] | None = None,
    ocsp_nocheck: bool = False,
) -> Issued:
    """Build one certificate; the general builder behind every helper here.

    Args:
        issuer: who signs it; ``None`` makes it self-signed.
        key: its key pair; generated with ``key_kind`` when ``None``.
        key_kind: see :func:`make_key`.
        common_name: subject CN.
        organization_name, organizational_unit_name: subject O and OU
            (``O=trio-gw tests`` unless told otherwise).
        dns_names, ip_addresses, uris, emails: SAN entries; no SAN extension
            when all are empty.
        not_before, not_after: validity window, Unix seconds.
        is_ca: ``basicConstraints`` CA flag (also sets CA key usage).
        path_length: ``basicConstraints`` pathLenConstraint (CAs only).
        basic_constraints: include the ``basicConstraints`` extension at all.
        client_auth, server_auth: EKUs of a leaf (no EKU extension if neither).
        serial: serial number; random when ``None``.
        crl_urls: ``cRLDistributionPoints`` URIs (none: no extension).
        ocsp_urls: AIA OCSP responder URIs (none: no AIA extension).
        must_staple: add the TLS Feature ``status_request`` (RFC 7633 must-staple).
        ekus: the exact EKU list (overrides ``client_auth``/``server_auth``;
            ``[OCSP_SIGNING]`` makes a delegated OCSP responder).
        ocsp_nocheck: add ``id-pkix-ocsp-nocheck`` (responder certificates).

    Returns:
        The :class:`Issued` certificate.
    """
    key = key if key is not None else make_key(key_kind)
    name = _name(common_name, organization_name, organizational_unit_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(_datetime(not_before))
        .not_valid_after(_datetime(not_after))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    signer = issuer.key if issuer else key
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
    )
    if basic_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None), True
        )
    builder = builder.add_extension(_key_usage(is_ca, key), True)
    san = _san(dns_names, ip_addresses, uris, emails)
    if san is not None:
        builder = builder.add_extension(san, False)
    if ekus is None:
        ekus = [ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else []
        ekus += [ExtendedKeyUsageOID.SERVER_AUTH] if server_auth else []
    if ekus and not is_ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), False)
    if ocsp_urls:
        access = [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u))
                  for u in ocsp_urls]
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), False)
    if must_staple:
        builder = builder.add_extension(x509.TLSFeature([x509.TLSFeatureType.status_request]), False)
    if ocsp_nocheck:
        builder = builder.add_extension(x509.OCSPNoCheck(), False)
    if crl_urls:
        points = [x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None) for u in crl_urls]
        builder = builder.add_extension(x509.CRLDistributionPoints(points), False)
    cert = builder.sign(signer, _hash_for(signer))
    parents = (issuer, *issuer.parents) if issuer else ()
    return Issued(cert, key, parents)


def make_ca(
    *,
    issuer: Issued | None = None,
    key_kind: str = "ec",
    common_name: str = "trio-gw test CA",
    not_before: int = DEFAULT_NOT_BEFORE,
    not_after: int = DEFAULT_NOT_AFTER,
    path_length: int | None = None,
) -> Issued:
    """Build a CA (``CA:TRUE``): a root, or an intermediate when ``issuer`` is given."""
    return build_certificate(
        issuer=issuer,
        key_kind=key_kind,
        common_name=common_name,
        not_before=not_before,
        not_after=not_after,
        is_ca=True,
        path_length=path_length,
    )


def issue(issuer: Issued, *dns_names: str, **options: object) -> Issued:
    """Issue a leaf: ``issue(ca, "api.example", not_after=EXPIRED_AT)``.

    Args:
        issuer: the signing CA.
        dns_names: SAN DNS names.
        options: any keyword of :func:`build_certificate`.

    Returns:
        The leaf.
    """
    return build_certificate(issuer=issuer, dns_names=dns_names, **options)  # type: ignore[arg-type]


def expired_leaf(issuer: Issued, *, expired_at: int = EXPIRED_AT, key_kind: str = "ec") -> Issued:
    """A leaf for ``expired.example`` whose ``not_after`` is ``expired_at``."""
    return build_certificate(
        issuer=issuer,
        key_kind=key_kind,
        dns_names=["expired.example"],
        not_before=expired_at - 90 * 86_400,
        not_after=expired_at,
    )


def not_yet_valid_leaf(
    issuer: Issued, *, valid_from: int = FUTURE_START, key_kind: str = "ec"
) -> Issued:
    """A leaf for ``future.example`` whose ``not_before`` is ``valid_from``."""
    return build_certificate(
        issuer=issuer,
        key_kind=key_kind,
        dns_names=["future.example"],
        not_before=valid_from,
        not_after=valid_from + 365 * 86_400,
    )


def cn_only_leaf(issuer: Issued, common_name: str = "legacy.example") -> Issued:
    """A leaf with a subject CN and no SAN extension (legacy client certificates)."""
    return build_certificate(issuer=issuer, common_name=common_name)


def self_signed_leaf(*dns_names: str, key_kind: str = "ec") -> Issued:
    """A self-signed end-entity certificate (``CA:FALSE``)."""
    return build_certificate(dns_names=dns_names or ("self.example",), key_kind=key_kind)


def ca_without_ca_flag(*, basic_constraints: bool = False) -> Issued:
    """A self-signed "CA" that is not one: no ``basicConstraints`` (or ``CA:FALSE``)."""
    return build_certificate(
        common_name="not a CA", basic_constraints=basic_constraints, is_ca=False
    )


def rsa_and_ec_leaves(issuer: Issued, *dns_names: str) -> tuple[Issued, Issued]:
    """Two leaves for the same names: one RSA-2048, one ECDSA P-256 (Kong's cert/cert_alt)."""
    names = dns_names or ("dual.example",)
    return (
        build_certificate(issuer=issuer, dns_names=names, key_kind="rsa"),
        build_certificate(issuer=issuer, dns_names=names, key_kind="ec"),
    )


def chain_of_depth(depth: int, *, key_kind: str = "ec", leaf_name: str = "leaf.example") -> Issued:
    """A leaf under ``depth`` intermediates under a root.

    Args:
        depth: number of intermediates (0: the root issues the leaf).
        key_kind: key type of every certificate.
        leaf_name: the leaf's DNS SAN.

    Returns:
        The leaf; ``.parents`` holds the intermediates then the root, and
        ``.chain_pem()`` the leaf plus intermediates.
    """
    ca = make_ca(key_kind=key_kind, common_name="root")
    for level in range(depth):
        ca = make_ca(issuer=ca, key_kind=key_kind, common_name=f"intermediate {level + 1}")
    return build_certificate(issuer=ca, key_kind=key_kind, dns_names=[leaf_name])


def _datetime(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def _name(common_name: str | None, organization: str | None = "trio-gw tests", unit: str | None = None) -> x509.Name:
    attributes = []
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if unit is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _san(
    dns: Sequence[str], ips: Sequence[str], uris: Sequence[str], emails: Sequence[str]
) -> x509.SubjectAlternativeName | None:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.RFC822Name(e) for e in emails]
    return x509.SubjectAlternativeName(names) if names else None


def _key_usage(is_ca: bool, key: CertificateIssuerPrivateKeyTypes) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey) and not is_ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=is_ca,
        crl_sign=is_ca,
        encipher_only=False,
        decipher_only=False,
    )


def _hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) or type(key).__name__.startswith("MLDSA"):
        return None  # Ed25519, Ed448 and ML-DSA sign without a separate hash
    return hashes.SHA256()  # RSA, EC (and DSA, named nowhere: cryptography 51 warns on the name)


def crl_pem(signer: Issued, revoked: Sequence[Issued] = (), *, now: int | None = None, days: int = 7) -> str:
    """A PEM CRL signed by ``signer`` listing ``revoked`` (valid from a day before ``now`` for ``days``)."""
    import time as _time
    from datetime import datetime, timedelta, timezone

    from cryptography.hazmat.primitives import hashes as _hashes
    from cryptography.hazmat.primitives import serialization as _serialization

    moment = datetime.fromtimestamp(now if now is not None else _time.time(), tz=timezone.utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(signer.cert.subject)
        .last_update(moment - timedelta(days=1))
        .next_update(moment + timedelta(days=days))
    )
    for leaf in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(leaf.cert.serial_number)
            .revocation_date(moment - timedelta(days=1)).build()
        )
    crl = builder.sign(signer.key, _hashes.SHA256())
    return crl.public_bytes(_serialization.Encoding.PEM).decode()
