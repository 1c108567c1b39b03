"""TLS-server settings beyond the proxy's certificate: status_ssl_cert, lua_ssl_trusted_certificate,
ssl_certificates (order, pairs without a key), skip_client_ca_announcement."""

from __future__ import annotations

import hashlib
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from trio_gw.errors import ConfigError
from trio_gw.model.declarative import load_declarative_text
from trio_gw.model.entities import Entities
from trio_gw.net.http_fetch import outbound_tls_context
from trio_gw.runtime.certificate_files import read_default_certificates, read_pairs, read_ssl_certificates_files
from trio_gw.settings import parse_settings
from trio_gw.snapshot import build_snapshot
from trio_gw.testing.pki import Issued, issue, make_ca
from trio_gw.tls.sni import SniRule, select_certificate

NOW = 1_800_000_000


def settings(**values: Any) -> Any:
    return parse_settings([("test", values)])


@pytest.fixture(scope="module")
def root() -> Issued:
    return make_ca(common_name="tls-server root")


def _write_pair(directory: Path, leaf: Issued, name: str, *, key: bool = True, cert: bool = True) -> Path:
    path = directory / f"{name}.pem"
    path.write_text((leaf.chain_pem() if cert else "") + (leaf.key_pem() if key else ""))
    return path


# --- settings --------------------------------------------------------------------------------------


def test_defaults_trust_the_system_store_and_leave_depth_to_openssl() -> None:
    s = settings()
    assert s.lua_ssl_trusted_certificate == ("system",)
    assert s.lua_ssl_verify_depth is None
    assert s.status_ssl_cert == () and s.skip_client_ca_announcement is False


def test_kong_list_syntax_and_pair_counts() -> None:
    assert settings(lua_ssl_trusted_certificate="system,/etc/ca.pem").lua_ssl_trusted_certificate == (
        "system", "/etc/ca.pem")
    with pytest.raises(ConfigError) as info:
        settings(status_ssl_cert=["a.pem"], lua_ssl_verify_depth=101)
    paths = {p.path for p in info.value.problems}
    assert paths == {"status_ssl_cert_key", "lua_ssl_verify_depth"}


# --- lua_ssl_trusted_certificate -------------------------------------------------------------------


def test_outbound_context_loads_files_and_verifies_names(root: Issued, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(root.cert_pem())
    ctx = outbound_tls_context([str(ca)], 2)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] == 1
    assert outbound_tls_context([]).cert_store_stats()["x509_ca"] == 0  # empty: trusts nothing


def test_outbound_context_names_every_unusable_entry(tmp_path: Path) -> None:
    not_pem = tmp_path / "note.txt"
    not_pem.write_text("hello")
    with pytest.raises(ConfigError) as info:
        outbound_tls_context(["system", str(tmp_path / "missing.pem"), str(not_pem)])
    assert [(p.path, "missing.pem" in p.message or "no PEM certificate" in p.message) for p in info.value.problems] == [
        ("lua_ssl_trusted_certificate[1]", True), ("lua_ssl_trusted_certificate[2]", True)]


# --- ssl_certificates --------------------------------------------------------------------------------


def test_a_pair_without_its_key_or_certificate_is_refused(root: Issued, tmp_path: Path) -> None:
    leaf = issue(root, "alpha.example")
    cert_only = _write_pair(tmp_path, leaf, "cert-only", key=False)
    key_only = _write_pair(tmp_path, leaf, "key-only", cert=False)
    with pytest.raises(ConfigError) as info:
        read_ssl_certificates_files(settings(ssl_certificates=[str(cert_only), str(key_only)]), now=NOW)
    messages = {p.path: p.message for p in info.value.problems}
    assert messages[f"ssl_certificates[0] ({cert_only})"].startswith("holds no private key")
    assert messages[f"ssl_certificates[1] ({key_only})"].startswith("holds no certificate")


def test_no_generated_default_when_ssl_certificates_are_given(root: Issued, tmp_path: Path) -> None:
    pair = _write_pair(tmp_path, issue(root, "alpha.example"), "alpha")
    s = settings(proxy_listen="127.0.0.1:0 ssl", ssl_certificates=[str(pair)], prefix=str(tmp_path / "prefix"))
    assert read_default_certificates(s, now=NOW) == []
    assert not (tmp_path / "prefix" / "pki").exists()


def test_the_first_ssl_certificate_is_the_default_and_store_ids_count(root: Issued, tmp_path: Path) -> None:
    alpha, beta = issue(root, "alpha.example"), issue(root, "beta.example")
    alpha_file = _write_pair(tmp_path, alpha, "alpha")
    entities = load_declarative_text(json.dumps({"_format_version": "3.0", "certificates": [
        {"id": "0b5b3c1e-2a4d-4e6f-8a9b-0c1d2e3f4a5b", "cert": beta.chain_pem(), "key": beta.key_pem()}]}), now=NOW)
    for order, expected in (([str(alpha_file), "sha256:" + _fingerprint(beta)], "ssl_certificates#0"),
                            (["sha256:" + _fingerprint(beta), str(alpha_file)], "0b5b3c1e-2a4d-4e6f-8a9b-0c1d2e3f4a5b"),
                            (["0b5b3c1e-2a4d-4e6f-8a9b-0c1d2e3f4a5b", str(alpha_file)],
                             "0b5b3c1e-2a4d-4e6f-8a9b-0c1d2e3f4a5b")):
        s = settings(ssl_certificates=order)
        snap = build_snapshot(s, entities, extra_certificates=read_ssl_certificates_files(s, now=NOW), now=NOW)
        chosen = select_certificate(snap.sni_index, "nobody.example")
        assert chosen is not None and (chosen.certificate_id, chosen.rule) == (expected, SniRule.FIRST_CONFIGURED)
        by_san = select_certificate(snap.sni_index, "alpha.example")
        assert by_san is not None and by_san.certificate_id.startswith("ssl_certificates#")


def _fingerprint(leaf: Issued) -> str:
    return hashlib.sha256(leaf.cert_der()).hexdigest()


# --- server pairs read from files ------------------------------------------------------------------


def test_a_key_problem_names_the_key_setting_and_file(root: Issued, tmp_path: Path) -> None:
    leaf, other = issue(root, "a.example"), issue(root, "b.example")
    cert = tmp_path / "a.crt"
    cert.write_text(leaf.chain_pem())
    key = tmp_path / "b.key"
    key.write_text(other.key_pem())
    encrypted = tmp_path / "enc.key"
    encrypted.write_text(leaf.key_pem(password=b"kong"))
    with pytest.raises(ConfigError) as info:
        read_pairs([(str(cert), str(key)), (str(cert), str(encrypted))], "status_ssl_cert", now=NOW)
    messages = {p.path: p.message for p in info.value.problems}
    assert messages[f"status_ssl_cert_key[0] ({key})"].startswith("does not match the certificate")
    assert "remove it" in messages[f"status_ssl_cert_key[1] ({encrypted})"]


# --- skip_client_ca_announcement -------------------------------------------------------------------


def _mtls_entities(ca: Issued, *, send_ca_dn: bool) -> Entities:
    ca_id = "6b1f2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"
    return load_declarative_text(json.dumps({
        "_format_version": "3.0",
        "ca_certificates": [{"id": ca_id, "cert": ca.cert_pem()}],
        "services": [{"name": "s", "url": "http://127.0.0.1:1", "routes": [{"name": "r", "paths": ["/"], "plugins": [
            {"name": "mtls-auth", "config": {"ca_certificates": [ca_id], "send_ca_dn": send_ca_dn}}]}]}],
    }), now=NOW)


def test_skip_client_ca_announcement_overrides_send_ca_dn(root: Issued) -> None:
    entities = _mtls_entities(root, send_ca_dn=True)
    announced = build_snapshot(settings(), entities, now=NOW)
    skipped = build_snapshot(settings(skip_client_ca_announcement=True), entities, now=NOW)
    assert len(announced.client_auth.announce_pem) == 1
    assert skipped.client_auth.announce_pem == ()
    assert skipped.client_auth.anchors_pem == announced.client_auth.anchors_pem  # trust unchanged
    assert skipped.client_auth.generation != announced.client_auth.generation  # new listener contexts
    assert any("skip_client_ca_announcement is on" in w for w in skipped.warnings)
    quiet = build_snapshot(settings(skip_client_ca_announcement=True), _mtls_entities(root, send_ca_dn=False),
                           now=NOW)
    assert not any("skip_client_ca_announcement" in w for w in quiet.warnings)
