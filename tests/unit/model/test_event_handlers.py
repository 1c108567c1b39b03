"""Tyk's gateway event_handlers for the certificate events: webhooks, log prefixes, retry policy."""

from __future__ import annotations

import json

import pytest

from trio_gw.errors import ConfigError
from trio_gw.model.entities import Certificate, Entities
from trio_gw.model.event_handlers import (
    EventHandlers,
    WebhookTarget,
    is_retryable_status,
    parse_event_handlers,
    retry_delays,
    webhook_body,
)
from trio_gw.model.expiry_monitor import ExpiryEvent, check_expiry
from trio_gw.model.inventory import build_inventory
from trio_gw.testing.pki import issue, make_ca

NOT_AFTER = 2_000_000_000
LEAF = issue(make_ca(), "hooks.example", common_name="hooks.example", not_after=NOT_AFTER)


def _event() -> ExpiryEvent:
    cert = Certificate(id="c1", cert=LEAF.chain_pem(), key=LEAF.key_pem())
    inventory = build_inventory(Entities(certificates={"c1": cert}))
    return check_expiry(inventory, now=NOT_AFTER - 5 * 86_400, fired={}).events[0]


TYK = {
    "events": {
        "CertificateExpiringSoon": [
            {"handler_name": "eh_web_hook_handler",
             "handler_meta": {"method": "POST", "target_path": "https://hooks.example/certs",
                              "header_map": {"X-Team": "platform"}, "event_timeout": 60}},
            {"handler_name": "eh_log_handler", "handler_meta": {"prefix": "CERTS"}},
        ],
        "CertificateExpired": [
            {"handler_name": "eh_web_hook_handler", "handler_meta": {"target_path": "http://127.0.0.1:9/x"}},
        ],
    }
}


def test_tyk_classic_event_handlers_are_read() -> None:
    handlers = parse_event_handlers(TYK, event_cooldown_seconds=86_400)
    assert handlers.webhooks_for("CertificateExpiringSoon") == (
        WebhookTarget("https://hooks.example/certs", "POST", (("X-Team", "platform"),)),)
    assert handlers.webhooks_for("CertificateExpired")[0].method == "POST"  # Tyk's default method
    assert handlers.webhooks_for("CertificateExpiringSoon")[0].where == (
        "event_handlers.events.CertificateExpiringSoon[0]")
    event = _event()
    assert handlers.log_line(event) == "CERTS " + event.log_line
    assert parse_event_handlers(json.dumps(TYK), event_cooldown_seconds=86_400) == handlers  # from the environment
    assert parse_event_handlers(None, event_cooldown_seconds=86_400) == EventHandlers()
    assert EventHandlers().log_line(event) == event.log_line


@pytest.mark.parametrize(("meta", "message"), [
    ({"target_path": "ftp://x/y"}, "target_path: expected an absolute http(s) URL"),
    ({"target_path": "https://h/x", "method": "GET"}, "method: expected one of POST, PUT, PATCH"),
    ({"target_path": "https://h/x", "template_path": "templates/default_webhook.json"},
     "template_path: body templates are not supported"),
    ({"target_path": "https://h/x", "event_timeout": 90_000}, "event_timeout: 90000s is longer than"),
    ({"target_path": "https://h/x", "header_map": {"Content-Length": "1"}}, "not a header name the webhook may set"),
    ({"target_path": "https://h/x", "header_map": {"X-A": "line\nbreak"}}, "expected a printable ASCII value"),
    ({"target_path": "https://h/x", "retries": 3}, "retries: unknown key"),
])
def test_a_bad_webhook_names_the_key(meta: dict[str, object], message: str) -> None:
    raw = {"events": {"CertificateExpired": [{"handler_name": "eh_web_hook_handler", "handler_meta": meta}]}}
    with pytest.raises(ConfigError) as caught:
        parse_event_handlers(raw, event_cooldown_seconds=86_400)
    assert message in str(caught.value)
    assert "event_handlers.events.CertificateExpired[0].handler_meta" in str(caught.value)


def test_unknown_events_and_handlers_are_refused() -> None:
    with pytest.raises(ConfigError, match="AuthFailure: trio-gw fires no such event"):
        parse_event_handlers({"events": {"AuthFailure": []}}, event_cooldown_seconds=86_400)
    with pytest.raises(ConfigError, match="handler_name: expected 'eh_web_hook_handler' or 'eh_log_handler'"):
        parse_event_handlers({"events": {"CertificateExpired": [{"handler_name": "eh_dashboard_handler"}]}},
                             event_cooldown_seconds=86_400)
    with pytest.raises(ConfigError, match="unknown key 'webhooks'"):
        parse_event_handlers({"webhooks": []}, event_cooldown_seconds=86_400)


def test_the_body_is_the_metadata_as_json() -> None:
    body = json.loads(webhook_body(_event()))
    assert body["event"] == "CertificateExpiringSoon" and body["cert_id"] == "c1"
    assert body["days_remaining"] == 5 and body["cert_name"] == "hooks.example"


def test_retries_back_off_and_only_temporary_failures_are_retried() -> None:
    assert retry_delays(3) == (1.0, 2.0, 4.0)
    assert retry_delays(8, base=0.5, cap=10.0)[-2:] == (10.0, 10.0)
    assert retry_delays(0) == () and retry_delays(-1) == ()
    assert [s for s in (200, 204, 301, 400, 404, 408, 429, 500, 503, 599) if is_retryable_status(s)] == [
        408, 429, 500, 503, 599]


def test_delivery_bounds_name_their_setting() -> None:
    from trio_gw.model.event_handlers import WebhookDelivery

    assert WebhookDelivery().delays == (1.0, 2.0, 4.0)
    assert WebhookDelivery(timeout=0.5, retries=0).delays == ()
    with pytest.raises(ConfigError, match="event_webhook_retries: expected 0 to 10, got -1"):
        WebhookDelivery(retries=-1)
    with pytest.raises(ConfigError, match="event_webhook_timeout"):
        WebhookDelivery(timeout=0)
