"""TLS and mTLS to PostgreSQL: Kong's ``pg_ssl*`` settings in, libpq's connection parameters out.

Theory of operation
-------------------
The cluster datastore is reached through libpq (psycopg), which takes its TLS
policy as connection parameters.  Kong's names (``kong.conf``) map as follows;
where Kong leaves a gap the choice is stated.

============================  =================================================
Kong                          libpq
============================  =================================================
``pg_ssl = off``              ``sslmode=disable``
``pg_ssl = on``               ``sslmode=prefer``: TLS when the server offers it,
                              plain otherwise (Kong: "only a hint")
``+ pg_ssl_required = on``    ``sslmode=require``: never plain
``+ pg_ssl_verify = on``      ``sslmode=verify-full``: the chain against
                              ``lua_ssl_trusted_certificate`` and ``pg_host``
                              against the certificate's names.  **Implies
                              required**: Kong (pgmoon) verifies only when the
                              server speaks TLS, so a server (or an attacker)
                              answering "no TLS" downgrades a verified
                              connection to plaintext; libpq has no such mode
                              and neither has trio-gw.
``pg_ssl_version``            ``ssl_min_protocol_version``/``_max_``:
                              ``tlsv1_2`` and ``tlsv1_3`` pin that version
                              (LuaSec's protocol names, and Kong's "the version
                              of TLS to use"); ``any`` is the highest both
                              sides support, at least TLS 1.2.  ``tlsv1_1`` is
                              refused: TLS 1.1 is deprecated (RFC 8996) and
                              PostgreSQL ≥ 12 refuses it by default (Kong's
                              ``any`` floor is TLS 1.1).
``pg_ssl_cert``/``_cert_key``  ``sslcert``/``sslkey``; without them
                              ``sslcertmode=disable`` (libpq ≥ 16), so libpq
                              never presents ``~/.postgresql/postgresql.crt``
                              on its own.
``lua_ssl_trusted_certificate``  ``sslrootcert``: every entry (``system`` = the
                              OS bundle file) combined into one bundle, as
                              Kong's ``lua_ssl_trusted_certificate_combined``.
============================  =================================================

Files.  libpq reads certificates and keys from files only, and refuses a key
file readable by group or others.  The IO layer therefore writes what this
module returns — the client chain, the key re-encoded as unencrypted PKCS#8,
and the combined trust bundle — into a private directory (files 0600) and
passes those paths, whatever the mode of the operator's own files.  The
material is checked here first (parsable, key matches certificate, at least one
CA), so a mistake is reported naming its setting instead of as an OpenSSL error
at connect time.

Why ``system`` is a file and not libpq's ``sslrootcert=system``: libpq 16+
reads ``system`` as "OpenSSL's default store", and the OpenSSL psycopg-binary
bundles is built with ``OPENSSLDIR=/usr/lib/psycopg-openssl``, which does not
exist on the machine: it would trust nothing.  The OS bundle file the
gateway's other outbound TLS trusts (the system OpenSSL's default, via
``ssl.get_default_verify_paths``) is used instead, so ``system`` means the same
everywhere in trio-gw.

Failures a connection with this policy may meet are explained by
``trio_gw.tls.postgres_failures``.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

from cryptography.hazmat.primitives import serialization

from trio_gw.errors import CertificateError, ConfigError, Problem
from trio_gw.pki.encoding import find_pem_blocks, pem_block_readings
from trio_gw.pki.keys import key_matches_certificate
from trio_gw.pki.parse import parse_pem_chain, parse_private_key

__all__ = [
    "PG_SSL_VERSIONS",
    "SYSTEM_STORE",
    "ClientMaterial",
    "PgTlsFiles",
    "PgTlsPolicy",
    "SslMode",
    "check_client_material",
    "combine_trust",
    "libpq_tls_params",
    "parse_pg_tls_policy",
]

#: Kong's ``pg_ssl_version`` values.
PG_SSL_VERSIONS: Final = ("tlsv1_1", "tlsv1_2", "tlsv1_3", "any")
#: The ``lua_ssl_trusted_certificate`` entry standing for the OS trust store (Kong's word).
SYSTEM_STORE: Final = "system"
#: libpq release numbers (``PQlibVersion``) that added the parameters used here.
LIBPQ_PROTOCOL_VERSIONS: Final = 130000  # ssl_min_protocol_version / ssl_max_protocol_version
LIBPQ_SSLCERTMODE: Final = 160000  # sslcertmode

_VERSION_NAMES: Final = {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}


class SslMode(Enum):
    """libpq's ``sslmode`` values trio-gw uses."""

    DISABLE = "disable"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_FULL = "verify-full"


@dataclass(frozen=True)
class PgTlsPolicy:
    """How the node speaks TLS to PostgreSQL; built by :func:`parse_pg_tls_policy`.

    Attributes:
        mode: libpq's ``sslmode``.
        minimum_version: lowest TLS version (``None`` with ``DISABLE``).
        maximum_version: highest, or ``None`` for the highest both support.
        trusted: ``lua_ssl_trusted_certificate`` entries (file paths or ``system``) when verifying.
        client_cert: ``pg_ssl_cert`` (a PEM file), or ``None``.
        client_key: ``pg_ssl_cert_key`` (a PEM file), or ``None``.
        required_by: the setting that makes TLS mandatory (``pg_ssl_required``
            or ``pg_ssl_verify``), for messages; ``""`` when TLS is optional or off.
    """

    mode: SslMode = SslMode.DISABLE
    minimum_version: ssl.TLSVersion | None = None
    maximum_version: ssl.TLSVersion | None = None
    trusted: tuple[str, ...] = ()
    client_cert: str | None = None
    client_key: str | None = None
    required_by: str = ""

    @property
    def uses_tls(self) -> bool:
        return self.mode is not SslMode.DISABLE

    def describe(self) -> str:
        """A short form for the start-up log (no paths of keys)."""
        if not self.uses_tls or self.minimum_version is None:
            return "TLS off"
        low = _VERSION_NAMES[self.minimum_version]
        high = _VERSION_NAMES[self.maximum_version] if self.maximum_version else "highest"
        versions = low if low == high else f"{low} to {high}"
        cert = ", client certificate" if self.client_cert else ""
        return f"TLS sslmode={self.mode.value}, {versions}{cert}"


def parse_pg_tls_policy(settings: Mapping[str, object]) -> PgTlsPolicy:
    """Read Kong's ``pg_ssl*`` settings (and ``lua_ssl_trusted_certificate``) into a policy.

    Args:
        settings: parsed setting values by name: ``pg_ssl``, ``pg_ssl_required``,
            ``pg_ssl_verify`` (bools), ``pg_ssl_version`` (one of
            :data:`PG_SSL_VERSIONS`), ``pg_ssl_cert``, ``pg_ssl_cert_key``
            (paths or ``None``), ``lua_ssl_trusted_certificate`` (entries).

    Returns:
        The validated policy.

    Raises:
        ConfigError: every contradiction found, each naming its setting (a
            TLS setting given while ``pg_ssl`` is off, a certificate without
            its key, verification with nothing to verify against, TLS 1.1).
    """
    enabled = bool(settings.get("pg_ssl", False))
    required = bool(settings.get("pg_ssl_required", False))
    verify = bool(settings.get("pg_ssl_verify", False))
    cert = _optional(settings.get("pg_ssl_cert"))
    key = _optional(settings.get("pg_ssl_cert_key"))
    entries = settings.get("lua_ssl_trusted_certificate")
    trusted = tuple(str(t) for t in entries) if isinstance(entries, list | tuple) else ()
    problems = _contradictions(enabled, required, verify, cert, key, trusted)
    version = str(settings.get("pg_ssl_version", "tlsv1_2")).strip().lower()
    low_high = _versions(version, problems)
    if problems:
        raise ConfigError(problems)
    if not enabled:
        return PgTlsPolicy()
    mode = SslMode.VERIFY_FULL if verify else SslMode.REQUIRE if required else SslMode.PREFER
    return PgTlsPolicy(
        mode=mode, minimum_version=low_high[0], maximum_version=low_high[1],
        trusted=trusted if verify else (), client_cert=cert, client_key=key,
        required_by="pg_ssl_verify" if verify else "pg_ssl_required" if required else "",
    )  # fmt: skip


def _optional(value: object) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value)


def _contradictions(
    enabled: bool, required: bool, verify: bool, cert: str | None, key: str | None, trusted: tuple[str, ...]
) -> list[Problem]:
    problems: list[Problem] = []
    if not enabled:
        given = {"pg_ssl_required": required, "pg_ssl_verify": verify, "pg_ssl_cert": cert, "pg_ssl_cert_key": key}
        problems += [
            Problem(name, "needs pg_ssl = on (it would be ignored: the connection to PostgreSQL is not TLS)")
            for name, value in given.items() if value
        ]  # fmt: skip
    if cert and not key:
        problems.append(Problem("pg_ssl_cert_key", "is needed with pg_ssl_cert (the certificate's private key)"))
    if key and not cert:
        problems.append(Problem("pg_ssl_cert", "is needed with pg_ssl_cert_key (the key's certificate)"))
    if enabled and verify and not trusted:
        problems.append(Problem(
            "lua_ssl_trusted_certificate",
            "is empty, so nothing would verify PostgreSQL's certificate (pg_ssl_verify = on); use `system` or CA files",
        ))  # fmt: skip
    return problems


def _versions(version: str, problems: list[Problem]) -> tuple[ssl.TLSVersion | None, ssl.TLSVersion | None]:
    if version == "tlsv1_2":
        return ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2
    if version == "tlsv1_3":
        return ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3
    if version == "any":
        return ssl.TLSVersion.TLSv1_2, None
    if version == "tlsv1_1":
        reason = "TLS 1.1 is deprecated (RFC 8996) and refused; use tlsv1_2, tlsv1_3 or any (at least TLS 1.2)"
    else:
        reason = f"expected one of {', '.join(PG_SSL_VERSIONS)}, got {version!r}"
    problems.append(Problem("pg_ssl_version", reason))
    return None, None


# -- material ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientMaterial:
    """A checked client certificate chain and its key, as libpq will read them."""

    chain_pem: bytes
    key_pem: bytes = b""

    def __repr__(self) -> str:  # never show the key
        return f"ClientMaterial(chain_pem=<{len(self.chain_pem)} bytes>, key_pem=<hidden>)"


def check_client_material(cert_pem: bytes, key_pem: bytes) -> ClientMaterial:
    """Check ``pg_ssl_cert``'s and ``pg_ssl_cert_key``'s contents; re-encode the key for libpq.

    Args:
        cert_pem: the certificate file's bytes (leaf first, then intermediates).
        key_pem: the key file's bytes (PKCS#1, SEC1 or PKCS#8; unencrypted).

    Returns:
        The chain as given (certificates only) and the key as unencrypted PKCS#8 PEM.

    Raises:
        ConfigError: naming ``pg_ssl_cert`` or ``pg_ssl_cert_key``: unparsable,
            encrypted, or a key that is not the certificate's.  The message
            never contains key material.
    """
    try:
        chain = parse_pem_chain(cert_pem)
    except CertificateError as exc:
        raise ConfigError(f"not a PEM certificate: {exc}", path="pg_ssl_cert") from None
    try:
        key = parse_private_key(key_pem)
    except CertificateError as exc:
        reason = str(exc)
        if "password" in reason.lower() or "encrypted" in reason.lower():
            reason = "the key is encrypted; libpq would need its passphrase, which has no setting: decrypt it"
        raise ConfigError(f"not a usable private key: {reason}", path="pg_ssl_cert_key") from None
    if not key_matches_certificate(key, chain[0]):
        raise ConfigError("does not match the certificate of pg_ssl_cert", path="pg_ssl_cert_key")
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ClientMaterial(chain_pem, pkcs8)


def combine_trust(sources: Sequence[tuple[str, bytes]]) -> bytes:
    """Combine the trusted CA files into one bundle (Kong's ``lua_ssl_trusted_certificate_combined``).

    Each ``CERTIFICATE`` block is copied as OpenSSL will read it (valid base64,
    re-wrapped at 64 columns), without judging the certificate inside: an OS
    bundle can hold anchors that a strict parser refuses (a negative serial
    number, in Debian's), and OpenSSL — which does the verifying — loads them.

    Args:
        sources: ``(label, file bytes)`` per ``lua_ssl_trusted_certificate``
            entry, in order; the label names the entry in messages
            (``lua_ssl_trusted_certificate[0]``).

    Returns:
        Every certificate of every source, PEM, in order, without duplicates.

    Raises:
        ConfigError: naming each source that holds no certificate block.
    """
    seen: set[bytes] = set()
    out: list[bytes] = []
    problems: list[Problem] = []
    for label, data in sources:
        blocks = [b for b in find_pem_blocks(data.decode("latin-1")) if b.label == "CERTIFICATE"]
        ders = [readings[0] for readings in map(pem_block_readings, blocks) if readings]
        if not ders:
            problems.append(Problem(label, "not a PEM CA bundle: no CERTIFICATE block"))
        for der in ders:
            if der not in seen:
                seen.add(der)
                out.append(_pem(der))
    if problems:
        raise ConfigError(problems)
    return b"".join(out)


def _pem(der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


@dataclass(frozen=True)
class PgTlsFiles:
    """Where the IO layer wrote the material of a policy (``None``: not needed)."""

    root_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


def libpq_tls_params(policy: PgTlsPolicy, files: PgTlsFiles, *, libpq_version: int) -> dict[str, str]:
    """libpq connection parameters for a policy.

    Args:
        policy: from :func:`parse_pg_tls_policy`.
        files: where its material was written (see the module's theory).
        libpq_version: ``PQlibVersion()`` of the libpq in use (``psycopg.pq.version()``),
            e.g. ``180006``; parameters it lacks are left out where that is safe.

    Returns:
        Keyword → value for the connection string.

    Raises:
        ConfigError: the policy needs a parameter this libpq lacks (pinning TLS
            versions needs libpq 13), or its material was not written.
    """
    if not policy.uses_tls:
        return {"sslmode": SslMode.DISABLE.value}
    params = {"sslmode": policy.mode.value}
    if policy.mode is SslMode.VERIFY_FULL:
        if not files.root_cert:
            raise ConfigError("the combined CA bundle was not written", path="lua_ssl_trusted_certificate")
        params["sslrootcert"] = files.root_cert
    if policy.client_cert:
        if not (files.client_cert and files.client_key):
            raise ConfigError("the client certificate and key were not written", path="pg_ssl_cert")
        params["sslcert"], params["sslkey"] = files.client_cert, files.client_key
    elif libpq_version >= LIBPQ_SSLCERTMODE:
        params["sslcertmode"] = "disable"
    if libpq_version >= LIBPQ_PROTOCOL_VERSIONS:
        if policy.minimum_version is not None:
            params["ssl_min_protocol_version"] = _VERSION_NAMES[policy.minimum_version]
        if policy.maximum_version is not None:
            params["ssl_max_protocol_version"] = _VERSION_NAMES[policy.maximum_version]
    elif policy.maximum_version is not None:
        raise ConfigError(
            f"pinning a TLS version needs libpq 13 or later (this one is {_libpq_name(libpq_version)}); "
            "use `any`", path="pg_ssl_version",
        )  # fmt: skip
    return params


def _libpq_name(version: int) -> str:
    return f"{version // 10000}.{version % 10000}"
