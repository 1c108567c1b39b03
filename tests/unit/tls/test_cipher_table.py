"""The vendored cipher table against this machine's OpenSSL (CLI and stdlib ssl).

These tests build SSLContexts, which the pure modules may not: they prove that
what ``trio_gw.tls.ciphers`` produces is taken by ``set_ciphers`` exactly, with
no silent drops.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import ssl
import sys
from pathlib import Path
from types import ModuleType

import pytest

from trio_gw.tls.ciphers import (
    CIPHER_TABLE,
    PRESETS,
    CipherPolicy,
    CipherPreset,
    CipherSuite,
    preset_policy,
)
from trio_gw.tls.downstream import parse_downstream_policy

ROOT = Path(__file__).resolve().parents[3]
USABLE = [s for s in CIPHER_TABLE if s.refusal is None]
USABLE_TLS12 = [s for s in USABLE if not s.is_tls13]
needs_cli = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_cipher_table", ROOT / "tools" / "gen_cipher_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_cipher_table", module)
    spec.loader.exec_module(module)
    return module


def _context(cipher_string: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers(cipher_string)
    return ctx


def _tls12_names(ctx: ssl.SSLContext) -> list[str]:
    return [c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"]


@needs_cli
def test_vendored_table_matches_the_local_openssl_cli() -> None:
    generated = _generator().build_table()
    vendored = json.loads((ROOT / "trio_gw" / "tls" / "cipher_table.json").read_text("utf-8"))
    assert vendored["suites"] == generated["suites"], "run tools/gen_cipher_table.py"


def test_generator_parses_cli_rows() -> None:
    rows = _generator().parse_rows(
        "          0xC0,0x2F - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 - ECDHE-RSA-AES128-GCM-SHA256 "
        "TLSv1.2 Kx=ECDH     Au=RSA   Enc=AESGCM(128)            Mac=AEAD\n"
    )
    assert rows == [
        {"code": "0xC02F", "iana": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
         "openssl": "ECDHE-RSA-AES128-GCM-SHA256", "protocol": "TLSv1.2", "kx": "ECDH",
         "au": "RSA", "enc": "AESGCM(128)", "mac": "AEAD"}
    ]  # fmt: skip
    with pytest.raises(ValueError):
        _generator().parse_rows("garbage\n")


def test_table_matches_stdlib_get_ciphers() -> None:
    ctx = _context("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    from_ssl = {
        (c["id"] & 0xFFFF, c["name"]) for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"
    }
    from_table = {(s.code, s.openssl_name) for s in CIPHER_TABLE if not s.is_tls13}
    assert from_ssl == from_table
    # TLS 1.3: get_ciphers shows OpenSSL's enabled default suites, all in the table.
    tls13 = {(c["id"] & 0xFFFF, c["name"]) for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"}
    assert tls13 <= {(s.code, s.iana_name) for s in CIPHER_TABLE if s.is_tls13}


def test_stdlib_silently_drops_unknown_names() -> None:
    # The hazard the validation exists for (docs/tls-stack.md §4).
    ctx = _context("ECDHE-RSA-AES128-GCM-SHA256:NOT-A-CIPHER:DES-CBC3-SHA")
    assert _tls12_names(ctx) == ["ECDHE-RSA-AES128-GCM-SHA256"]
    with pytest.raises(ssl.SSLError):
        _context("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")  # IANA names are not understood


@pytest.mark.parametrize("suite", USABLE_TLS12, ids=lambda s: s.openssl_name)
def test_every_usable_suite_is_accepted_alone(suite: CipherSuite) -> None:
    ctx = _context(f"{suite.openssl_name}:@SECLEVEL=0")
    assert _tls12_names(ctx) == [suite.openssl_name]


def _expected(policy: CipherPolicy) -> list[str]:
    return [s.openssl_name for s in policy.suites]


@pytest.mark.parametrize("name", [p for p in PRESETS if PRESETS[p].tls12_names])
def test_preset_cipher_string_yields_exactly_the_preset(name: CipherPreset) -> None:
    policy = preset_policy(name)
    assert policy.openssl_ciphers is not None
    assert _tls12_names(_context(policy.openssl_ciphers)) == _expected(policy)


@pytest.mark.parametrize("suite", ["modern", "intermediate", "old"])
def test_downstream_policy_cipher_string_yields_exactly_its_suites(suite: str) -> None:
    policy = parse_downstream_policy({"ssl_cipher_suite": suite}).ciphers
    if policy.openssl_ciphers is None:
        assert suite == "modern" and policy.suites == ()
        return
    assert _tls12_names(_context(policy.openssl_ciphers)) == _expected(policy)


def test_custom_iana_list_yields_exactly_its_suites() -> None:
    policy = parse_downstream_policy(
        {"ssl_ciphers": [s.iana_name for s in USABLE_TLS12[::7]], "ssl_min_version": "1.0"}
    ).ciphers
    assert policy.openssl_ciphers is not None and policy.openssl_ciphers.endswith("@SECLEVEL=0")
    assert _tls12_names(_context(policy.openssl_ciphers)) == _expected(policy)


def test_policy_version_range_applies_to_a_context() -> None:
    policy = parse_downstream_policy({"ssl_cipher_suite": "old"})
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.warns(DeprecationWarning):
        ctx.minimum_version = policy.versions.minimum
    ctx.maximum_version = policy.versions.maximum
    ctx.options |= policy.options_to_set
    ctx.options &= ~policy.options_to_clear
    assert (ctx.minimum_version, ctx.maximum_version) == (
        ssl.TLSVersion.TLSv1,
        ssl.TLSVersion.TLSv1_3,
    )
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE  # old prefers server ciphers


def test_clearing_server_preference_works_on_a_context() -> None:
    policy = parse_downstream_policy({})
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE  # Python's default
    ctx.options |= policy.options_to_set
    ctx.options &= ~policy.options_to_clear
    assert not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
