"""runtime.pg_tls and runtime.files: what libpq reads is written owner-only, atomically, and checked first."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trio_gw.errors import ConfigError
from trio_gw.runtime.files import write_private_file
from trio_gw.runtime.pg_tls import system_ca_file, write_pg_tls_files
from trio_gw.testing.pki import issue, make_ca
from trio_gw.tls.postgres import PgTlsFiles, PgTlsPolicy, parse_pg_tls_policy


def policy(**values: object) -> PgTlsPolicy:
    return parse_pg_tls_policy({"pg_ssl": True, "pg_ssl_version": "any", **values})


def test_write_private_file_replaces_atomically_and_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    target.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_private_file(target, b"new")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no temporary file left


def test_write_private_file_leaves_no_temporary_on_failure(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_private_file(tmp_path / "missing-dir" / "f", b"x")
    assert list(tmp_path.iterdir()) == []


def test_nothing_is_written_without_tls_or_material(tmp_path: Path) -> None:
    assert write_pg_tls_files(parse_pg_tls_policy({}), tmp_path / "d") == PgTlsFiles()
    assert write_pg_tls_files(policy(), tmp_path / "d") == PgTlsFiles()  # prefer, no verify, no certificate
    assert not (tmp_path / "d").exists()


def test_system_is_the_os_bundle_file(tmp_path: Path) -> None:
    found = system_ca_file()
    assert found is not None and Path(found).is_file()
    files = write_pg_tls_files(policy(pg_ssl_verify=True, lua_ssl_trusted_certificate=("system",)), tmp_path / "d")
    assert files.root_cert is not None and Path(files.root_cert).read_text().count("BEGIN CERTIFICATE") > 10


def test_system_without_a_bundle_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trio_gw.runtime.pg_tls.system_ca_file", lambda: None)
    with pytest.raises(ConfigError, match=r"lua_ssl_trusted_certificate\[1\]: `system`: this machine has no CA bundle"):
        write_pg_tls_files(policy(pg_ssl_verify=True, lua_ssl_trusted_certificate=(str(tmp_path), "system")),
                           tmp_path / "d")  # fmt: skip


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        write_pg_tls_files(policy(pg_ssl_verify=True, lua_ssl_trusted_certificate=(str(tmp_path / "nope.pem"),)),
                           tmp_path / "d")  # fmt: skip
    assert str(info.value).startswith("lua_ssl_trusted_certificate[0]: cannot read")
    leaf = issue(make_ca(), "test")
    (tmp_path / "c.pem").write_text(leaf.chain_pem())
    with pytest.raises(ConfigError, match="^pg_ssl_cert_key: cannot read"):
        write_pg_tls_files(policy(pg_ssl_cert=str(tmp_path / "c.pem"), pg_ssl_cert_key=str(tmp_path / "k")),
                           tmp_path / "d")  # fmt: skip


def test_the_client_key_is_copied_owner_only_in_a_private_directory(tmp_path: Path) -> None:
    leaf = issue(make_ca(), "test")
    (tmp_path / "c.pem").write_text(leaf.chain_pem())
    (tmp_path / "c.key").write_text(leaf.key_pem())
    (tmp_path / "c.key").chmod(0o644)
    files = write_pg_tls_files(policy(pg_ssl_cert=str(tmp_path / "c.pem"), pg_ssl_cert_key=str(tmp_path / "c.key")),
                               tmp_path / "d")  # fmt: skip
    assert files.client_key is not None and files.client_cert is not None and files.root_cert is None
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(files.client_key).stat().st_mode) == 0o600
    assert Path(files.client_key).read_text().startswith("-----BEGIN PRIVATE KEY-----")
