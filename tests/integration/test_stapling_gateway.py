"""OCSP stapling through a whole gateway, checked with ``openssl s_client -status``.

A real responder (:class:`~trio_gw.testing.ocsp_responder.OcspResponder`,
HTTP on 127.0.0.1:0) answers about certificates whose AIA names it; the
gateway's refresher fetches in the background (never in a handshake), the
generation's certificate contexts staple what the policy decides:

* good → stapled; revoked → not stapled (``lenient``) or refused (``strict``);
* the responder down → handshakes unaffected, nothing stapled;
* ``must_staple`` refuses a must-staple certificate without a good answer;
* ``ssl_stapling_file`` staples a response read from a file, no responder asked;
* a certificate added by a later configuration is stapled too (the cache
  follows every generation).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml

from trio_gw.net.ocsp_stapling import stapling_available
from trio_gw.runtime.gateway import Gateway
from trio_gw.testing.ocsp_responder import OcspResponder, ocsp_response_der
from trio_gw.testing.pki import Issued, issue, make_ca
from trio_gw.tls.ocsp import ocsp_key

from .conftest import StartGateway, port_of

pytestmark = [
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI (make system-tools)"),
    pytest.mark.skipif(not stapling_available(), reason="this Python's ssl cannot be extended for stapling"),
]

#: Bounds every wait for the background refresher (it fetches within a second of a generation).
WAIT = 15.0


def declarative(*leaves: tuple[str, Issued]) -> dict[str, Any]:
    """The leaves with their SNIs; their issuer (a root, not in the served chain) as a CA certificate."""
    roots = {leaf.parents[0].cert_pem() for _, leaf in leaves}
    return {"_format_version": "3.0",
            "ca_certificates": [{"cert": pem} for pem in sorted(roots)],
            "certificates": [{"cert": leaf.chain_pem(), "key": leaf.key_pem(), "snis": [{"name": name}]}
                             for name, leaf in leaves]}


async def s_client(port: int, name: str, ca: Issued, tmp: Path) -> tuple[int, str]:
    """``openssl s_client -status`` against the gateway: (exit code, output)."""
    ca_file = tmp / f"ca-{ca.cert.serial_number}.pem"
    ca_file.write_text(ca.cert_pem())
    done = await trio.run_process(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name, "-status",
         "-CAfile", str(ca_file), "-verify_return_error"],
        stdin=b"", capture_stdout=True, capture_stderr=True, check=False)
    return done.returncode, done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


async def staple_held(gw: Gateway, leaf: Issued, ca: Issued) -> None:
    """Wait until the refresher holds a verified answer about ``leaf`` (bounded)."""
    staples = gw.lifecycle.staples
    assert staples is not None
    with trio.fail_after(WAIT):
        while staples.current(ocsp_key(leaf.cert, ca.cert)) is None:
            await trio.sleep(0.05)


@pytest.fixture
def ca() -> Issued:
    return make_ca(common_name="stapling root")


async def test_good_is_stapled_revoked_is_not(start_gateway: StartGateway, ca: Issued, tmp_path: Path) -> None:
    with OcspResponder(ca) as responder:
        good = issue(ca, "good.test", ocsp_urls=[responder.url])
        revoked = issue(ca, "revoked.test", ocsp_urls=[responder.url])
        responder.set(good, "good")
        responder.set(revoked, "revoked")
        gw = await start_gateway(declarative(("good.test", good), ("revoked.test", revoked)), ssl_stapling="on")
        port = port_of(gw, ssl=True)
        await staple_held(gw, good, ca)
        await staple_held(gw, revoked, ca)
        code, out = await s_client(port, "good.test", ca, tmp_path)
        assert code == 0 and "OCSP Response Status: successful" in out and "Cert Status: good" in out, out
        code, out = await s_client(port, "revoked.test", ca, tmp_path)  # lenient: served, nothing stapled
        assert code == 0 and "OCSP response: no response sent" in out and "Verify return code: 0 (ok)" in out, out
        assert responder.requests >= 2
        metrics = gw.metrics.exposition().decode()
        assert 'trio_gw_ocsp_staple{action="staple",certificate=' in metrics
        assert 'status="revoked"' in metrics


async def test_strict_refuses_a_revoked_certificate(start_gateway: StartGateway, ca: Issued, tmp_path: Path) -> None:
    with OcspResponder(ca) as responder:
        good = issue(ca, "good.test", ocsp_urls=[responder.url])
        revoked = issue(ca, "revoked.test", ocsp_urls=[responder.url])
        responder.set(good, "good")
        responder.set(revoked, "revoked")
        gw = await start_gateway(declarative(("good.test", good), ("revoked.test", revoked)), ssl_stapling="on",
                                 ocsp_staple_policy="strict")
        port = port_of(gw, ssl=True)
        await staple_held(gw, good, ca)
        await staple_held(gw, revoked, ca)
        code, out = await s_client(port, "good.test", ca, tmp_path)
        assert code == 0 and "Cert Status: good" in out, out
        code, out = await s_client(port, "revoked.test", ca, tmp_path)
        assert code != 0 and "handshake failure" in out, out
        metrics = gw.metrics.exposition().decode()
        assert 'reason="ocsp_revoked"' in metrics  # the handshake rejection's reason code


async def test_responder_down_leaves_handshakes_alone(
    start_gateway: StartGateway, ca: Issued, tmp_path: Path
) -> None:
    with OcspResponder(ca) as responder:
        responder.down = True
        leaf = issue(ca, "down.test", ocsp_urls=[responder.url])
        gw = await start_gateway(declarative(("down.test", leaf)), ssl_stapling="on", ocsp_staple_policy="strict")
        staples = gw.lifecycle.staples
        assert staples is not None
        key = ocsp_key(leaf.cert, ca.cert)
        with trio.fail_after(WAIT):
            while staples.failures(key) == 0:  # the refresher tried and failed, off the handshake path
                await trio.sleep(0.05)
        started = trio.current_time()
        code, out = await s_client(port_of(gw, ssl=True), "down.test", ca, tmp_path)
        assert code == 0 and "OCSP response: no response sent" in out, out
        assert trio.current_time() - started < WAIT  # bounded: nothing waited for the responder


async def test_must_staple(start_gateway: StartGateway, ca: Issued, tmp_path: Path) -> None:
    with OcspResponder(ca) as responder:
        responder.down = True
        strict = issue(ca, "must.test", ocsp_urls=[responder.url], must_staple=True)
        plain = issue(ca, "plain.test", ocsp_urls=[responder.url])
        gw = await start_gateway(declarative(("must.test", strict), ("plain.test", plain)), ssl_stapling="on",
                                 ocsp_staple_policy="must_staple")
        port = port_of(gw, ssl=True)
        code, out = await s_client(port, "must.test", ca, tmp_path)
        assert code != 0 and "handshake failure" in out, out  # must-staple, no answer: not served
        code, out = await s_client(port, "plain.test", ca, tmp_path)
        assert code == 0, out  # without the extension it is served, unstapled
        responder.down = False
        responder.set(strict, "good")
        staples = gw.lifecycle.staples
        assert staples is not None
        staples.failed(ocsp_key(strict.cert, ca.cert), 0.0)  # due again now instead of after the backoff
        await staple_held(gw, strict, ca)
        code, out = await s_client(port, "must.test", ca, tmp_path)
        assert code == 0 and "Cert Status: good" in out, out


async def test_stapling_file(start_gateway: StartGateway, ca: Issued, tmp_path: Path) -> None:
    leaf = issue(ca, "file.test")  # no AIA: only the file can say anything
    response = tmp_path / "file.test.ocsp"
    response.write_bytes(ocsp_response_der(ca, leaf.cert.serial_number, "good"))
    gw = await start_gateway(declarative(("file.test", leaf)), ssl_stapling="on",
                             ssl_stapling_file=str(response))
    assert not any("ssl_stapling_file" in w for w in gw.generation.snapshot.stapling.warnings)
    code, out = await s_client(port_of(gw, ssl=True), "file.test", ca, tmp_path)
    assert code == 0 and "Cert Status: good" in out, out
    other = make_ca(common_name="other root")
    response.write_bytes(ocsp_response_der(other, leaf.cert.serial_number, "good"))
    assert await gw.reload()
    assert any("ssl_stapling_file" in w for w in gw.generation.snapshot.warnings)
    code, out = await s_client(port_of(gw, ssl=True), "file.test", ca, tmp_path)
    assert code == 0 and "OCSP response: no response sent" in out, out


async def test_a_certificate_added_later_is_stapled(start_gateway: StartGateway, ca: Issued, tmp_path: Path) -> None:
    """The cache follows each generation: added certificates are fetched, removed ones forgotten."""
    with OcspResponder(ca) as responder:
        first = issue(ca, "first.test", ocsp_urls=[responder.url])
        second = issue(ca, "second.test", ocsp_urls=[responder.url])
        responder.set(first, "good")
        responder.set(second, "good")
        gw = await start_gateway(declarative(("first.test", first)), ssl_stapling="on")
        await staple_held(gw, first, ca)
        path = Path(gw.settings.declarative_config or "")
        path.write_text(yaml.safe_dump(declarative(("second.test", second))))
        assert await gw.reload()
        await staple_held(gw, second, ca)
        staples = gw.lifecycle.staples
        assert staples is not None
        assert staples.tracked() == {ocsp_key(second.cert, ca.cert)}
        code, out = await s_client(port_of(gw, ssl=True), "second.test", ca, tmp_path)
        assert code == 0 and "Cert Status: good" in out, out
