"""Event webhooks against real HTTP(S) servers on 127.0.0.1:0: delivery, retries, deadlines, TLS trust,
and a caller that never waits."""

from __future__ import annotations

import json
from pathlib import Path

import trio
import trustme

from trio_gw.model.entities import Certificate, Entities
from trio_gw.model.event_handlers import EventHandlers, WebhookDelivery, WebhookTarget
from trio_gw.model.expiry_monitor import CERTIFICATE_EXPIRING_SOON, ExpiryEvent, check_expiry
from trio_gw.model.inventory import build_inventory
from trio_gw.net.http_fetch import outbound_tls_context
from trio_gw.net.webhooks import DeliveryResult, WebhookSender
from trio_gw.testing.http_server import ScriptedServer
from trio_gw.testing.pki import issue, make_ca

NOT_AFTER = 2_000_000_000
LEAF = issue(make_ca(), "expiring.example", common_name="expiring.example", not_after=NOT_AFTER)
FAST = WebhookDelivery(timeout=5.0, retries=2, backoff_base=0.01)


def _event() -> ExpiryEvent:
    cert = Certificate(id="c1", cert=LEAF.chain_pem(), key=LEAF.key_pem())
    return check_expiry(build_inventory(Entities(certificates={"c1": cert})), now=NOT_AFTER - 5 * 86_400,
                        fired={}).events[0]


def _handlers(*targets: WebhookTarget) -> EventHandlers:
    return EventHandlers({CERTIFICATE_EXPIRING_SOON: targets})


async def test_an_event_is_posted_as_json_with_the_configured_headers() -> None:
    server = ScriptedServer([204])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        target = WebhookTarget(server.url("/certs?team=platform"), "POST", (("X-Team", "platform"),))
        result = await WebhookSender(_handlers(target), FAST).deliver(_event(), target)
        nursery.cancel_scope.cancel()
    assert result == DeliveryResult(CERTIFICATE_EXPIRING_SOON, "c1", target, True, 1, 204)
    (received,) = server.requests
    assert received.method == "POST" and received.target == "/certs?team=platform"
    assert received.headers["content-type"] == "application/json" and received.headers["x-team"] == "platform"
    body = json.loads(received.body)
    assert body["event"] == "CertificateExpiringSoon" and body["cert_id"] == "c1" and body["days_remaining"] == 5


async def test_a_500_is_retried_and_the_retry_succeeds() -> None:
    server = ScriptedServer([500, 200])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        target = WebhookTarget(server.url("/hook"))
        result = await WebhookSender(_handlers(target), FAST).deliver(_event(), target)
        nursery.cancel_scope.cancel()
    assert result.ok and result.attempts == 2 and result.status == 200
    assert len(server.requests) == 2 and server.requests[0].body == server.requests[1].body


async def test_a_refusal_is_final_and_persistent_failures_stop_after_the_retries() -> None:
    refusing, failing = ScriptedServer([400]), ScriptedServer([503])
    async with trio.open_nursery() as nursery:
        for server in (refusing, failing):
            await nursery.start(server.serve)
        sender = WebhookSender(EventHandlers(), FAST)
        refused = await sender.deliver(_event(), WebhookTarget(refusing.url()))
        failed = await sender.deliver(_event(), WebhookTarget(failing.url()))
        nursery.cancel_scope.cancel()
    assert (refused.ok, refused.attempts, refused.status) == (False, 1, 400)
    assert (failed.ok, failed.attempts, failed.status) == (False, 3, 503)  # 1 + event_webhook_retries
    assert len(failing.requests) == 3


async def test_a_server_that_never_answers_meets_the_deadline() -> None:
    server = ScriptedServer([None])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        target = WebhookTarget(server.url())
        delivery = WebhookDelivery(timeout=0.5, retries=1, backoff_base=0.01)
        result = await WebhookSender(_handlers(target), delivery).deliver(_event(), target)
        nursery.cancel_scope.cancel()
    assert not result.ok and result.attempts == 2 and result.error == "timed out after 0.5s"
    assert len(server.requests) == 2  # each attempt got through, and each was abandoned at its deadline


async def test_an_unreachable_webhook_is_retried_with_the_reason() -> None:
    server = ScriptedServer([200])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        port = server.port
        nursery.cancel_scope.cancel()  # nobody listens on that port any more
    target = WebhookTarget(f"http://127.0.0.1:{port}/gone")
    result = await WebhookSender(_handlers(target), FAST).deliver(_event(), target)
    assert not result.ok and result.attempts == 3 and result.error is not None and "Error" in result.error


async def test_https_webhooks_are_verified_against_the_node_trust(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = trustme_server(ca, "localhost")
    ca_file = tmp_path / "webhook-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    trusted = outbound_tls_context([str(ca_file)])  # lua_ssl_trusted_certificate: [webhook-ca.pem]
    server = ScriptedServer([200], tls=server_context)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        target = WebhookTarget(server.url("/tls", host="localhost"))
        ok = await WebhookSender(_handlers(target), FAST, ssl_context=trusted).deliver(_event(), target)
        other = outbound_tls_context([str(_other_ca(tmp_path))])
        untrusted = await WebhookSender(_handlers(target), FAST, ssl_context=other).deliver(_event(), target)
        nursery.cancel_scope.cancel()
    assert ok.ok and ok.attempts == 1
    assert not untrusted.ok and untrusted.attempts == 1  # no retry can fix an untrusted certificate
    assert untrusted.error is not None and "not trusted" in untrusted.error
    assert len(server.requests) == 1


async def test_submit_never_waits_and_a_slow_webhook_does_not_hold_back_another() -> None:
    slow, fast = ScriptedServer([None]), ScriptedServer([200])
    results: list[DeliveryResult] = []
    done = trio.Event()

    def on_result(result: DeliveryResult) -> None:
        results.append(result)
        done.set()

    async with trio.open_nursery() as nursery:
        for server in (slow, fast):
            await nursery.start(server.serve)
        handlers = _handlers(WebhookTarget(slow.url("/slow")), WebhookTarget(fast.url("/fast")))
        sender = WebhookSender(handlers, WebhookDelivery(timeout=60.0, retries=0), on_result=on_result,
                               queue_size=3)
        await nursery.start(sender.run)
        assert sender.submit(_event()) == 2  # synchronous: returns before anything is sent
        await done.wait()  # the fast webhook's outcome arrives while the slow one is still waiting
        assert [r.target.url for r in results] == [fast.url("/fast")] and results[0].ok
        assert len(slow.requests) == 1
        # the queue is bounded: what does not fit is dropped and counted, never waited for
        queued = sum(sender.submit(_event()) for _ in range(3))
        assert queued + sender.dropped == 6 and sender.dropped > 0
        nursery.cancel_scope.cancel()


def trustme_server(ca: trustme.CA, name: str):  # type: ignore[no-untyped-def]
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


def _other_ca(tmp_path: Path) -> Path:
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path
