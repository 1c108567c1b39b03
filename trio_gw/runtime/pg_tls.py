"""TLS to PostgreSQL, the IO half: read the operator's files, write what libpq reads (``trio_gw.tls.postgres``).

libpq takes certificates and keys as file paths and refuses a key file
readable by group or others, so the checked material is written, owner-only,
under ``<prefix>/pg-tls/``: ``trusted.pem`` (every ``lua_ssl_trusted_certificate``
entry combined), ``client.pem`` and ``client.key``.  Files are replaced
atomically (temporary file, fsync, rename), so worker processes writing the
same content at once never leave a torn file for a libpq reconnecting meanwhile.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from trio_gw.errors import ConfigError, Problem
from trio_gw.runtime.files import write_private_file
from trio_gw.tls.postgres import (
    SYSTEM_STORE,
    PgTlsFiles,
    PgTlsPolicy,
    check_client_material,
    combine_trust,
    libpq_tls_params,
    parse_pg_tls_policy,
)

__all__ = ["TLS_DIRECTORY", "pg_tls_params", "system_ca_file", "write_pg_tls_files"]

#: Under ``prefix``: where the material libpq reads is written.
TLS_DIRECTORY: Final = "pg-tls"


def system_ca_file() -> str | None:
    """The OS CA bundle file this machine's OpenSSL trusts by default (``SSL_CERT_FILE`` first), or ``None``."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get(paths.openssl_cafile_env), paths.openssl_cafile, paths.cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def write_pg_tls_files(policy: PgTlsPolicy, directory: Path, *, system_bundle: str | None = None) -> PgTlsFiles:
    """Check the policy's material and write it where libpq will read it.

    Args:
        policy: from :func:`~trio_gw.tls.postgres.parse_pg_tls_policy`.
        directory: a directory only this user may enter (created 0700 if missing).
        system_bundle: the file ``system`` stands for (default: :func:`system_ca_file`).

    Returns:
        The paths written (``None`` for what the policy does not use).

    Raises:
        ConfigError: an unreadable or unusable file, naming its setting
            (``lua_ssl_trusted_certificate[i]``, ``pg_ssl_cert``, ``pg_ssl_cert_key``).
    """
    if not policy.uses_tls:
        return PgTlsFiles()
    files: dict[str, bytes] = {}
    if policy.trusted:
        files["trusted.pem"] = combine_trust(_trust_sources(policy.trusted, system_bundle))
    if policy.client_cert and policy.client_key:
        material = check_client_material(
            _read(policy.client_cert, "pg_ssl_cert"), _read(policy.client_key, "pg_ssl_cert_key")
        )
        files["client.pem"], files["client.key"] = material.chain_pem, material.key_pem
    if not files:
        return PgTlsFiles()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for name, data in files.items():
        write_private_file(directory / name, data)
    written = {name: str(directory / name) for name in files}
    return PgTlsFiles(written.get("trusted.pem"), written.get("client.pem"), written.get("client.key"))


def pg_tls_params(settings: Mapping[str, object], prefix: Path, *, libpq_version: int) -> tuple[PgTlsPolicy, dict[str, str]]:
    """The policy of the node's ``pg_ssl*`` settings and its libpq parameters (writing the files it needs).

    Args:
        settings: parsed setting values by name.
        prefix: the node's ``prefix`` directory.
        libpq_version: ``psycopg.pq.version()``.

    Returns:
        The policy (for explaining failures) and the parameters to add to the connection string.

    Raises:
        ConfigError: a setting or file that cannot be used, naming it.
    """
    policy = parse_pg_tls_policy(settings)
    files = write_pg_tls_files(policy, prefix / TLS_DIRECTORY)
    return policy, libpq_tls_params(policy, files, libpq_version=libpq_version)


def _trust_sources(entries: tuple[str, ...], system_bundle: str | None) -> list[tuple[str, bytes]]:
    sources: list[tuple[str, bytes]] = []
    problems: list[Problem] = []
    for i, entry in enumerate(entries):
        label = f"lua_ssl_trusted_certificate[{i}]"
        path = entry
        if entry.strip().lower() == SYSTEM_STORE:
            found = system_bundle or system_ca_file()
            if found is None:
                paths = ssl.get_default_verify_paths()
                problems.append(Problem(label, f"`system`: this machine has no CA bundle file "
                                               f"(looked at ${paths.openssl_cafile_env}, {paths.openssl_cafile}, "
                                               f"{paths.cafile}); name CA files instead"))  # fmt: skip
                continue
            path = found
        try:
            sources.append((label, Path(path).read_bytes()))
        except OSError as exc:
            problems.append(Problem(label, f"cannot read {path}: {exc.strerror}"))
    if problems:
        raise ConfigError(problems)
    return sources


def _read(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", path=setting) from exc
