"""The expiry monitor of a node: settings, the inventory read from files, warnings, events in the log and
the metrics, on schedule (trio's MockClock) and to a real webhook."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from trio_gw.errors import ConfigError
from trio_gw.model.entities import Certificate, Entities
from trio_gw.model.inventory import Inventory, build_inventory
from trio_gw.runtime.certificate_files import read_configured_certificates, read_node_certificates
from trio_gw.runtime.expiry_monitor import ExpiryMonitor, monitor_config
from trio_gw.runtime.kong_metrics import KongMetrics
from trio_gw.settings import Settings, parse_settings
from trio_gw.testing.http_server import ScriptedServer
from trio_gw.testing.pki import issue, make_ca

DAY = 86_400
NOW = 1_900_000_000
ROOT = make_ca(common_name="monitor root", not_before=NOW - 900 * DAY)
SOON = issue(ROOT, "soon.example", not_before=NOW - 80 * DAY, not_after=NOW + 5 * DAY)


def _settings(**values: object) -> Settings:
    return parse_settings([("test.yaml", values)])


def _inventory() -> Inventory:
    return build_inventory(Entities(certificates={"c1": Certificate(id="c1", cert=SOON.chain_pem(),
                                                                     key=SOON.key_pem())}))


def test_monitor_settings_use_tyk_names_and_defaults() -> None:
    default = monitor_config(_settings())
    assert (default.policy.warning_threshold_days, default.policy.check_cooldown_seconds,
            default.policy.event_cooldown_seconds) == (30, 3600, 86_400)
    assert default.delivery.retries == 3 and default.delivery.timeout == 10.0
    tyk = monitor_config(_settings(certificate_expiry_monitor={"warning_threshold_days": 15},
                                   event_handlers={"events": {"CertificateExpired": [
                                       {"handler_name": "eh_web_hook_handler",
                                        "handler_meta": {"target_path": "https://hooks.example/x"}}]}},
                                   event_webhook_retries=1))
    assert tyk.warn_days == 15 and tyk.delivery.retries == 1
    assert tyk.handlers.webhooks_for("CertificateExpired")[0].url == "https://hooks.example/x"
    assert monitor_config(_settings(certificate_expiry_warning_days=10)).warn_days == 10  # the older name


def test_bad_monitor_settings_are_all_reported_by_name() -> None:
    with pytest.raises(ConfigError) as caught:
        monitor_config(_settings(certificate_expiry_warning_days=10,
                                 certificate_expiry_monitor={"warning_threshold_days": 15},
                                 event_handlers={"events": {"KeyExpired": []}}, event_webhook_retries=-1))
    paths = [p.path for p in caught.value.problems]
    assert paths == ["certificate_expiry_warning_days", "event_handlers.events.KeyExpired", "event_webhook_retries"]


def test_the_inventory_reads_the_files_settings_name(tmp_path: Path) -> None:
    (tmp_path / "server.pem").write_text(SOON.chain_pem())
    (tmp_path / "server.key").write_text(SOON.key_pem())
    settings = _settings(ssl_cert=[str(tmp_path / "server.pem")], ssl_cert_key=[str(tmp_path / "server.key")],
                         admin_ssl_cert=[str(tmp_path / "server.pem")], admin_ssl_cert_key=[str(tmp_path / "server.key")])
    items = read_configured_certificates(settings, Entities())
    per_build = build_inventory(Entities(), items)
    assert per_build.facts["setting:ssl_cert[0]"].info.not_after == NOW + 5 * DAY
    assert "setting:admin_ssl_cert[0]" not in per_build.facts  # read once per process, with the listener
    node_items = read_node_certificates(settings)
    assert list(build_inventory(Entities(), node_items).facts) == ["setting:admin_ssl_cert[0]"]
    assert all("PRIVATE KEY" not in item.pem for item in (*items, *node_items))  # certificates only
    dev = _settings(prefix=str(tmp_path), admin_listen="127.0.0.1:0 ssl", proxy_listen="127.0.0.1:0 ssl")
    generated = read_node_certificates(dev)
    assert [c.key for c in generated] == ["setting:admin_ssl_cert[0]"]  # the development certificate is watched
    assert "pki" in generated[0].source
    served = read_configured_certificates(dev, Entities())
    assert [c.key for c in served] == ["setting:ssl_cert[0]"] and served[0].pem == generated[0].pem
    assert read_node_certificates(_settings(prefix=str(tmp_path), admin_listen="127.0.0.1:0")) == []  # plain: none
    with pytest.raises(ConfigError, match=r"admin_mtls_ca_certificates\[0\]: cannot read .*missing.pem"):
        read_node_certificates(_settings(admin_mtls_ca_certificates=[str(tmp_path / "missing.pem")]))
    with pytest.raises(ConfigError, match=r"client_ssl_cert: cannot read .*missing.pem"):
        read_configured_certificates(_settings(client_ssl_cert=str(tmp_path / "missing.pem"),
                                               client_ssl_cert_key=str(tmp_path / "server.key")), Entities())


def test_a_check_logs_counts_and_does_not_repeat(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    metrics = KongMetrics(registry, node_id="n")
    monitor = ExpiryMonitor(_inventory, monitor_config(_settings(event_handlers={"events": {
        "CertificateExpiringSoon": [{"handler_name": "eh_log_handler", "handler_meta": {"prefix": "CERTS"}}]}})),
        metrics=metrics, clock=lambda: NOW)
    with caplog.at_level(logging.WARNING, logger="trio_gw.certificates"):
        assert len(monitor.check().events) == 1
        assert monitor.check().events == ()  # within the day: nothing again
        assert monitor.warn() == 1  # the warning line is not subject to the cooldown
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("CERTS CertificateExpiringSoon: Certificate ")
    assert "server certificate c1" in messages[1] and "expires in 5 days" in messages[1]
    assert registry.get_sample_value("trio_gw_certificate_events_total",
                                     {"event": "CertificateExpiringSoon", "role": "server"}) == 1
    assert monitor.sender is None  # no webhook configured: nothing to run


async def test_on_schedule_one_event_a_day_and_a_daily_warning(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # no IO in this test: trio's autojump clock lets three simulated days pass at once
    monitor = ExpiryMonitor(_inventory, monitor_config(_settings()), clock=lambda: NOW + trio.current_time())
    with caplog.at_level(logging.WARNING, logger="trio_gw.certificates"):
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            await trio.sleep(3 * DAY + 60)
            nursery.cancel_scope.cancel()
    events = [r.getMessage() for r in caplog.records if r.getMessage().startswith("CertificateExpiringSoon")]
    warnings = [r.getMessage() for r in caplog.records if "expires in" in r.getMessage()]
    assert len(events) == 4  # at 0, 1, 2 and 3 days: hourly checks, one event a day
    assert len(warnings) == 3  # daily, from the first day on (the load-time warning is the caller's warn())


async def test_an_event_reaches_a_real_webhook_and_is_counted() -> None:
    server = ScriptedServer([200])
    registry = CollectorRegistry()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        config = monitor_config(_settings(event_handlers={"events": {"CertificateExpiringSoon": [
            {"handler_name": "eh_web_hook_handler", "handler_meta": {"target_path": server.url("/certs")}}]}}))
        monitor = ExpiryMonitor(_inventory, config, metrics=KongMetrics(registry, node_id="n"), clock=lambda: NOW)
        received = server.received
        await nursery.start(monitor.run)
        await received.wait()
        body = json.loads(server.requests[0].body)
        assert body["event"] == "CertificateExpiringSoon" and body["cert_id"] == "c1" and body["days_remaining"] == 5
        for _ in range(400):  # the outcome is counted once the answer is read (bounded wait, no timing assertion)
            if registry.get_sample_value("trio_gw_event_webhook_deliveries_total",
                                         {"event": "CertificateExpiringSoon", "outcome": "delivered"}):
                break
            await trio.sleep(0.01)
        assert registry.get_sample_value("trio_gw_event_webhook_deliveries_total",
                                         {"event": "CertificateExpiringSoon", "outcome": "delivered"}) == 1
        nursery.cancel_scope.cancel()


async def test_a_recheck_fires_a_new_certificate_s_event_at_once_and_nothing_twice(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # no IO: the autojump clock would let the hourly check pass at once if the monitor waited for it
    live = [Inventory()]
    monitor = ExpiryMonitor(lambda: live[0], monitor_config(_settings()), clock=lambda: NOW)
    with caplog.at_level(logging.WARNING, logger="trio_gw.certificates"):
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            await trio.sleep(60)
            assert not caplog.records  # nothing to say about an empty inventory
            live[0] = _inventory()  # a write added a certificate 5 days from expiry
            started = trio.current_time()
            monitor.recheck()
            while not caplog.records:
                await trio.sleep(1)
            assert trio.current_time() - started < 3600  # the recheck, not the hourly check, fired it
            monitor.recheck()  # another write: the same certificate's event is held back for a day
            await trio.sleep(2 * 3600)
            nursery.cancel_scope.cancel()
    events = [r.getMessage() for r in caplog.records if r.getMessage().startswith("CertificateExpiringSoon")]
    assert len(events) == 1, events
