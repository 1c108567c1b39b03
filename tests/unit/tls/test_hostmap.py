"""``split_host_port``: the one host[:port] reader of the host maps and ``no_proxy``."""

from __future__ import annotations

import pytest

from trio_gw.errors import ConfigError
from trio_gw.tls.hostmap import parse_host_map, split_host_port


@pytest.mark.parametrize(("text", "expected"), [
    ("api.example", ("api.example", None)),
    ("api.example:8443", ("api.example", 8443)),
    ("[::1]:8443", ("::1", 8443)),
    ("[::1]", ("::1", None)),
    ("2001:db8::1", ("2001:db8::1", None)),  # a bare IPv6 address has no port
])
def test_hosts_and_ports_are_split(text: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize("text", ["api.example:0", "api.example:65536", "api.example:", "api.example:²",
                                  "api.example:http", "[::1]junk", "[::1]:"])
def test_a_bad_port_or_junk_after_the_bracket_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        split_host_port(text, path="where")
    assert [p.path for p in caught.value.problems] == ["where"]


def test_a_host_map_key_with_a_non_ascii_port_names_the_key() -> None:
    with pytest.raises(ConfigError) as caught:  # was: int("²") raised ValueError through the parser
        parse_host_map({"api.example:²": "x.pem"}, path="upstream_certificates")
    assert caught.value.problems[0].path == "upstream_certificates.api.example:²"
