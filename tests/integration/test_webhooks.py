"""Event webhooks against real HTTP(S) servers on 127.0.0.1:0: delivery, retries, deadlines, TLS trust,
and a caller that never waits."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
import trio
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from trio_gw.errors import ConfigError

from trio_gw.model.entities import Certificate, Entities
from trio_gw.model.event_handlers import EventHandlers, WebhookDelivery, WebhookTarget
from trio_gw.model.expiry_monitor import CERTIFICATE_EXPIRING_SOON, ExpiryEvent, check_expiry
from trio_gw.model.inventory import build_inventory
from trio_gw.net.http_fetch import external_tls_context, fetch, outbound_tls_context
from trio_gw.net.webhooks import DeliveryResult, WebhookSender
from trio_gw.testing.forward_proxy import start_proxy
from trio_gw.testing.http_server import ScriptedServer
from trio_gw.testing.pki import issue, make_ca
from trio_gw.tls.external_services import MtlsSettings, ProxySettings, parse_external_services, parse_no_proxy
from trio_gw.tls.versions import VersionRange

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


def trustme_server(ca: trustme.CA, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


def _other_ca(tmp_path: Path) -> Path:
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


# --- Tyk external_services: the webhooks' own TLS profile and forward proxy ---------------------------


def _mtls_server(server_ca: trustme.CA, client_ca: trustme.CA, *, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A webhook target on localhost that requires a client certificate issued by ``client_ca``."""
    context = trustme_server(server_ca, "localhost")
    context.verify_mode = ssl.CERT_REQUIRED
    client_ca.configure_trust(context)
    if maximum is not None:
        context.maximum_version = maximum
    return context


def _client_files(client_ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path, bytes]:
    """The gateway's client certificate and key as files, and the certificate's DER."""
    issued = client_ca.issue_cert("gateway.webhooks.example")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    issued.cert_chain_pems[0].write_to_path(str(cert_file))
    issued.private_key_pem.write_to_path(str(key_file))
    der = x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes()).public_bytes(Encoding.DER)
    return cert_file, key_file, der


def _ca_file(ca: trustme.CA, path: Path) -> Path:
    ca.cert_pem.write_to_path(str(path))
    return path


async def test_external_services_mtls_presents_the_client_certificate_and_trusts_its_ca_file(tmp_path: Path) -> None:
    server_ca, client_ca = trustme.CA(), trustme.CA()
    cert_file, key_file, der = _client_files(client_ca, tmp_path)
    mtls = MtlsSettings(enabled=True, cert_file=str(cert_file), key_file=str(key_file),
                        ca_file=str(_ca_file(server_ca, tmp_path / "webhook-ca.pem")))
    with_cert = external_tls_context(mtls, ["system"], setting="external_services.webhooks.mtls")
    # the failing case: the node's own outbound context trusts the server but has no client certificate
    without = outbound_tls_context([str(_ca_file(server_ca, tmp_path / "trusted.pem"))])
    server = ScriptedServer([200], tls=_mtls_server(server_ca, client_ca))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        target = WebhookTarget(server.url("/mtls", host="localhost"))
        ok = await WebhookSender(_handlers(target), FAST, ssl_context=with_cert).deliver(_event(), target)
        refused = await WebhookSender(_handlers(target), FAST, ssl_context=without).deliver(_event(), target)
        nursery.cancel_scope.cancel()
    assert ok.ok and ok.attempts == 1
    (received,) = server.requests
    assert received.peer_certificate == der
    assert not refused.ok and refused.attempts == 1  # final: a retry cannot make the target accept us
    assert refused.error is not None and "refused the gateway's client certificate" in refused.error


async def test_external_services_ca_file_replaces_the_node_trust_and_skip_verify_trusts_anything(
    tmp_path: Path,
) -> None:
    server_ca, client_ca = trustme.CA(), trustme.CA()
    cert_file, key_file, _ = _client_files(client_ca, tmp_path)
    other_ca = _ca_file(trustme.CA(), tmp_path / "other-ca.pem")
    wrong_ca = external_tls_context(MtlsSettings(enabled=True, cert_file=str(cert_file), key_file=str(key_file),
                                                 ca_file=str(other_ca)),
                                    [str(_ca_file(server_ca, tmp_path / "node-trust.pem"))],
                                    setting="external_services.webhooks.mtls")
    skip = external_tls_context(MtlsSettings(enabled=True, cert_file=str(cert_file), key_file=str(key_file),
                                             insecure_skip_verify=True), [],
                                setting="external_services.webhooks.mtls")
    server = ScriptedServer([200], tls=_mtls_server(server_ca, client_ca))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        target = WebhookTarget(server.url("/ca", host="localhost"))
        untrusted = await WebhookSender(_handlers(target), FAST, ssl_context=wrong_ca,
                                        trust_setting="external_services.webhooks.mtls.ca_file").deliver(_event(), target)
        skipped = await WebhookSender(_handlers(target), FAST, ssl_context=skip).deliver(_event(), target)
        nursery.cancel_scope.cancel()
    # ca_file, not lua_ssl_trusted_certificate (which trusts the server here), decides; the error says so
    assert not untrusted.ok and untrusted.attempts == 1
    assert untrusted.error is not None and "see external_services.webhooks.mtls.ca_file" in untrusted.error
    assert skipped.ok and len(server.requests) == 1


async def test_external_services_tls_versions_apply_to_webhooks(tmp_path: Path) -> None:
    server_ca, client_ca = trustme.CA(), trustme.CA()
    cert_file, key_file, _ = _client_files(client_ca, tmp_path)
    ca_file = str(_ca_file(server_ca, tmp_path / "ca.pem"))

    def context(minimum: ssl.TLSVersion) -> ssl.SSLContext:
        settings = MtlsSettings(enabled=True, cert_file=str(cert_file), key_file=str(key_file), ca_file=ca_file,
                                versions=VersionRange(minimum, ssl.TLSVersion.TLSv1_3))
        return external_tls_context(settings, [], setting="external_services.webhooks.mtls")

    server = ScriptedServer([200], tls=_mtls_server(server_ca, client_ca, maximum=ssl.TLSVersion.TLSv1_2))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        target = WebhookTarget(server.url("/v", host="localhost"))
        tls12 = await WebhookSender(_handlers(target), FAST, ssl_context=context(ssl.TLSVersion.TLSv1_2)).deliver(
            _event(), target)
        tls13_only = await WebhookSender(_handlers(target), FAST, ssl_context=context(ssl.TLSVersion.TLSv1_3)).deliver(
            _event(), target)
        nursery.cancel_scope.cancel()
    assert tls12.ok
    assert not tls13_only.ok and tls13_only.attempts == 1  # final: the versions will not change by themselves
    assert tls13_only.error is not None and "no TLS version in common with localhost" in tls13_only.error
    assert len(server.requests) == 1


def test_external_services_files_that_cannot_be_used_name_their_key(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert_file, _, _ = _client_files(ca, tmp_path)
    other_key = tmp_path / "other.key"
    ca.issue_cert("someone-else.example").private_key_pem.write_to_path(str(other_key))
    secret = other_key.read_text()
    setting = "external_services.webhooks.mtls"
    with pytest.raises(ConfigError) as missing:
        external_tls_context(MtlsSettings(enabled=True, cert_file=str(tmp_path / "nope.pem"), key_file=str(other_key)),
                             [], setting=setting)
    assert [p.path for p in missing.value.problems] == [f"{setting}.cert_file"]
    with pytest.raises(ConfigError) as mismatch:
        external_tls_context(MtlsSettings(enabled=True, cert_file=str(cert_file), key_file=str(other_key)),
                             [], setting=setting)
    assert [p.path for p in mismatch.value.problems] == [f"{setting}.key_file"]
    assert "is not the private key of" in str(mismatch.value)
    assert "PRIVATE KEY" not in str(mismatch.value) and secret.splitlines()[1] not in str(mismatch.value)
    with pytest.raises(ConfigError) as bad_ca:
        external_tls_context(MtlsSettings(enabled=True, ca_file=str(other_key)), [], setting=setting)
    assert [p.path for p in bad_ca.value.problems] == [f"{setting}.ca_file[0]"]


async def test_webhooks_go_through_the_external_services_proxy_unless_no_proxy_says_otherwise(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    trusted = outbound_tls_context([str(_ca_file(ca, tmp_path / "ca.pem"))])
    https_server, http_server = ScriptedServer([200], tls=trustme_server(ca, "localhost")), ScriptedServer([200])
    async with trio.open_nursery() as nursery:
        for server in (https_server, http_server):
            await nursery.start(server.serve)
        proxy, port = await start_proxy(nursery)
        proxies = parse_external_services(
            {"proxy": {"http_proxy": f"http://user:s3cret@127.0.0.1:{port}",
                       "https_proxy": f"http://user:s3cret@127.0.0.1:{port}"}}, environ={}).webhook_proxies
        secure, plain = WebhookTarget(https_server.url("/s", host="localhost")), WebhookTarget(http_server.url("/p"))
        sender = WebhookSender(_handlers(secure, plain), FAST, ssl_context=trusted, proxies=proxies)
        through_tunnel = await sender.deliver(_event(), secure)
        absolute_form = await sender.deliver(_event(), plain)
        direct = ProxySettings(proxies.http, proxies.https, parse_no_proxy("localhost,127.0.0.0/8", path="no_proxy"))
        bypassed = await WebhookSender(_handlers(secure), FAST, ssl_context=trusted, proxies=direct).deliver(
            _event(), secure)
        nursery.cancel_scope.cancel()
    assert through_tunnel.ok and absolute_form.ok and bypassed.ok
    auth = proxy.expected_auth
    assert proxy.heads == [  # the third delivery went direct
        (f"CONNECT localhost:{https_server.port} HTTP/1.1".encode(), auth),
        (f"POST http://127.0.0.1:{http_server.port}/p HTTP/1.1".encode(), auth),
    ]
    assert len(https_server.requests) == 2 and len(http_server.requests) == 1


async def test_a_proxy_that_refuses_the_tunnel_is_a_retried_failure_with_the_reason(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ScriptedServer([200], tls=trustme_server(ca, "localhost"))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        proxy, port = await start_proxy(nursery)
        wrong = parse_external_services({"proxy": {"https_proxy": f"http://user:wrong@127.0.0.1:{port}"}},
                                        environ={}).webhook_proxies
        target = WebhookTarget(server.url("/s", host="localhost"))
        result = await WebhookSender(_handlers(target), FAST, ssl_context=outbound_tls_context(
            [str(_ca_file(ca, tmp_path / "ca.pem"))]), proxies=wrong).deliver(_event(), target)
        nursery.cancel_scope.cancel()
    assert not result.ok and result.attempts == 3 and result.error is not None
    assert "through the proxy http://user@127.0.0.1" in result.error and "407" in result.error
    assert "wrong" not in result.error and server.requests == []


async def test_crl_and_ocsp_fetches_take_the_global_proxy(tmp_path: Path) -> None:
    """``fetch`` (CRL distribution points, OCSP responders) goes through ``external_services.proxy`` too."""
    server = ScriptedServer([200])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        proxy, port = await start_proxy(nursery)
        proxies = parse_external_services({"proxy": {"http_proxy": f"http://user:s3cret@127.0.0.1:{port}"}},
                                          environ={}).proxy
        crl = await fetch(server.url("/ca.crl"), timeout=5.0, proxies=proxies)
        ocsp = await fetch(server.url("/ocsp"), timeout=5.0, proxies=proxies, post=("application/ocsp-request", b"x"))
        direct = await fetch(server.url("/direct.crl"), timeout=5.0)  # the failing case: no proxy configured
        nursery.cancel_scope.cancel()
    assert crl == ocsp == direct == b'{"ok":true}'
    assert proxy.heads == [(f"GET http://127.0.0.1:{server.port}/ca.crl HTTP/1.1".encode(), proxy.expected_auth),
                           (f"POST http://127.0.0.1:{server.port}/ocsp HTTP/1.1".encode(), proxy.expected_auth)]
    # this test proxy passes the absolute form on as it came (origin servers must accept it, RFC 9112 3.2.2)
    assert [r.target.removeprefix(f"http://127.0.0.1:{server.port}") for r in server.requests] == [
        "/ca.crl", "/ocsp", "/direct.crl"]
