"""TLS termination: certificate selection by SNI, policy enforcement, rotation — over real sockets."""

from __future__ import annotations

import re
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from trio_gw.testing.http_client import Client

from .conftest import StartGateway, Upstream, port_of


def _pair(ca: trustme.CA, *names: str, cn: str | None = None) -> dict[str, str]:
    leaf = ca.issue_cert(*names, common_name=cn or names[0])
    return {"cert": "".join(b.bytes().decode() for b in leaf.cert_chain_pems), "key": leaf.private_key_pem.bytes().decode()}


def _config(upstream: Upstream, certificates: list[dict[str, Any]], **route: Any) -> dict[str, Any]:
    r = {"name": "r", "paths": ["/"], **route}
    return {"_format_version": "3.0", "certificates": certificates,
            "services": [{"name": "echo", "url": upstream.url, "routes": [r]}]}


async def served_cn(port: int, server_name: str | None, ca: trustme.CA, **ctx_opts: Any) -> str:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.check_hostname = False  # we inspect what was served, not whether it fits
    for k, v in ctx_opts.items():
        setattr(ctx, k, v)
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(sock, ctx, server_hostname=server_name)
    await stream.do_handshake()
    der = stream.getpeercert(binary_form=True)
    await trio.aclose_forcefully(stream)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:
        return str(cns[0].value)
    return str(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value[0].value)


@pytest.fixture
async def three_cert_gateway(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, tmp_path: Path
) -> Any:
    default = ca.issue_cert("default.test", common_name="default.test")
    cert, key = tmp_path / "default.pem", tmp_path / "default.key"
    cert.write_bytes(b"".join(b.bytes() for b in default.cert_chain_pems))
    default.private_key_pem.write_to_path(str(key))
    certificates = [
        {**_pair(ca, "api.example.test"), "snis": ["api.example.test"]},
        {**_pair(ca, "*.example.test", cn="wildcard.example.test"), "snis": ["*.example.test"]},
    ]
    return await start_gateway(_config(upstream, certificates), ssl_cert=str(cert), ssl_cert_key=str(key))


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        ("api.example.test", "api.example.test"),
        ("API.Example.TEST", "api.example.test"),
        ("api.example.test.", "api.example.test"),
        ("www.example.test", "wildcard.example.test"),
        ("WWW.EXAMPLE.TEST", "wildcard.example.test"),
        ("a.b.example.test", "default.test"),  # a wildcard covers exactly one label
        ("example.test", "default.test"),  # ... and not the apex
        ("other.test", "default.test"),
        (None, "default.test"),  # no SNI (an IP-literal client)
    ],
)
async def test_sni_selects_certificate(three_cert_gateway: Any, ca: trustme.CA, server_name: str | None, expected: str) -> None:
    port = port_of(three_cert_gateway, ssl=True)
    assert await served_cn(port, server_name, ca) == expected


async def test_strict_sni_refuses_unknown_names(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    cert, key = server_pair
    certificates = [{**_pair(ca, "api.example.test"), "snis": ["api.example.test"]}]
    gw = await start_gateway(_config(upstream, certificates), ssl_cert=str(cert), ssl_cert_key=str(key),
                             ssl_sni_strict="on")
    port = port_of(gw, ssl=True)
    assert await served_cn(port, "api.example.test", ca) == "api.example.test"
    with pytest.raises(trio.BrokenResourceError) as info:
        await served_cn(port, "unknown.example.test", ca)
    assert "UNRECOGNIZED_NAME" in str(info.value.__cause__).upper()


async def test_version_policy_enforced(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    cert, key = server_pair
    gw = await start_gateway(_config(upstream, []), ssl_cert=str(cert), ssl_cert_key=str(key),
                             ssl_min_version="1.3")
    port = port_of(gw, ssl=True)
    assert await served_cn(port, "localhost", ca) == "localhost"
    with pytest.raises(trio.BrokenResourceError) as info:
        await served_cn(port, "localhost", ca, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert "PROTOCOL_VERSION" in str(info.value.__cause__).upper()


async def test_rotation_applies_to_next_handshake(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, client_ctx: ssl.SSLContext
) -> None:
    first = {**_pair(ca, "api.example.test", cn="first"), "snis": ["api.example.test"]}
    gw = await start_gateway(_config(upstream, [first]))
    # no ssl_cert default: the https listener is still opened by the test's settings below
    port = port_of(gw, ssl=True)
    kept = await Client.connect(port, tls=client_ctx, server_hostname="api.example.test")
    assert (await kept.request("GET", "/anything", host="api.example.test")).status == 200
    assert await served_cn(port, "api.example.test", ca) == "first"
    second = {**_pair(ca, "api.example.test", cn="second"), "snis": ["api.example.test"]}
    assert gw.settings.declarative_config is not None
    Path(gw.settings.declarative_config).write_text(yaml.safe_dump(_config(upstream, [second])))
    await gw.reload()
    assert await served_cn(port, "api.example.test", ca) == "second"
    # the established connection carries on undisturbed
    assert (await kept.request("GET", "/anything", host="api.example.test")).status == 200


async def test_https_enforcement(start_gateway: StartGateway, upstream: Upstream, server_pair: tuple[Path, Path]) -> None:
    cert, key = server_pair
    gw = await start_gateway(_config(upstream, [], protocols=["https"]), ssl_cert=str(cert), ssl_cert_key=str(key))
    reply = await (await Client.connect(port_of(gw))).request("GET", "/x?y=1", host="api.example.test")
    assert reply.status == 426
    assert reply.json()["message"] == "Please use HTTPS protocol"
    gw2 = await start_gateway(_config(upstream, [], protocols=["https"], https_redirect_status_code=308),
                              ssl_cert=str(cert), ssl_cert_key=str(key))
    reply = await (await Client.connect(port_of(gw2))).request("GET", "/x?y=1", host="api.example.test")
    assert reply.status == 308
    assert reply.headers["location"] == f"https://api.example.test:{port_of(gw2, ssl=True)}/x?y=1"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
async def test_openssl_s_client_sees_chosen_certificate_and_version(three_cert_gateway: Any, ca_pem: Path) -> None:
    port = port_of(three_cert_gateway, ssl=True)
    result = await trio.run_process(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "www.example.test",
         "-CAfile", str(ca_pem), "-tls1_2"],
        stdin=b"", capture_stdout=True, capture_stderr=True, check=False,
    )
    out = result.stdout.decode()
    assert re.search(r"^subject=.*CN = wildcard\.example\.test$", out, re.M), out
    assert "Protocol  : TLSv1.2" in out
    assert "Verify return code: 0 (ok)" in out


async def test_rsa_and_ecdsa_default_pairs_served_together(
    start_gateway: StartGateway, upstream: Upstream, tmp_path: Path
) -> None:
    rsa_ca, ec_ca = trustme.CA(key_type=trustme.KeyType.RSA), trustme.CA(key_type=trustme.KeyType.ECDSA)
    files = []
    ca_key = {"rsa": trustme.KeyType.RSA, "ec": trustme.KeyType.ECDSA}  # trustme leaves default to ECDSA
    for name, ca in (("rsa", rsa_ca), ("ec", ec_ca)):
        leaf = ca.issue_cert("localhost", common_name=f"{name}.localhost", key_type=ca_key[name])
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        files.append((cert, key))
    gw = await start_gateway(_config(upstream, []), ssl_cert=[str(files[0][0]), str(files[1][0])],
                             ssl_cert_key=[str(files[0][1]), str(files[1][1])])
    port = port_of(gw, ssl=True)
    # under TLS 1.2 the client's cipher list decides which key type OpenSSL must pick
    for ciphers, ca, expected in (("ECDHE-RSA-AES128-GCM-SHA256", rsa_ca, "rsa.localhost"),
                                  ("ECDHE-ECDSA-AES128-GCM-SHA256", ec_ca, "ec.localhost")):
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
        sock = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(sock, ctx, server_hostname="localhost")
        await stream.do_handshake()
        der = stream.getpeercert(binary_form=True)
        await trio.aclose_forcefully(stream)
        assert der is not None
        cn = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == expected


async def test_tyk_ssl_certificates_combined_pem_matched_by_san(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, tmp_path: Path, server_pair: tuple[Path, Path]
) -> None:
    leaf = ca.issue_cert("tyk.example.test", common_name="tyk.example.test")
    combined = tmp_path / "tyk.pem"
    combined.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems) + leaf.private_key_pem.bytes())
    cert, key = server_pair
    gw = await start_gateway(_config(upstream, []), ssl_cert=str(cert), ssl_cert_key=str(key),
                             ssl_certificates=[str(combined)])
    port = port_of(gw, ssl=True)
    assert await served_cn(port, "tyk.example.test", ca) == "tyk.example.test"
    assert await served_cn(port, "localhost", ca) == "localhost"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
async def test_client_renegotiation_is_refused(
    start_gateway: StartGateway, upstream: Upstream, server_pair: tuple[Path, Path], ca_pem: Path
) -> None:
    cert, key = server_pair
    gw = await start_gateway(_config(upstream, []), ssl_cert=str(cert), ssl_cert_key=str(key))
    port = port_of(gw, ssl=True)
    with trio.fail_after(20):
        result = await trio.run_process(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
             "-CAfile", str(ca_pem), "-tls1_2", "-msg"],
            stdin=b"R\n", capture_stdout=True, capture_stderr=True, check=False,
        )
    out = (result.stdout + result.stderr).decode()
    assert "RENEGOTIATING" in out
    assert "no_renegotiation" in out or "handshake failure" in out.lower(), out[-2000:]


async def test_metrics_count_handshake_failures_by_reason_and_expiry(
    start_gateway: StartGateway, upstream: Upstream, ca: trustme.CA, server_pair: tuple[Path, Path]
) -> None:
    cert, key = server_pair
    gw = await start_gateway(_config(upstream, []), ssl_cert=str(cert), ssl_cert_key=str(key), ssl_max_version="1.2")
    with pytest.raises(trio.BrokenResourceError):
        await served_cn(port_of(gw, ssl=True), "localhost", ca, minimum_version=ssl.TLSVersion.TLSv1_3)
    await served_cn(port_of(gw, ssl=True), "localhost", ca)
    client = await Client.connect(port_of(gw, kind="status"))
    text = (await client.request("GET", "/metrics")).body.decode()
    assert 'trio_gw_tls_handshake_failures_total{listener="proxy",reason="protocol_version"} 1.0' in text, text
    assert re.search(r'trio_gw_tls_handshakes_total\{cipher="[A-Z0-9_-]+",listener="proxy",version="TLSv1.2"\} 1.0',
                     text), text
    assert re.search(r'trio_gw_certificate_expiry_seconds\{certificate="setting:ssl_cert\[0\]",key="setting:ssl_cert\[0\]",'
                     r'role="server",subject="[^"]*"\} [0-9.e+]+', text), text


async def _dhe_handshake(port: int, ca_pem: Path) -> str:
    """``openssl s_client`` offering only a DHE suite on TLS 1.2: its output (cipher, server temp key)."""
    result = await trio.run_process(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-CAfile", str(ca_pem),
         "-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256"],
        stdin=b"", capture_stdout=True, capture_stderr=True, check=False,
    )
    return result.stdout.decode() + result.stderr.decode()


def _rsa_pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An RSA server certificate for localhost (DHE-RSA suites need one): certificate, key, CA files."""
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)
    cert, key, ca_pem = tmp_path / "rsa.pem", tmp_path / "rsa.key", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_pem))
    return cert, key, ca_pem


@pytest.mark.parametrize(("dhparam", "bits"), [(None, 2048), ("file:ffdhe3072", 3072), ("ffdhe4096", 4096)])
async def test_dhe_suites_of_the_preset_are_negotiated(
    start_gateway: StartGateway, upstream: Upstream, tmp_path: Path, dhparam: str | None, bits: int
) -> None:
    """Kong's intermediate preset lists DHE-RSA suites; without DH parameters OpenSSL skips them silently."""
    cert, key, ca_pem = _rsa_pair(tmp_path)
    settings: dict[str, Any] = {"ssl_cert": str(cert), "ssl_cert_key": str(key)}
    if dhparam is not None and dhparam.startswith("file:"):
        params = tmp_path / "dhparam.pem"  # as `openssl dhparam` or genpkey writes it; read with each generation
        params.write_bytes((await trio.run_process(
            ["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", f"group:{dhparam[5:]}"],
            capture_stdout=True)).stdout)
        settings["ssl_dhparam"] = str(params)
    elif dhparam is not None:
        settings["ssl_dhparam"] = dhparam
    gw = await start_gateway(_config(upstream, []), **settings)
    out = await _dhe_handshake(port_of(gw, ssl=True), ca_pem)
    assert "Cipher is DHE-RSA-AES128-GCM-SHA256" in out, out
    assert f"Server Temp Key: DH, {bits} bits" in out, out
    assert "Verify return code: 0 (ok)" in out


async def test_a_reload_reads_the_dhparam_file_again(
    start_gateway: StartGateway, upstream: Upstream, tmp_path: Path
) -> None:
    """As the certificate files are: SIGHUP (here ``reload()``) serves the new parameters; a bad file keeps the old.

    The certificate context is reused across reloads when nothing it depends on changed, so this also checks
    that new DH parameters count as a change (they live in the swapped context, not the listener's).
    """
    cert, key, ca_pem = _rsa_pair(tmp_path)
    params = tmp_path / "dhparam.pem"

    async def write(group: str) -> None:
        params.write_bytes((await trio.run_process(
            ["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", f"group:{group}"],
            capture_stdout=True)).stdout)

    await write("ffdhe3072")
    gw = await start_gateway(_config(upstream, []), ssl_cert=str(cert), ssl_cert_key=str(key), ssl_dhparam=str(params))
    port = port_of(gw, ssl=True)
    assert "Server Temp Key: DH, 3072 bits" in await _dhe_handshake(port, ca_pem)
    await write("ffdhe4096")
    assert await gw.reload()
    out = await _dhe_handshake(port, ca_pem)
    assert "Server Temp Key: DH, 4096 bits" in out, out
    params.write_text("-----BEGIN DH PARAMETERS-----\nMAA=\n-----END DH PARAMETERS-----\n")
    assert not await gw.reload()  # refused (logged under ssl_dhparam): the node keeps serving what it had
    assert "Server Temp Key: DH, 4096 bits" in await _dhe_handshake(port, ca_pem)


async def test_without_a_dhe_suite_a_dhe_only_client_is_refused(
    start_gateway: StartGateway, upstream: Upstream, tmp_path: Path
) -> None:
    """The failing case beside the passing one: a custom list without DHE suites refuses a DHE-only client."""
    cert, key, ca_pem = _rsa_pair(tmp_path)
    gw = await start_gateway(_config(upstream, []), ssl_cert=str(cert), ssl_cert_key=str(key),
                             ssl_cipher_suite="custom", ssl_ciphers="ECDHE-RSA-AES128-GCM-SHA256",
                             ssl_dhparam="ffdhe3072")
    out = await _dhe_handshake(port_of(gw, ssl=True), ca_pem)
    assert "Cipher is (NONE)" in out and "alert handshake failure" in out, out


async def _s_client_groups(port: int, ca_pem: Path, groups: str, *version: str) -> str:
    result = await trio.run_process(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-CAfile", str(ca_pem),
         "-groups", groups, *version],
        stdin=b"", capture_stdout=True, capture_stderr=True, check=False,
    )
    return result.stdout.decode() + result.stderr.decode()


async def test_ssl_ecdh_curve_limits_the_key_exchange_groups(
    start_gateway: StartGateway, upstream: Upstream, server_pair: tuple[Path, Path], ca_pem: Path
) -> None:
    cert, key = server_pair

    async def gateway(**settings: str) -> int:
        gw = await start_gateway(_config(upstream, []), ssl_cert=str(cert), ssl_cert_key=str(key), **settings)
        return port_of(gw, ssl=True)

    default, auto, limited = await gateway(), await gateway(ssl_ecdh_curve="auto"), \
        await gateway(ssl_ecdh_curve="X25519:prime256v1")
    # the default: Mozilla's X25519, P-256, P-384; not X448, nor a TLS 1.3 finite-field group
    assert "Server Temp Key: ECDH, secp384r1" in await _s_client_groups(default, ca_pem, "P-384")
    for refused in ("X448", "ffdhe8192"):
        out = await _s_client_groups(default, ca_pem, refused)
        assert "alert handshake failure" in out and "Cipher is (NONE)" in out, out
    # auto: OpenSSL's own list, X448 and ffdhe2048 included
    assert "Server Temp Key: X448" in await _s_client_groups(auto, ca_pem, "X448")
    assert "Server Temp Key: DH, 2048 bits" in await _s_client_groups(auto, ca_pem, "ffdhe2048")
    # limited: a listed group is used, on TLS 1.3 and on TLS 1.2 ECDHE
    out = await _s_client_groups(limited, ca_pem, "P-256")
    assert "Server Temp Key: ECDH, prime256v1, 256 bits" in out and "Verify return code: 0 (ok)" in out, out
    assert "Server Temp Key: ECDH, prime256v1" in await _s_client_groups(limited, ca_pem, "P-256", "-tls1_2")
    # ... and a client that offers only an unlisted group is refused with an alert, on both versions
    for version in ((), ("-tls1_2",)):
        out = await _s_client_groups(limited, ca_pem, "P-384", *version)
        assert "alert handshake failure" in out and "Cipher is (NONE)" in out, out
