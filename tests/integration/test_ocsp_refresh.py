"""The OCSP refresher against a real responder, and stapling from the cache it fills.

The cache is what a generation's certificate contexts read at each handshake;
the refresher is the node's background task.  Time jumps are given through the
refresher's ``clock``, never slept.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import trio
from cryptography import x509

from trio_gw.net.ocsp_fetch import refresh_ocsp_once, serve_ocsp_refresh
from trio_gw.net.ocsp_stapling import cache_source, install
from trio_gw.plugins.ocsp_cache import OcspCache
from trio_gw.testing.ocsp_responder import OcspResponder
from trio_gw.testing.pki import issue, make_ca
from trio_gw.testing.tls_server import TlsTestServer
from trio_gw.tls.ocsp import OcspCertStatus, is_must_staple
from trio_gw.tls.stapling import StaplingPolicy

CA = make_ca(common_name="refresh root")


def later(seconds: float) -> float:
    return time.time() + seconds


async def test_tracked_certificate_is_refreshed_and_survives_a_dead_responder() -> None:
    with OcspResponder(CA) as responder:
        leaf = issue(CA, "tracked.example", ocsp_urls=[responder.url])
        responder.set(leaf, "good")
        cache = OcspCache()
        key = cache.track(leaf.cert, CA.cert)
        assert key is not None
        assert await refresh_ocsp_once(cache) == 1 and responder.methods == ["GET"]
        good = cache.current(key)
        assert good is not None and good.status is OcspCertStatus.GOOD
        assert await refresh_ocsp_once(cache) == 0 and responder.requests == 1  # not due yet
        responder.down = True
        assert await refresh_ocsp_once(cache, clock=lambda: later(3600)) == 0
        assert cache.failures(key) == 1 and cache.current(key) is good  # the good answer is kept
        responder.down = False
        responder.set(leaf, "revoked", reason=x509.ReasonFlags.key_compromise)
        assert await refresh_ocsp_once(cache, clock=lambda: later(3600 + 60)) == 1
        revoked = cache.current(key)
        assert revoked is not None and revoked.status is OcspCertStatus.REVOKED and cache.failures(key) == 0


async def test_a_response_from_the_wrong_signer_is_never_kept() -> None:
    impostor = make_ca(common_name="refresh root")
    with OcspResponder(impostor) as forged:
        leaf = issue(CA, "forged.example", ocsp_urls=[forged.url])
        cache = OcspCache()
        key = cache.track(leaf.cert, CA.cert)
        assert key is not None
        assert await refresh_ocsp_once(cache) == 0
        assert cache.current(key) is None and cache.failures(key) == 1


async def test_second_responder_is_tried_when_the_first_fails() -> None:
    with OcspResponder(CA) as dead, OcspResponder(CA) as alive:
        dead.down = True
        leaf = issue(CA, "two.example", ocsp_urls=[dead.url, alive.url])
        alive.set(leaf, "good")
        cache = OcspCache()
        key = cache.track(leaf.cert, CA.cert)
        assert key is not None and await refresh_ocsp_once(cache, timeout=5) == 1
        assert dead.requests == 1 and alive.requests == 1


async def test_client_certificate_miss_is_fetched_by_the_background_task() -> None:
    with OcspResponder(CA) as responder:
        client = issue(CA, "client.example", ocsp_urls=[responder.url])
        responder.set(client, "revoked")
        cache = OcspCache()
        assert cache.answer_for(client.cert, CA.cert, time.time()) is None  # the request path never waits
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: serve_ocsp_refresh(cache, interval=0.05, task_status=task_status))
            with trio.fail_after(20):
                while cache.answer_for(client.cert, CA.cert, time.time()) is None:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        answer = cache.answer_for(client.cert, CA.cert, time.time())
        assert answer is not None and answer.status is OcspCertStatus.REVOKED


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI (make system-tools)")
async def test_staple_follows_the_cache_through_a_responder_outage(tmp_path: Path) -> None:
    """good → stapled; responder down → still stapled (held answer), handshakes unaffected; revoked → no staple."""
    (tmp_path / "ca.pem").write_text(CA.cert_pem())
    with OcspResponder(CA) as responder:
        leaf = issue(CA, "live.example", ocsp_urls=[responder.url])
        responder.set(leaf, "good")
        (tmp_path / "live.pem").write_text(leaf.chain_pem())
        (tmp_path / "live.key").write_text(leaf.key_pem())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp_path / "live.pem", tmp_path / "live.key")
        cache = OcspCache()
        key = cache.track(leaf.cert, CA.cert)
        assert key is not None
        assert install(ctx, cache_source(cache, key, StaplingPolicy.LENIENT, must_staple=is_must_staple(leaf.cert)))

        def status() -> str:
            result = subprocess.run(
                ["openssl", "s_client", "-connect", server.address, "-servername", "live.example", "-status",
                 "-CAfile", str(tmp_path / "ca.pem"), "-verify_return_error"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
            assert "Verify return code: 0 (ok)" in result.stdout, result.stdout + result.stderr
            return "good" if "Cert Status: good" in result.stdout else (
                "none" if "OCSP response: no response sent" in result.stdout else "?")

        with TlsTestServer(ctx) as server:
            assert await trio.to_thread.run_sync(status) == "none"  # nothing fetched yet
            await refresh_ocsp_once(cache)
            assert await trio.to_thread.run_sync(status) == "good"
            responder.down = True
            await refresh_ocsp_once(cache, clock=lambda: later(3600))
            assert await trio.to_thread.run_sync(status) == "good"
            responder.down = False
            responder.set(leaf, "revoked")
            await refresh_ocsp_once(cache, clock=lambda: later(7200))
            assert await trio.to_thread.run_sync(status) == "none"


async def test_a_post_only_responder_is_asked_by_post() -> None:
    with OcspResponder(CA) as responder:
        responder.post_only = True
        leaf = issue(CA, "post.example", ocsp_urls=[responder.url])
        responder.set(leaf, "good")
        cache = OcspCache()
        key = cache.track(leaf.cert, CA.cert)
        assert key is not None and await refresh_ocsp_once(cache) == 1
        assert responder.methods == ["POST"] and responder.requests == 1  # the 405 GET is not counted
