"""The effective TLS profile of the gateway's connection to one upstream.

Theory of operation
-------------------
An :class:`UpstreamTlsProfile` is everything an upstream client context and
its post-handshake checks are built from: trust (CA PEMs, or the system roots),
``verify`` and depth, the client certificate, versions, ciphers, the CN check
and pins.  Renegotiation is not a field: it is always refused
(``renegotiation.UPSTREAM_OPTIONS``), and the gateway never initiates one
(Python cannot; ``proxy_ssl_disable_renegotiation`` is accepted only as true).
Profiles are frozen and hashable; equal profiles share one compiled context
and one connection pool, different ones never do.

Precedence, per field, most specific first (:func:`select_upstream_profile`):

=========================  =================================  ==========================  ==============================
field                      service (decK)                     host map (by host:port)     global setting
=========================  =================================  ==========================  ==============================
client certificate         ``client_certificate`` /           ``upstream_certificates``   ``client_ssl_cert`` +
                           ``certificates: [...]`` (first                                 ``client_ssl_cert_key``
                           currently valid)
trusted CAs                ``ca_certificates``                —                           ``proxy_ssl_trusted_certificate``,
                                                                                          else the system roots
verify                     ``tls_verify``                     —                           ``proxy_ssl_verify`` (Kong), or not
                                                                                          ``proxy_ssl_insecure_skip_verify`` (Tyk)
verify depth               ``tls_verify_depth``               —                           ``proxy_ssl_verify_depth``
min / max version          ``tls_min_version`` /              —                           ``proxy_ssl_min_version`` /
                           ``tls_max_version`` (per bound)                                ``proxy_ssl_max_version``
ciphers                    ``tls_ciphers``                    —                           ``proxy_ssl_ciphers``
CN check                   ``tls_force_common_name_check``    —                           ``ssl_force_common_name_check``
pins                       ``tls_pinned_public_keys``         ``pinned_public_keys``      —
=========================  =================================  ==========================  ==============================

The host maps' own lookup order (``host:port``, ``host``, ``*.parent``, ``*``)
is ``hostmap.HostMap.select``.  Files named by settings are read by the IO
layer and handed in as text (``UpstreamTlsDefaults``); store references are
resolved against the entities here.  Time is a parameter.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.errors import CertificateError, ConfigError, Problem
from trio_gw.model.entities import Certificate, Entities, Service
from trio_gw.pki.info import describe_certificate
from trio_gw.pki.keys import key_matches_certificate
from trio_gw.pki.parse import parse_certificates, parse_private_key
from trio_gw.tls import renegotiation
from trio_gw.tls.ciphers import CipherPolicy, parse_cipher_policy
from trio_gw.tls.downstream import UpstreamTlsPolicy, parse_upstream_policy
from trio_gw.tls.hostmap import HostMap, parse_host_map, parse_host_map_values
from trio_gw.tls.pinning import PinSet, is_pin, parse_pin, spki_digest
from trio_gw.tls.versions import VersionRange, parse_tls_version

__all__ = [
    "ClientCertificate",
    "UpstreamTlsDefaults",
    "parse_upstream_defaults",
    "UpstreamTlsProfile",
    "select_store_certificate",
    "select_upstream_profile",
    "split_combined_pem",
]

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.S)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class ClientCertificate:
    """A client certificate chain and key to present to upstreams.

    ``source`` says where it came from (for logs) and takes no part in
    equality: the same material from two places is the same profile.
    """

    chain_pem: str
    key_pem: str = field(repr=False)
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
class UpstreamTlsProfile:
    """The effective upstream TLS policy of one service (see the module docstring)."""

    verify: bool = True
    verify_depth: int | None = None
    trusted_cas: tuple[str, ...] = ()  # CA PEMs; empty: the system roots
    client_certificate: ClientCertificate | None = None
    policy: UpstreamTlsPolicy = UpstreamTlsPolicy()
    force_common_name_check: bool = False
    pins: PinSet = PinSet()

    @property
    def uses_system_roots(self) -> bool:
        return not self.trusted_cas

    @property
    def check_hostname_in_handshake(self) -> bool:
        """OpenSSL checks the name unless verification is off or the CN check replaces it."""
        return self.verify and not self.force_common_name_check

    @property
    def options_to_set(self) -> int:
        """Flags to OR into the context's options (renegotiation refused)."""
        return renegotiation.UPSTREAM_OPTIONS

    def describe(self) -> str:
        """One line for logs (no key material)."""
        trust = "system roots" if self.uses_system_roots else f"{len(self.trusted_cas)} CA(s)"
        cert = self.client_certificate.source if self.client_certificate else "none"
        verify = f"verify on ({trust}, depth {self.verify_depth or 'default'})" if self.verify else "verify OFF"
        cn = "; CN check" if self.force_common_name_check else ""
        pins = f"; {len(self.pins.digests)} pin(s)" if self.pins else ""
        return f"{verify}; client certificate {cert}; {self.policy.describe()}{cn}{pins}"


@dataclass(frozen=True)
class UpstreamTlsDefaults:
    """The global (settings) layer, with files already read by the IO layer."""

    policy: UpstreamTlsPolicy = UpstreamTlsPolicy()
    verify: bool = True
    verify_depth: int | None = None
    trusted_cas: tuple[str, ...] = ()
    client_certificate: ClientCertificate | None = None
    force_common_name_check: bool = False
    certificates_by_host: HostMap[ClientCertificate] = HostMap()
    pins_by_host: HostMap[PinSet] = HostMap()


def split_combined_pem(text: str, *, path: str) -> tuple[str, str]:
    """Split a combined PEM file (Tyk: chain and key together) into ``(chain, key)``.

    Tyk registers an upstream client certificate as one PEM holding the
    certificate (chain) concatenated with its private key; the blocks may come
    in either order, the leaf first among the certificates.

    Raises:
        ConfigError: no certificate, no private key (the usual mistake: the
            certificate file alone), several keys, an encrypted or unreadable
            key, or a key that is not the leaf's.
    """
    blocks = [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(text)]
    keys = [b for label, b in blocks if label.endswith("PRIVATE KEY")]
    chain = "".join(b for label, b in blocks if label == "CERTIFICATE")
    if not chain:
        raise ConfigError("holds no certificate: a combined PEM is the client certificate (chain) followed by "
                          "its private key", path)
    if not keys:
        raise ConfigError("holds a certificate but no private key: a client certificate for upstreams must be "
                          "concatenated with its private key in one PEM (as Tyk registers it), or name a store "
                          "certificate", path)
    if len(keys) > 1:
        raise ConfigError(f"holds {len(keys)} private keys; expected exactly one, the leaf certificate's", path)
    try:
        key = parse_private_key(keys[0])
    except CertificateError as exc:
        raise ConfigError(f"the private key is not usable: {exc}", path) from None
    try:
        matches = key_matches_certificate(key, parse_certificates(chain)[0])
    except CertificateError as exc:
        raise ConfigError(f"the certificate is not usable: {exc}", path) from None
    if not matches:
        raise ConfigError("the private key is not the one of the first certificate (the leaf); put the leaf "
                          "certificate first and its own key with it", path)
    return chain, keys[0]


def select_store_certificate(ref: str, certificates: Mapping[str, Certificate]) -> Certificate | None:
    """The store certificate named by ``ref``: its id (UUID) or ``sha256:<hex>`` fingerprint."""
    text = ref.strip().lower()
    if text in certificates:
        return certificates[text]
    if ref in certificates:
        return certificates[ref]
    if text.startswith("sha256:"):
        digest = text[7:].replace(":", "")
        for cert in certificates.values():
            if describe_certificate(parse_certificates(cert.cert)[0]).fingerprint_sha256 == digest:
                return cert
    return None


def is_store_reference(ref: str) -> bool:
    """Whether ``ref`` is spelled as a store id (UUID or ``sha256:<hex>``), not a file path."""
    text = ref.strip().lower()
    return bool(_UUID.fullmatch(text)) or (text.startswith("sha256:") and "/" not in text)


def pin_digest_of(
    value: str, *, path: str, certificates: Mapping[str, Certificate], read_text: Callable[[str, str], str]
) -> bytes:
    """One Tyk pin entry as a digest: ``sha256//<b64>``, a store certificate, or a PEM file."""
    if is_pin(value):
        return parse_pin(value, path=path)
    if is_store_reference(value):
        cert = select_store_certificate(value, certificates)
        if cert is None:
            raise ConfigError(f"no certificate in the store has id or fingerprint {value!r}", path)
        pem = cert.cert
    else:
        pem = read_text(value, path)
    try:
        der = parse_certificates(pem)[0].public_bytes(Encoding.DER)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a configuration problem
        raise ConfigError(f"{value!r} holds no usable certificate", path) from exc
    return spki_digest(der)


def _valid_at(cert: Certificate, now: int) -> bool:
    info = describe_certificate(parse_certificates(cert.cert)[0])
    return info.not_before <= now <= info.not_after


def _service_certificate(service: Service, entities: Entities, now: int) -> ClientCertificate | None:
    ids = [i for i in (service.client_certificate, *service.client_certificate_alternates) if i]
    if not ids:
        return None
    certs = [entities.certificates[i] for i in ids if i in entities.certificates]
    if not certs:
        raise ConfigError(f"client certificate {ids[0]!r} is not in the store", _where(service, "client_certificate"))
    chosen = next((c for c in certs if _valid_at(c, now)), certs[0])
    return ClientCertificate(chosen.cert, chosen.key, f"service certificate {chosen.id}")


def _where(service: Service, key: str) -> str:
    return f"services.{service.name or service.id}.{key}"


def _versions(service: Service, base: VersionRange) -> VersionRange:
    low = parse_tls_version(service.tls_min_version, path=_where(service, "tls_min_version")) if service.tls_min_version else base.minimum
    high = parse_tls_version(service.tls_max_version, path=_where(service, "tls_max_version")) if service.tls_max_version else base.maximum
    if low > high:
        raise ConfigError("the minimum TLS version is above the maximum; every handshake would fail",
                          _where(service, "tls_min_version"))
    return VersionRange(low, high)


def _policy(service: Service, defaults: UpstreamTlsDefaults) -> UpstreamTlsPolicy:
    base = defaults.policy
    if not (service.tls_min_version or service.tls_max_version or service.tls_ciphers):
        return base
    ciphers: CipherPolicy = base.ciphers
    if service.tls_ciphers:
        ciphers = parse_cipher_policy(None, list(service.tls_ciphers), ciphers_path=_where(service, "tls_ciphers"))
    versions = _versions(service, base.versions)
    # As for the global setting: OpenSSL 3 needs security level 0 for TLS 1.0/1.1 (Tyk's minVersion may
    # be 1.0/1.1); a service raising the minimum to 1.2 gets the default level back.
    if versions.minimum < ssl.TLSVersion.TLSv1_2:
        ciphers = dataclasses.replace(ciphers, security_level=0)
    elif ciphers.security_level == 0:
        ciphers = dataclasses.replace(ciphers, security_level=None)
    try:
        return UpstreamTlsPolicy(versions, ciphers)
    except ConfigError as exc:  # versions and ciphers do not fit together
        where = _where(service, "tls_ciphers" if service.tls_ciphers else "tls_min_version")
        raise ConfigError(Problem(p.path or where, p.message) for p in exc.problems) from None


def _pins(
    service: Service, entities: Entities, defaults: UpstreamTlsDefaults, read_text: Callable[[str, str], str]
) -> PinSet:
    if service.tls_pinned_public_keys:
        where = _where(service, "tls_pinned_public_keys")
        return PinSet(frozenset(
            pin_digest_of(v, path=f"{where}[{i}]", certificates=entities.certificates, read_text=read_text)
            for i, v in enumerate(service.tls_pinned_public_keys)
        ))  # fmt: skip
    hit = defaults.pins_by_host.select(service.host, service.port)
    return hit[1] if hit else PinSet()


def _no_files(path: str, where: str) -> str:
    raise ConfigError(f"cannot read {path!r} here", where)


def select_upstream_profile(
    service: Service,
    entities: Entities,
    defaults: UpstreamTlsDefaults,
    *,
    now: int,
    read_text: Callable[[str, str], str] = _no_files,
) -> UpstreamTlsProfile:
    """Compute the effective TLS profile of ``service`` (precedence: module docstring).

    Args:
        service: an https service.
        entities: the configuration (store certificates and CA certificates).
        defaults: the global layer, host maps included.
        now: Unix time; picks the first currently valid of several client certificates.
        read_text: ``(path, setting path) -> text`` for pins given as PEM files
            (the IO layer passes a file reader; raise ``ConfigError`` when unreadable).

    Returns:
        The profile.

    Raises:
        ConfigError: a reference or value that cannot be used, with its path.
    """
    cert = _service_certificate(service, entities, now)
    if cert is None:
        hit = defaults.certificates_by_host.select(service.host, service.port)
        cert = hit[1] if hit else defaults.client_certificate
    cas = tuple(entities.ca_certificates[i].cert for i in service.ca_certificates if i in entities.ca_certificates)
    return UpstreamTlsProfile(
        verify=defaults.verify if service.tls_verify is None else service.tls_verify,
        verify_depth=defaults.verify_depth if service.tls_verify_depth is None else service.tls_verify_depth,
        trusted_cas=cas or defaults.trusted_cas,
        client_certificate=cert,
        policy=_policy(service, defaults),
        force_common_name_check=(
            defaults.force_common_name_check
            if service.tls_force_common_name_check is None
            else service.tls_force_common_name_check
        ),
        pins=_pins(service, entities, defaults, read_text),
    )



def parse_upstream_defaults(
    settings: Mapping[str, object], entities: Entities, read_text: Callable[[str, str], str]
) -> UpstreamTlsDefaults:
    """Build the global layer from raw settings; files are read through ``read_text``.

    Args:
        settings: the raw settings (``client_ssl*``, ``proxy_ssl_*``, host maps ...).
        entities: the store, for certificate ids in the host maps.
        read_text: ``(path, setting path) -> text``; raises ``ConfigError`` when unreadable.

    Raises:
        ConfigError: every unusable setting, with its name as path.
    """
    depth = settings.get("proxy_ssl_verify_depth")
    if depth is not None and not (isinstance(depth, int) and 0 <= depth <= 64):
        raise ConfigError("expected an integer between 0 and 64", "proxy_ssl_verify_depth")
    cas = tuple(
        read_text(p, f"proxy_ssl_trusted_certificate[{i}]")
        for i, p in enumerate(_paths(settings.get("proxy_ssl_trusted_certificate")))
    )
    by_host = parse_host_map(settings.get("upstream_certificates"), path="upstream_certificates")
    pins = parse_host_map_values(settings.get("pinned_public_keys"), path="pinned_public_keys")

    def certificate(key: str, ref: str) -> ClientCertificate:
        return _host_certificate(ref, f"upstream_certificates.{key}", entities, read_text)

    def pin_set(key: str, values: tuple[str, ...]) -> PinSet:
        where = f"pinned_public_keys.{key}"
        return PinSet(frozenset(
            pin_digest_of(v, path=f"{where}[{i}]", certificates=entities.certificates, read_text=read_text)
            for i, v in enumerate(values)
        ))  # fmt: skip

    return UpstreamTlsDefaults(
        policy=parse_upstream_policy(settings),
        verify=_global_verify(settings),
        verify_depth=depth,
        trusted_cas=cas,
        client_certificate=_global_certificate(settings, read_text),
        force_common_name_check=bool(settings.get("ssl_force_common_name_check")),
        certificates_by_host=by_host.map(certificate),
        pins_by_host=pins.map(pin_set),
    )


def _global_verify(settings: Mapping[str, object]) -> bool:
    """Kong's ``proxy_ssl_verify`` (``nginx_proxy_proxy_ssl_verify`` / ``_tls_verify``) or Tyk's inverse.

    Unset both: verification on (trio-gw's default; Kong's is off).

    Raises:
        ConfigError: both are set and say opposite things (verify and skip verification).
    """
    verify, skip = settings.get("proxy_ssl_verify"), settings.get("proxy_ssl_insecure_skip_verify")
    if verify is not None and skip is not None and bool(verify) == bool(skip):
        said = "on" if verify else "off"
        raise ConfigError(
            f"proxy_ssl_verify (Kong: nginx_proxy_proxy_ssl_verify / nginx_proxy_proxy_tls_verify) is {said}, but "
            f"proxy_ssl_insecure_skip_verify (Tyk) is {'on' if skip else 'off'}: they are each other's inverse; "
            "set only one of them", "proxy_ssl_verify")
    if verify is not None:
        return bool(verify)
    return not bool(skip)


def _paths(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]  # the settings parser gives a tuple


def _global_certificate(settings: Mapping[str, object], read_text: Callable[[str, str], str]) -> ClientCertificate | None:
    """Kong's ``client_ssl`` + ``client_ssl_cert`` + ``client_ssl_cert_key``."""
    enabled, cert, key = (settings.get(k) for k in ("client_ssl", "client_ssl_cert", "client_ssl_cert_key"))
    if enabled is False:
        if cert or key:
            raise ConfigError("client_ssl is off, but client_ssl_cert is set: turn client_ssl on or remove "
                              "the certificate (trio-gw never ignores a setting)", "client_ssl")
        return None
    if not cert and not key:
        if enabled:
            raise ConfigError("client_ssl is on, but client_ssl_cert and client_ssl_cert_key are not set", "client_ssl")
        return None
    if not cert or not key:
        raise ConfigError("client_ssl_cert and client_ssl_cert_key go together",
                          "client_ssl_cert_key" if cert else "client_ssl_cert")
    chain = read_text(str(cert), "client_ssl_cert")
    key_text = read_text(str(key), "client_ssl_cert_key")
    return ClientCertificate(chain, key_text, "client_ssl_cert")


def _host_certificate(
    ref: str, where: str, entities: Entities, read_text: Callable[[str, str], str]
) -> ClientCertificate:
    if is_store_reference(ref):
        cert = select_store_certificate(ref, entities.certificates)
        if cert is None:
            raise ConfigError(f"no certificate in the store has id or fingerprint {ref!r}", where)
        return ClientCertificate(cert.cert, cert.key, f"{where} ({cert.id})")
    chain, key = split_combined_pem(read_text(ref, where), path=where)
    return ClientCertificate(chain, key, f"{where} ({ref})")
