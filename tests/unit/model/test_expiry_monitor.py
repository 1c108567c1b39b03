"""Tyk's certificate expiry monitor: the policy block, the events with Tyk's metadata, the warnings."""

from __future__ import annotations

import json

import pytest

from trio_gw.errors import ConfigError
from trio_gw.model.entities import SNI, Certificate, Entities
from trio_gw.model.expiry_monitor import (
    CERTIFICATE_EXPIRED,
    CERTIFICATE_EXPIRING_SOON,
    ExpiryMonitorPolicy,
    check_expiry,
    expiry_warnings,
    parse_expiry_monitor,
)
from trio_gw.model.inventory import Inventory, build_inventory
from trio_gw.testing.pki import Issued, issue, make_ca

DAY = 86_400
NOT_AFTER = 2_000_000_000  # 2033-05-18T03:33:20Z
ROOT = make_ca(common_name="monitor root")
LEAF = issue(ROOT, "api.example", common_name="api.example", not_after=NOT_AFTER)
RENEWED = issue(ROOT, "api.example", common_name="api.example", not_after=NOT_AFTER + 90 * DAY)


def _inventory(leaf: Issued = LEAF) -> Inventory:
    cert = Certificate(id="c1", cert=leaf.chain_pem(), key=leaf.key_pem())
    return build_inventory(Entities(certificates={"c1": cert},
                                    snis={"s1": SNI(id="s1", name="api.example", certificate="c1")}))


def test_tyk_defaults_and_names() -> None:
    assert parse_expiry_monitor(None) == ExpiryMonitorPolicy(30, 3600, 86_400)
    assert parse_expiry_monitor({"warning_threshold_days": 15, "check_cooldown_seconds": 1800,
                                 "event_cooldown_seconds": 43_200}) == ExpiryMonitorPolicy(15, 1800, 43_200)
    assert parse_expiry_monitor('{"warning_threshold_days": 7}').warning_threshold_days == 7  # environment
    assert parse_expiry_monitor(None, warning_days=10).warning_threshold_days == 10


def test_bad_policy_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"warning_treshold_days: unknown key \(did you mean 'warning_threshold"):
        parse_expiry_monitor({"warning_treshold_days": 15})
    with pytest.raises(ConfigError, match="check_cooldown_seconds: expected a positive integer"):
        parse_expiry_monitor({"check_cooldown_seconds": 0})
    with pytest.raises(ConfigError, match="event_cooldown_seconds: expected a positive integer"):
        parse_expiry_monitor({"event_cooldown_seconds": "1d"})
    with pytest.raises(ConfigError, match="same threshold; set one of them"):
        parse_expiry_monitor({"warning_threshold_days": 15}, warning_days=10)
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_expiry_monitor([15])


def test_five_days_before_expiry_fires_expiring_soon_with_tyk_metadata() -> None:
    now = NOT_AFTER - 5 * DAY - 3 * 3600
    check = check_expiry(_inventory(), now=now, fired={})
    (event,) = check.events
    assert event.kind == CERTIFICATE_EXPIRING_SOON
    meta = event.metadata()
    assert {k: meta[k] for k in ("event", "message", "cert_id", "cert_name", "cert_role", "expires_at",
                                 "days_remaining", "role")} == {
        "event": "CertificateExpiringSoon",
        "message": "Certificate api.example is expiring in 5 days and 3 hours",
        "cert_id": "c1", "cert_name": "api.example", "cert_role": "server",
        "expires_at": "2033-05-18T03:33:20Z", "days_remaining": 5, "role": "server",
    }
    assert meta["used_by"] == [{"kind": "sni", "id": "s1", "name": "api.example"}]
    assert "expired_at" not in meta and "PRIVATE" not in json.dumps(meta)
    assert check.next_check_at == now + 3600
    assert event.log_line.startswith("CertificateExpiringSoon: Certificate api.example is expiring in 5 days")
    assert "used by sni api.example" in event.log_line


def test_far_from_expiry_fires_nothing() -> None:
    assert check_expiry(_inventory(), now=NOT_AFTER - 31 * DAY, fired={}).events == ()
    # the threshold is inclusive, as Tyk's (until <= threshold)
    assert len(check_expiry(_inventory(), now=NOT_AFTER - 30 * DAY, fired={}).events) == 1


def test_expired_fires_expired_with_days_since_expiry() -> None:
    (event,) = check_expiry(_inventory(), now=NOT_AFTER + 2 * DAY + 3600, fired={}).events
    meta = event.metadata()
    assert event.kind == CERTIFICATE_EXPIRED
    assert meta["expired_at"] == "2033-05-18T03:33:20Z" and meta["days_since_expiry"] == 2
    assert meta["message"] == "Certificate api.example is expired since 2 days and 1 hours"
    # not_after itself is still valid (RFC 5280): expiring soon, not expired
    (last_second,) = check_expiry(_inventory(), now=NOT_AFTER, fired={}).events
    assert last_second.kind == CERTIFICATE_EXPIRING_SOON


def test_one_event_per_certificate_and_kind_per_cooldown() -> None:
    inventory, start = _inventory(), NOT_AFTER - 5 * DAY
    first = check_expiry(inventory, now=start, fired={})
    hour_later = check_expiry(inventory, now=start + 3600, fired=first.fired)
    assert hour_later.events == () and hour_later.fired == first.fired
    day_later = check_expiry(inventory, now=start + DAY, fired=hour_later.fired)
    assert [e.kind for e in day_later.events] == [CERTIFICATE_EXPIRING_SOON]
    # the expiry itself is not held back by the day's "expiring soon"
    expired = check_expiry(inventory, now=NOT_AFTER + 1, fired={("certificate:c1", _fp(), CERTIFICATE_EXPIRING_SOON):
                                                                   NOT_AFTER - 10})
    assert [e.kind for e in expired.events] == [CERTIFICATE_EXPIRED]


def test_a_renewed_certificate_is_a_new_certificate_and_stale_records_are_dropped() -> None:
    start = NOT_AFTER - 5 * DAY
    first = check_expiry(_inventory(), now=start, fired={})
    renewed = check_expiry(_inventory(RENEWED), now=start + 60, fired=first.fired)
    assert renewed.events == () and renewed.fired == {}  # the old fingerprint's record no longer matters
    gone = check_expiry(build_inventory(Entities()), now=start + 60, fired=first.fired)
    assert gone.fired == {}


def test_warnings_name_role_id_subject_source_and_users() -> None:
    lines = expiry_warnings(_inventory(), now=NOT_AFTER - 5 * DAY, warn_days=30)
    assert lines == ("server certificate c1 (CN=api.example,O=trio-gw tests; certificate entity; "
                     "used by sni api.example): expires in 5 days (2033-05-18T03:33:20Z)",)
    assert expiry_warnings(_inventory(), now=NOT_AFTER - 40 * DAY, warn_days=30) == ()


def _fp() -> str:
    return next(iter(_inventory())).info.fingerprint_sha256
