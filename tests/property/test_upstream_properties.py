"""Properties of the upstream TLS profile: precedence service > host map > global, per field."""

from __future__ import annotations

import base64
import ssl

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_gw.model.entities import Certificate, Entities, Service
from trio_gw.testing import pki as tpki
from trio_gw.tls.hostmap import HostMap, parse_host_map
from trio_gw.tls.pinning import PinSet
from trio_gw.tls.proxy_url import parse_proxy_url
from trio_gw.tls.upstream import ClientCertificate, UpstreamTlsDefaults, select_upstream_profile

_ROOT = tpki.make_ca()
_LEAF = tpki.issue(_ROOT, "svc.api.example")
SERVICE_CERT_ID = "0b6b5c2e-4a1f-4c36-a6a2-0cf4a3f6d001"
ENTITIES = Entities(certificates={SERVICE_CERT_ID: Certificate(SERVICE_CERT_ID, _LEAF.chain_pem(), _LEAF.key_pem())})
HOST_CERT = ClientCertificate("host-chain", "host-key")
GLOBAL_CERT = ClientCertificate("global-chain", "global-key")
HOST_PINS = PinSet(frozenset({b"h" * 32}))
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

maybe_bool = st.none() | st.booleans()


@settings(max_examples=200, deadline=None)
@given(
    service_cert=st.booleans(), host_cert=st.booleans(), global_cert=st.booleans(),
    service_verify=maybe_bool, global_verify=st.booleans(),
    service_cn=maybe_bool, global_cn=st.booleans(),
    service_depth=st.none() | st.integers(0, 64), global_depth=st.none() | st.integers(0, 64),
    service_min=st.none() | st.sampled_from(["1.2", "1.3"]),
    host_pins=st.booleans(), service_pins=st.booleans(),
    host_key=st.sampled_from(["*", "*.api.example", "svc.api.example", "svc.api.example:8443", "other.example", "svc.api.example:1"]),
)
def test_most_specific_layer_wins_per_field(
    service_cert: bool, host_cert: bool, global_cert: bool, service_verify: bool | None, global_verify: bool,
    service_cn: bool | None, global_cn: bool, service_depth: int | None, global_depth: int | None,
    service_min: str | None, host_pins: bool, service_pins: bool, host_key: str,
) -> None:
    pin = "sha256//" + base64.b64encode(b"s" * 32).decode()
    service = Service(
        id="s", host="svc.api.example", port=8443, protocol="https",
        client_certificate=SERVICE_CERT_ID if service_cert else None,
        tls_verify=service_verify, tls_verify_depth=service_depth, tls_force_common_name_check=service_cn,
        tls_min_version=service_min, tls_pinned_public_keys=(pin,) if service_pins else (),
    )
    keys: HostMap[str] = parse_host_map({host_key: "x"}, path="m")
    defaults = UpstreamTlsDefaults(
        verify=global_verify, verify_depth=global_depth, force_common_name_check=global_cn,
        client_certificate=GLOBAL_CERT if global_cert else None,
        certificates_by_host=keys.map(lambda k, v: HOST_CERT) if host_cert else HostMap(),
        pins_by_host=keys.map(lambda k, v: HOST_PINS) if host_pins else HostMap(),
    )
    profile = select_upstream_profile(service, ENTITIES, defaults, now=1_700_000_000)
    host_hit = host_key not in ("other.example", "svc.api.example:1")

    if service_cert:
        assert profile.client_certificate is not None and profile.client_certificate.chain_pem == _LEAF.chain_pem()
    elif host_cert and host_hit:
        assert profile.client_certificate == HOST_CERT
    else:
        assert profile.client_certificate == (GLOBAL_CERT if global_cert else None)
    assert profile.verify == (global_verify if service_verify is None else service_verify)
    assert profile.force_common_name_check == (global_cn if service_cn is None else service_cn)
    assert profile.verify_depth == (global_depth if service_depth is None else service_depth)
    assert profile.policy.versions.minimum == VERSIONS[service_min or "1.2"]
    if service_pins:
        assert len(profile.pins.digests) == 1 and profile.pins != HOST_PINS
    else:
        assert profile.pins == (HOST_PINS if host_pins and host_hit else PinSet())
    # equal inputs give equal (hashable) profiles: one context, one pool
    assert hash(profile) == hash(select_upstream_profile(service, ENTITIES, defaults, now=1_700_000_000))


@given(host=st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,10}){1,3}", fullmatch=True), port=st.integers(1, 65535))
def test_host_map_lookup_order(host: str, port: int) -> None:
    parent = host.partition(".")[2]
    entries = {"*": "all", host: "host", f"{host}:{port}": "port"}
    if "." in parent:
        entries[f"*.{parent}"] = "wild"
    m = parse_host_map(entries, path="m")
    assert m.select(host.upper(), port)[1] == "port"  # type: ignore[index]
    assert m.select(host, port % 65535 + 1)[1] == "host"  # type: ignore[index]
    assert m.select("zz" + host, port)[1] == ("wild" if "." in parent else "all")  # type: ignore[index]


@given(user=st.text(min_size=1, max_size=12), password=st.text(max_size=12))
def test_proxy_credentials_round_trip_and_never_leak(user: str, password: str) -> None:
    from urllib.parse import quote

    proxy = parse_proxy_url(f"http://{quote(user, safe='')}:{quote(password, safe='')}@proxy.example:3128", path="p")
    assert (proxy.username, proxy.password) == (user, password)
    assert "password" not in repr(proxy)  # the field is hidden from repr
    assert proxy.authorization is not None and proxy.identity.endswith(proxy.identity[-16:])
