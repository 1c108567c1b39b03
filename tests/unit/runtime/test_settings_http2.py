"""The ``http2`` listen flag and Tyk's ``enable_http2``: which listeners offer h2, and the warnings."""

from __future__ import annotations

from trio_gw.settings import ListenAddress, http2_flag_warnings, parse_listen, parse_settings, serves_http2


def test_http2_needs_ssl() -> None:
    plain, tls, tls_h2, plain_h2 = parse_listen("127.0.0.1:1, 127.0.0.1:2 ssl, 127.0.0.1:3 ssl http2, 127.0.0.1:4 http2")
    assert [serves_http2(a) for a in (plain, tls, tls_h2, plain_h2)] == [False, False, True, False]
    # enable_http2 (Tyk) puts the flag on every ssl listener, and still never on a plain one
    assert [serves_http2(a, True) for a in (plain, tls, tls_h2, plain_h2)] == [False, True, True, False]


def test_enable_http2_setting() -> None:
    assert parse_settings([]).enable_http2 is False
    assert parse_settings([("test", {"enable_http2": "true"})]).enable_http2 is True


def test_every_ignored_http2_flag_is_named() -> None:
    warnings = http2_flag_warnings(
        parse_listen("127.0.0.1:8000 http2, 127.0.0.1:8443 ssl http2"),
        parse_listen("127.0.0.1:8444 http2 ssl"),
        (ListenAddress("127.0.0.1", 8007, http2=True),),
    )
    assert len(warnings) == 3
    assert warnings[0].startswith("proxy_listen 127.0.0.1:8000 http2: `http2` needs `ssl`")
    assert warnings[1].startswith("admin_listen 127.0.0.1:8444 ssl http2: `http2` is ignored")
    assert warnings[2].startswith("status_listen 127.0.0.1:8007 http2")
    assert http2_flag_warnings(parse_listen("127.0.0.1:8443 ssl http2, 127.0.0.1:8000")) == []
