from __future__ import annotations

from pathlib import Path

import pytest

from trio_gw.errors import ConfigError
from trio_gw.runtime.settings import load_settings
from trio_gw.settings import (
    SETTINGS,
    ListenAddress,
    Settings,
    parse_listen,
    parse_settings,
    settings_reference_markdown,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "settings.md"


def test_defaults_parse() -> None:
    s = parse_settings([])
    assert s.proxy_listen == (ListenAddress("127.0.0.1", 8000), ListenAddress("127.0.0.1", 8443, ssl=True))
    assert s.database == "sqlite"
    assert s.keepalive_timeout == 60.0
    assert s.sources["database"] == "default"


def test_precedence_file_then_env_then_cli(tmp_path: Path) -> None:
    conf = tmp_path / "gw.yaml"
    conf.write_text("keepalive_timeout: 5s\nmax_header_size: 1000\nlog_level: info\n")
    s = load_settings(
        conf,
        environ={"TRIO_GW_MAX_HEADER_SIZE": "2000", "TRIO_GW_LOG_LEVEL": "error", "HOME": "/x"},
        overrides={"log_level": "debug"},
    )
    assert s.keepalive_timeout == 5.0
    assert s.max_header_size == 2000
    assert s.log_level == "debug"
    assert s.sources == {**s.sources, "keepalive_timeout": str(conf), "max_header_size": "environment",
                         "log_level": "command line"}


def test_unknown_key_names_it_and_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings([("gw.yaml", {"proxy_lisen": "127.0.0.1:1"})])
    assert str(info.value) == "proxy_lisen: unknown setting in gw.yaml (did you mean 'proxy_listen'?)"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings([("f", {"keepalive_timeout": "soon", "database": "mongo", "max_header_size": True})])
    paths = [p.path for p in info.value.problems]
    assert paths == ["database", "keepalive_timeout", "max_header_size"]
    assert "expected one of off, sqlite, postgres, got 'mongo'" in str(info.value)


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read settings file"):
        load_settings(tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings(bad, environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken, environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("off", ()),
        ("127.0.0.1:0", (ListenAddress("127.0.0.1", 0),)),
        ("[::1]:8443 ssl http2", (ListenAddress("::1", 8443, ssl=True, http2=True),)),
        (["127.0.0.1:1", "127.0.0.1:2 ssl reuseport"],
         (ListenAddress("127.0.0.1", 1), ListenAddress("127.0.0.1", 2, ssl=True, reuseport=True))),
        ("192.0.2.1:8000 reuseport backlog=511", (ListenAddress("192.0.2.1", 8000, reuseport=True, backlog=511),)),
    ],
)
def test_parse_listen(text: object, expected: tuple[ListenAddress, ...]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:99999", "127.0.0.1:80 sssl", "host:port"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


@pytest.mark.parametrize("flag", ["backlog=", "backlog=0", "backlog=-5", "backlog=lots", "backlog=70000"])
def test_a_bad_backlog_names_the_setting_and_the_reason(flag: str) -> None:
    with pytest.raises(ConfigError, match=rf"proxy_listen: .*{flag}.* is not a number from 1 to 65535"):
        parse_settings([("f", {"proxy_listen": f"127.0.0.1:8000 {flag}"})])


def test_a_listen_address_prints_a_backlog_it_was_given() -> None:
    assert str(ListenAddress("127.0.0.1", 8000, backlog=511)) == "127.0.0.1:8000 backlog=511"
    assert str(ListenAddress("127.0.0.1", 8000)) == "127.0.0.1:8000"


def test_cert_and_key_lists_must_pair() -> None:
    with pytest.raises(ConfigError, match="ssl_cert_key: needs one key per ssl_cert entry"):
        parse_settings([("f", {"ssl_cert": ["a.pem", "b.pem"], "ssl_cert_key": "a.key"})])


def test_reference_page_is_in_sync() -> None:
    assert DOCS.read_text() == settings_reference_markdown(), "regenerate: trio-gw settings --markdown > docs/settings.md"


def test_reference_page_lists_every_setting() -> None:
    page = settings_reference_markdown()
    for s in SETTINGS:
        assert f"| `{s.name}` |" in page


# --- aliases: Kong's full nginx_proxy_* names ----------------------------------------------


def test_kong_names_are_aliases_from_file_and_environment(tmp_path: Path) -> None:
    conf = tmp_path / "gw.yaml"
    conf.write_text("nginx_proxy_proxy_ssl_trusted_certificate: /ca.pem\nnginx_proxy_proxy_tls_verify: off\n")
    s = load_settings(conf, environ={"TRIO_GW_NGINX_PROXY_PROXY_SSL_VERIFY_DEPTH": "3"})
    assert s.proxy_ssl_trusted_certificate == ("/ca.pem",)
    assert s.proxy_ssl_verify is False
    assert s.proxy_ssl_verify_depth == 3
    assert s.sources["proxy_ssl_verify"] == f"{conf}, as nginx_proxy_proxy_tls_verify"
    assert s.sources["proxy_ssl_verify_depth"] == "environment, as nginx_proxy_proxy_ssl_verify_depth"
    env = load_settings(environ={"TRIO_GW_NGINX_PROXY_PROXY_SSL_VERIFY": "on"})
    assert env.proxy_ssl_verify is True and env.proxy_ssl_insecure_skip_verify is None


def test_a_setting_given_twice_in_one_source_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings([("gw.yaml", {"proxy_ssl_verify": True, "nginx_proxy_proxy_tls_verify": False})])
    assert str(info.value) == ("nginx_proxy_proxy_tls_verify: 'proxy_ssl_verify' is already set in gw.yaml as "
                               "'proxy_ssl_verify'; use one name")


def test_a_later_source_may_use_the_other_name() -> None:
    s = parse_settings([("gw.yaml", {"proxy_ssl_trusted_certificate": "/a.pem"}),
                        ("environment", {"nginx_proxy_proxy_ssl_trusted_certificate": "/b.pem"})])
    assert s.proxy_ssl_trusted_certificate == ("/b.pem",)


def test_bad_value_under_an_alias_says_which_name() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings([("gw.yaml", {"nginx_proxy_proxy_tls_verify": "maybe"})])
    assert info.value.problems[0].path == "proxy_ssl_verify"
    assert "(from gw.yaml, as nginx_proxy_proxy_tls_verify)" in str(info.value)


def test_unknown_key_suggests_an_alias() -> None:
    with pytest.raises(ConfigError, match="did you mean 'nginx_proxy_proxy_tls_verify'"):
        parse_settings([("gw.yaml", {"nginx_proxy_proxy_tls_verfy": "on"})])


def test_verification_switches_default_to_unset() -> None:
    s = parse_settings([])
    assert s.proxy_ssl_verify is None and s.proxy_ssl_insecure_skip_verify is None  # verify on (tls.upstream)


def test_reference_page_lists_aliases() -> None:
    page = settings_reference_markdown()
    line = next(x for x in page.splitlines() if x.startswith("| `proxy_ssl_verify` |"))
    assert "`nginx_proxy_proxy_ssl_verify`, `nginx_proxy_proxy_tls_verify`" in line and "| `on` |" in line
    assert "Also accepted as `nginx_proxy_proxy_ssl_trusted_certificate`" in page


def test_the_typed_fields_are_the_table() -> None:
    """Settings has one typed field per row (mypy then checks every use), and each default parses."""
    import dataclasses
    import typing

    fields = [f.name for f in dataclasses.fields(Settings) if f.name != "sources"]
    assert fields == [s.name for s in SETTINGS]
    hints = typing.get_type_hints(Settings)
    defaults = parse_settings([])
    for name in fields:
        value, hint = getattr(defaults, name), hints[name]
        if hint is object:
            continue  # kept as written for the policy parser that owns it
        origin = typing.get_origin(hint)
        allowed = typing.get_args(hint) if origin in (typing.Union, __import__("types").UnionType) else (hint,)
        assert any(_conforms(value, t) for t in allowed), (name, value, hint)


def _conforms(value: object, hint: object) -> bool:
    import typing

    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, tuple) and all(isinstance(v, item) for v in value)
    assert isinstance(hint, type)
    return isinstance(value, hint)


def test_as_mapping_holds_every_setting_and_no_secret_source() -> None:
    mapping = parse_settings([("test", {"ssl_min_version": "1.3"})]).as_mapping()
    assert set(mapping) == {s.name for s in SETTINGS}
    assert mapping["ssl_min_version"] == "1.3"


def test_workers_take_a_number_or_auto_and_kongs_name() -> None:
    assert parse_settings([]).workers == 1  # one process: today's node
    assert parse_settings([("f", {"workers": "auto"})]).workers is None
    kong = parse_settings([("f", {"nginx_worker_processes": 4})])
    assert kong.workers == 4 and kong.sources["workers"] == "f, as nginx_worker_processes"
    for bad in (0, "-1", "two", True):
        with pytest.raises(ConfigError) as info:
            parse_settings([("f", {"workers": bad})])
        assert info.value.problems[0].path == "workers"


def test_ticket_settings() -> None:
    s = parse_settings([("f", {"ssl_session_ticket_key": "/a, /b", "ssl_session_ticket_rotation": "1h"})])
    assert (s.ssl_session_ticket_key, s.ssl_session_ticket_rotation) == (("/a", "/b"), 3600.0)
    assert parse_settings([]).ssl_session_ticket_rotation == 12 * 3600.0
    with pytest.raises(ConfigError, match="ssl_session_ticket_rotation: expected at least 5s"):
        parse_settings([("f", {"ssl_session_ticket_rotation": "4s"})])


def test_stapling_and_revocation_settings() -> None:
    """nginx's and Envoy's names, typed; checked together; every problem names its key."""
    s = parse_settings([("cli", {"ssl_stapling": "on", "ocsp_staple_policy": "STRICT_STAPLING", "ssl_ocsp": "leaf",
                                 "ssl_crl": "a.crl, b.crl"})])
    assert (s.ssl_stapling, s.ssl_stapling_verify, s.ocsp_staple_policy) == (True, True, "strict")
    assert (s.ssl_ocsp, s.ssl_crl, s.admin_ssl_ocsp) == ("leaf", ("a.crl", "b.crl"), "off")
    with pytest.raises(ConfigError) as info:
        parse_settings([("cli", {"ocsp_staple_policy": "must_staple", "ssl_stapling_responder": "ftp://x",
                                 "ssl_ocsp": "sometimes", "admin_ssl_ocsp": "on"})])
    text = str(info.value)
    for expected in ("ocsp_staple_policy: must_staple needs ssl_stapling on",
                     "ssl_stapling_responder: expected an http:// or https:// URL",
                     "ssl_ocsp: expected one of off, on, leaf", "admin_ssl_ocsp: checks admin client certificates"):
        assert expected in text
    assert parse_settings([("cli", {"admin_mtls": "on", "admin_ssl_ocsp": "on"})]).admin_ssl_ocsp == "on"


def test_ssl_dhparam_path_is_read_with_each_generation(tmp_path: Path) -> None:
    from trio_gw.runtime.certificate_files import read_dhparam_file
    from trio_gw.tls.dhparams import ffdhe_group, parse_dhparam

    params = tmp_path / "dh.pem"
    params.write_bytes(ffdhe_group("ffdhe3072").pem)
    settings = load_settings(None, environ={}, overrides={"ssl_dhparam": str(params)})
    assert settings.ssl_dhparam == str(params)  # the path is kept: every reload reads the file again
    text = read_dhparam_file(settings)
    assert text is not None and parse_dhparam(text).name == "ffdhe3072"
    assert read_dhparam_file(load_settings(None, environ={}, overrides={"ssl_dhparam": "ffdhe4096"})) is None
    assert read_dhparam_file(load_settings(None, environ={}, overrides={})) is None
    missing = load_settings(None, environ={}, overrides={"ssl_dhparam": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError) as info:
        read_dhparam_file(missing)
    assert info.value.problems[0].path == "ssl_dhparam"
    assert "cannot read" in info.value.problems[0].message
