"""ACME (RFC 8555) decisions as pure functions: Kong's ``acme`` config, renewal, backoff, challenges.

Theory of operation
-------------------
The configuration keeps Kong's ``acme`` plugin names and defaults
(:func:`parse_acme_config`, every problem named by its key): ``account_email``
(required), ``api_uri`` (Let's Encrypt's production directory),
``tos_accepted`` (false), ``cert_type`` (``rsa`` | ``ecc``), ``rsa_key_size``
(4096; 2048 | 3072 | 4096), ``renew_threshold_days`` (14), ``domains``
(``*.example.com`` matches one label, as Kong), ``allow_any_domain`` (false),
``fail_backoff_minutes`` (5), ``eab_kid`` + ``eab_hmac_key`` (together or
not at all; the key is secret), ``preferred_chain``, and ``storage``
(``kong`` | ``shm``: trio-gw keeps certificates in its datastore either way;
``storage_config`` is accepted as written by decK and not used), and trio-gw's
own ``challenge`` (``http-01``, Kong's only one, or ``tls-alpn-01``).  As in Kong,
Let's Encrypt's production and staging directories need ``tos_accepted: true``.

For each host :func:`plan_certificate` says what to do -- ``issue`` (no
certificate), ``renew`` (``renew_threshold_days`` or fewer days left),
``wait`` (a recent failure: ``fail_backoff_minutes`` per domain, Kong), or
``nothing`` -- with a stable reason and the time to look again; a host the
config does not cover is refused (``domain_not_allowed``).

Challenges (the IO layer publishes what these build, the listeners answer):

* http-01: ``GET /.well-known/acme-challenge/<token>`` answers the key
  authorization (:func:`http01_token` reads and checks the path);
* tls-alpn-01 (RFC 8737): a handshake for the name that offers ALPN
  ``acme-tls/1`` (:func:`parse_alpn_extension`, :func:`offers_acme_tls`)
  gets a self-signed certificate whose only SAN is the name and whose
  critical ``acmeIdentifier`` extension (1.3.6.1.5.5.7.1.31) holds the
  SHA-256 of the key authorization (:func:`build_tls_alpn01_certificate`).

The key authorization is ``token || '.' || base64url(JWK thumbprint)``
(RFC 8555 8.1; :func:`key_authorization`).  Times are Unix seconds.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from trio_gw.errors import ConfigError
from trio_gw.model.fields import Context, Fields
from trio_gw.model.values import InvalidValue

__all__ = [
    "ACME_IDENTIFIER_OID",
    "ACME_TLS_ALPN",
    "AcmeAction",
    "AcmeConfig",
    "AcmeFailure",
    "AcmePlan",
    "build_csr",
    "build_tls_alpn01_certificate",
    "generate_certificate_key",
    "http01_token",
    "is_domain_allowed",
    "key_authorization",
    "offers_acme_tls",
    "parse_acme_config",
    "parse_alpn_extension",
    "plan_certificate",
    "wants_certificate",
    "select_preferred_chain",
]

#: RFC 8737 section 6.1: id-pe-acmeIdentifier.
ACME_IDENTIFIER_OID: Final = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
#: RFC 8737 section 6.2: the ALPN protocol of tls-alpn-01 validation.
ACME_TLS_ALPN: Final = "acme-tls/1"
#: Kong's ``api_uri`` default.
LETSENCRYPT_DIRECTORY: Final = "https://acme-v02.api.letsencrypt.org/directory"
HTTP01_PREFIX: Final = "/.well-known/acme-challenge/"
#: The body Kong's acme plugin answers an unknown challenge token with (404); its ``test_http_challenge_flow`` expects it.
HTTP01_NOT_FOUND: Final = b"Not found\n"
#: RFC 8555 8.1: tokens are base64url without padding; at least 128 bits of entropy (22 chars).
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{22,256}")
_HOST: Final = re.compile(r"(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DAY: Final = 86400
#: Kong's ``acme`` plugin keys (and trio-gw's reading of them).
ACME_FIELDS: Final = ("account_email", "api_uri", "tos_accepted", "cert_type", "rsa_key_size",
                      "renew_threshold_days", "domains", "allow_any_domain", "fail_backoff_minutes", "eab_kid",
                      "eab_hmac_key", "preferred_chain", "storage", "storage_config", "challenge")
#: trio-gw's own key (Kong answers http-01 only): which challenge the CA is asked to validate.
CHALLENGE_TYPES: Final = ("http-01", "tls-alpn-01")
#: Kong's entity check: these directories require ``tos_accepted: true``.
_TOS_REQUIRED: Final = ("https://acme-v02.api.letsencrypt.org", "https://acme-staging-v02.api.letsencrypt.org")
#: Never shown by the Admin API nor logged.
ACME_SECRET_FIELDS: Final = frozenset({"eab_hmac_key"})


@dataclass(frozen=True)
class AcmeConfig:
    """Kong's ``acme`` plugin configuration, validated (see the module docstring)."""

    account_email: str
    api_uri: str = LETSENCRYPT_DIRECTORY
    tos_accepted: bool = False
    cert_type: str = "rsa"
    rsa_key_size: int = 4096
    renew_threshold_days: int = 14
    domains: tuple[str, ...] = ()
    allow_any_domain: bool = False
    fail_backoff_minutes: int = 5
    eab_kid: str | None = None
    eab_hmac_key: str | None = None
    preferred_chain: str | None = None
    storage: str = "kong"
    challenge: str = "http-01"

    def __repr__(self) -> str:  # the EAB key never reaches a log line through repr()
        shown = "***" if self.eab_hmac_key else None
        return (f"AcmeConfig(account_email={self.account_email!r}, api_uri={self.api_uri!r}, "
                f"cert_type={self.cert_type!r}, domains={self.domains!r}, eab_kid={self.eab_kid!r}, "
                f"eab_hmac_key={shown!r})")


class AcmeAction(enum.Enum):
    """What :func:`plan_certificate` says to do for a host."""

    ISSUE = "issue"
    RENEW = "renew"
    WAIT = "wait"
    NOTHING = "nothing"
    REFUSE = "refuse"


@dataclass(frozen=True)
class AcmeFailure:
    """The last failed attempt for a domain: when, and the stable reason (``challenge_failed``...)."""

    domain: str
    failed_at: int
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class AcmePlan:
    """The decision, its stable reason and when to look again (Unix seconds; ``None``: on demand)."""

    action: AcmeAction
    reason: str
    check_at: int | None = None


def parse_acme_config(raw: Mapping[str, Any], path: str = "") -> AcmeConfig:
    """Read Kong's ``acme`` configuration.

    Args:
        raw: the ``config`` mapping as written.
        path: where it sits, prefixed to every problem (``plugins[0].config``).

    Returns:
        The :class:`AcmeConfig` with Kong's defaults filled in.

    Raises:
        ConfigError: every problem, each at its key's path.
    """
    ctx = Context(problems=[], now=0)
    f = Fields(raw, path, ctx)
    f.check_keys(ACME_FIELDS)
    email = f.string("account_email", _email, required=True)
    api_uri = f.string("api_uri", _https_url) or LETSENCRYPT_DIRECTORY
    eab_kid, eab_key = f.string("eab_kid"), f.string("eab_hmac_key", _base64url)
    if (f.get("eab_kid") is None) != (f.get("eab_hmac_key") is None):
        f.report("eab_hmac_key" if f.get("eab_hmac_key") is None else "eab_kid",
                 "eab_kid and eab_hmac_key are set together (external account binding)")
    config = AcmeConfig(
        account_email=email or "",
        api_uri=api_uri,
        tos_accepted=f.boolean("tos_accepted", False),
        cert_type=f.choice("cert_type", ("rsa", "ecc"), "rsa"),
        rsa_key_size=f.choice("rsa_key_size", (2048, 3072, 4096), 4096),
        renew_threshold_days=f.integer("renew_threshold_days", 0, 365, 14),
        domains=f.strings("domains", _domain),
        allow_any_domain=f.boolean("allow_any_domain", False),
        fail_backoff_minutes=f.integer("fail_backoff_minutes", 0, 7 * 24 * 60, 5),
        eab_kid=eab_kid,
        eab_hmac_key=eab_key,
        preferred_chain=f.string("preferred_chain"),
        storage=f.choice("storage", ("kong", "shm"), "kong", unsupported=("redis", "consul", "vault")),
        challenge=f.choice("challenge", CHALLENGE_TYPES, "http-01"),
    )
    f.mapping("storage_config")
    if config.api_uri.startswith(_TOS_REQUIRED) and not config.tos_accepted:
        f.report("tos_accepted", "terms of service must be accepted, see https://letsencrypt.org/repository/")
    if ctx.problems:
        raise ConfigError(ctx.problems)
    return config


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise InvalidValue("expected an email address")
    return value


def _https_url(value: str) -> str:
    if not value.lower().startswith(("https://", "http://")):
        raise InvalidValue("expected the ACME directory URL (https://...)")
    return value


def _base64url(value: str) -> str:
    try:
        base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except ValueError:
        raise InvalidValue("expected the base64url-encoded HMAC key the CA gave") from None
    return value


def _domain(value: str) -> str:
    lowered = value.lower().rstrip(".")
    if not _HOST.fullmatch(lowered):
        raise InvalidValue("expected a host name or *.domain")
    return lowered


def is_domain_allowed(config: AcmeConfig, host: str) -> bool:
    """Whether ``host`` may get a certificate: ``allow_any_domain``, an exact domain, or ``*.`` + one label."""
    host = host.lower().rstrip(".")
    if not _HOST.fullmatch(host) or host.startswith("*."):
        return False
    if config.allow_any_domain:
        return True
    for domain in config.domains:
        if domain == host:
            return True
        if domain.startswith("*.") and host.endswith(domain[1:]) and "." not in host[: -len(domain) + 1]:
            return True
    return False


def wants_certificate(config: AcmeConfig, host: str) -> bool:
    """Whether a handshake for ``host``, which no certificate of its own serves, should start an issuance.

    Kong issues in the background for the first request of a host the plugin
    covers (served the default certificate meanwhile).  trio-gw does so only
    for hosts its ``domains`` list names: with ``allow_any_domain`` any client
    could make the node order certificates for names it invents (and spend
    the account's rate limits), so such hosts are issued through ``POST /acme``
    only.  An IP address never gets one (Let's Encrypt does not issue for them).
    """
    return bool(config.domains) and is_domain_allowed(replace(config, allow_any_domain=False), host) and (
        not _is_ip(host))


def _is_ip(host: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+", host)) or ":" in host


def plan_certificate(
    config: AcmeConfig, host: str, *, not_after: int | None, last_failure: AcmeFailure | None, now: int
) -> AcmePlan:
    """What to do for ``host`` now (see the module docstring).

    Args:
        config: the ``acme`` configuration.
        host: the name a certificate is for.
        not_after: expiry of the certificate held for it (``None``: none).
        last_failure: the last failed attempt for it, if any.
        now: Unix seconds.

    Returns:
        The :class:`AcmePlan`.
    """
    if not is_domain_allowed(config, host):
        return AcmePlan(AcmeAction.REFUSE, "domain_not_allowed")
    retry_at = _retry_at(config, last_failure)
    renew_at = None if not_after is None else not_after - config.renew_threshold_days * _DAY
    if renew_at is not None and now < renew_at:
        return AcmePlan(AcmeAction.NOTHING, "valid", renew_at)
    if retry_at is not None and now < retry_at:
        return AcmePlan(AcmeAction.WAIT, "backing_off", retry_at)
    if not_after is None:
        return AcmePlan(AcmeAction.ISSUE, "no_certificate")
    return AcmePlan(AcmeAction.RENEW, "renewal_due")


def _retry_at(config: AcmeConfig, failure: AcmeFailure | None) -> int | None:
    return None if failure is None else failure.failed_at + config.fail_backoff_minutes * 60


def key_authorization(token: str, thumbprint: bytes) -> str:
    """RFC 8555 8.1: ``token || '.' || base64url(SHA-256 JWK thumbprint)``.

    Raises:
        ValueError: ``token`` is not a base64url token.
    """
    if not _TOKEN.fullmatch(token):
        raise ValueError("not an ACME challenge token")
    return f"{token}.{base64.urlsafe_b64encode(thumbprint).decode('ascii').rstrip('=')}"


def http01_token(target: str) -> str | None:
    """The token of an http-01 validation request target, or ``None`` when it is not one."""
    path = target.split("?", 1)[0]
    if not path.startswith(HTTP01_PREFIX):
        return None
    token = path[len(HTTP01_PREFIX):]
    return token if _TOKEN.fullmatch(token) else None


def parse_alpn_extension(data: bytes) -> tuple[str, ...]:
    """The protocols of a ClientHello ``application_layer_protocol_negotiation`` extension body.

    Returns:
        The offered names (undecodable or malformed input gives ``()``).
    """
    if len(data) < 2 or int.from_bytes(data[:2], "big") != len(data) - 2:
        return ()
    names, i = [], 2
    while i < len(data):
        size = data[i]
        name = data[i + 1: i + 1 + size]
        if size == 0 or len(name) != size:
            return ()
        names.append(name.decode("latin-1"))
        i += 1 + size
    return tuple(names)


def offers_acme_tls(protocols: Sequence[str]) -> bool:
    """RFC 8737: a validation handshake offers ``acme-tls/1`` (and nothing else, in practice)."""
    return ACME_TLS_ALPN in protocols


def build_tls_alpn01_certificate(
    domain: str, key_auth: str, key: ec.EllipticCurvePrivateKey, *, now: int
) -> x509.Certificate:
    """The RFC 8737 challenge certificate for ``domain``.

    Args:
        domain: the name being validated (the only SAN).
        key_auth: the key authorization of the challenge.
        key: the certificate's key (a fresh P-256 key per challenge).
        now: Unix seconds (valid from a day before to a week after).

    Returns:
        A self-signed certificate with the critical ``acmeIdentifier``.
    """
    digest = hashlib.sha256(key_auth.encode("ascii")).digest()
    moment = datetime.fromtimestamp(now, tz=timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME challenge")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - timedelta(days=1))
        .not_valid_after(moment + timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, b"\x04\x20" + digest), critical=True)
        .sign(key, hashes.SHA256())
    )


def generate_certificate_key(cert_type: str, rsa_key_size: int = 4096) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """A fresh key for an issued certificate: RSA of ``rsa_key_size`` bits, or P-256 for ``ecc`` (Kong)."""
    if cert_type == "ecc":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size)


def build_csr(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, domains: Sequence[str]) -> bytes:
    """A PEM CSR naming ``domains`` (SAN; the first as CN, as Let's Encrypt clients do)."""
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def select_preferred_chain(chains: Sequence[str], preferred: str | None) -> str:
    """The full chain to keep: the first whose topmost certificate was issued by ``preferred`` (a CN).

    certbot's and lua-resty-acme's ``preferred_chain`` meaning; the default
    chain (the first) when nothing matches or nothing is preferred.

    Raises:
        ValueError: ``chains`` is empty.
    """
    if not chains:
        raise ValueError("no certificate chain")
    if preferred:
        for chain in chains:
            certs = x509.load_pem_x509_certificates(chain.encode("ascii"))
            names = certs[-1].issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
            if names and names[0].value == preferred:
                return chain
    return chains[0]
