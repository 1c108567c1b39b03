"""What a TLS scanner sees on a listener is exactly what its policy says: versions, suites, groups, DH size.

sslscan (Debian's package, installed by ``make system-tools``) tries every protocol
version, every cipher suite its OpenSSL knows and every key-exchange group against
the listener, one handshake each, and reports what was accepted.  The expectation
is computed from the pure policy (``parse_downstream_policy``), so a suite or group
that the policy lists but OpenSSL silently cannot use (as the DHE suites could not,
before DH parameters were loaded) fails here, and so does one OpenSSL accepts
beyond the policy.
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from trio_gw.tls.ciphers import OPENSSL_DEFAULT_TLS13_CIPHERSUITES
from trio_gw.tls.downstream import parse_downstream_policy

from .conftest import StartGateway, Upstream, port_of

pytestmark = pytest.mark.skipif(shutil.which("sslscan") is None and os.environ.get("CI") != "true",
                                reason="needs sslscan (make system-tools)")

#: IANA code points of the groups (RFC 8446 §4.2.7, RFC 7919), as sslscan prints them.
GROUP_IDS = {"P-256": 0x17, "P-384": 0x18, "P-521": 0x19, "X25519": 0x1D, "X448": 0x1E, "ffdhe2048": 0x100,
             "ffdhe3072": 0x101, "ffdhe4096": 0x102, "ffdhe6144": 0x103, "ffdhe8192": 0x104}


async def scan(port: int) -> ET.Element:
    result = await trio.run_process(["sslscan", "--no-colour", "--xml=-", f"127.0.0.1:{port}"],
                                    capture_stdout=True, capture_stderr=True)
    return ET.fromstring(result.stdout)


def accepted(report: ET.Element) -> dict[str, Any]:
    return {
        "versions": {f"{p.get('type')}{p.get('version')}" for p in report.iter("protocol") if p.get("enabled") == "1"},
        "tls13": {c.get("cipher") for c in report.iter("cipher") if c.get("sslversion") == "TLSv1.3"},
        "tls12": {c.get("cipher") for c in report.iter("cipher") if c.get("sslversion") == "TLSv1.2"},
        "groups": {(g.get("sslversion"), int(g.get("id") or "0", 16)) for g in report.iter("group")},
        "dh_bits": {c.get("dhebits") for c in report.iter("cipher") if c.get("dhebits")},
    }


async def gateway(start: StartGateway, upstream: Upstream, tmp_path: Path, key: trustme.KeyType,
                  **settings: str) -> int:
    ca = trustme.CA(key_type=key)
    leaf = ca.issue_cert("localhost", "127.0.0.1", key_type=key)
    cert, key_file = tmp_path / f"{key.name}-{len(settings)}.pem", tmp_path / f"{key.name}-{len(settings)}.key"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    declarative = {"_format_version": "3.0",
                   "services": [{"name": "echo", "url": upstream.url, "routes": [{"name": "r", "paths": ["/"]}]}]}
    gw = await start(declarative, ssl_cert=str(cert), ssl_cert_key=str(key_file), **settings)
    return port_of(gw, ssl=True)


def expected(settings: dict[str, str], key: trustme.KeyType) -> dict[str, Any]:
    policy = parse_downstream_policy(settings)
    auth = "RSA" if key is trustme.KeyType.RSA else "ECDSA"
    tls12 = policy.versions.minimum <= 771 <= policy.versions.maximum
    tls13 = policy.versions.maximum >= 772
    groups = set()
    for name in policy.groups.names or tuple(GROUP_IDS):  # auto: OpenSSL's list, which sslscan finds whole
        if tls13:
            groups.add(("TLSv1.3", GROUP_IDS[name]))
        if tls12 and not name.startswith("ffdhe"):  # finite-field groups are TLS 1.3 key shares only
            # In TLS 1.2 a client's group list also names the curves it accepts for ECDSA certificates
            # (RFC 8422 §5.1.1): offered one group at a time, only P-256 reaches trustme's P-256 key.
            if auth == "RSA" or name == "P-256":
                groups.add(("TLSv1.2", GROUP_IDS[name]))
    return {
        "versions": {v for v, on in (("tls1.2", tls12), ("tls1.3", tls13)) if on},
        "tls13": set(OPENSSL_DEFAULT_TLS13_CIPHERSUITES.split(":")) if tls13 else set(),
        "tls12": {s.openssl_name for s in policy.ciphers.suites if s.au == auth} if tls12 else set(),
        "groups": groups,
        "dh_bits": ({str(policy.dh_params.bits)} if policy.dh_params is not None and auth == "RSA" and tls12
                    else set()),
    }


@pytest.mark.parametrize(
    ("key", "settings"),
    [
        (trustme.KeyType.RSA, {}),
        (trustme.KeyType.ECDSA, {}),
        (trustme.KeyType.RSA, {"ssl_dhparam": "ffdhe3072", "ssl_ecdh_curve": "P-384:X25519"}),
        (trustme.KeyType.ECDSA, {"ssl_cipher_suite": "modern"}),
        (trustme.KeyType.RSA, {"ssl_cipher_suite": "custom", "ssl_ciphers": "ECDHE-RSA-AES256-GCM-SHA384",
                               "ssl_max_version": "1.2", "ssl_ecdh_curve": "auto"}),
    ],
    ids=["rsa-defaults", "ecdsa-defaults", "rsa-dhparam-groups", "ecdsa-modern", "rsa-custom-auto"],
)
async def test_a_scanner_finds_exactly_the_policy(
    start_gateway: StartGateway, upstream: Upstream, tmp_path: Path, key: trustme.KeyType, settings: dict[str, str]
) -> None:
    port = await gateway(start_gateway, upstream, tmp_path, key, **settings)
    found = accepted(await scan(port))
    assert found == expected(settings, key)
    assert found["tls12"] or found["tls13"]  # the scan did reach the listener
