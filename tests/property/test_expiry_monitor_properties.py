"""Properties of the expiry monitor over arbitrary check schedules.

Invariants, for every certificate and event kind:

1. never two events within ``event_cooldown_seconds``;
2. never silent: at a check where the condition holds, an event fires unless
   one of that kind fired within the cooldown — so with checks at most
   ``check_cooldown_seconds`` apart, events come at most ``event_cooldown +
   check_cooldown`` apart for as long as the condition holds ("one a day");
3. an event fires only when its condition holds at that check.

Certificates are facts with chosen validity (no crypto in the loop).
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import example, given
from hypothesis import strategies as st

from trio_gw.model.entities import Certificate, Entities
from trio_gw.model.expiry_monitor import (
    CERTIFICATE_EXPIRED,
    CERTIFICATE_EXPIRING_SOON,
    ExpiryMonitorPolicy,
    FiredRecord,
    check_expiry,
)
from trio_gw.model.inventory import CertificateFacts, Inventory, build_inventory
from trio_gw.testing.pki import issue, make_ca

DAY, HOUR = 86_400, 3600
T0 = 1_900_000_000
_LEAF = issue(make_ca(), "p.example")
_BASE = next(iter(build_inventory(Entities(certificates={"c": Certificate(
    id="c", cert=_LEAF.chain_pem(), key=_LEAF.key_pem())}))))


def _inventory(not_afters: list[int]) -> Inventory:
    facts: dict[str, CertificateFacts] = {}
    for i, not_after in enumerate(not_afters):
        info = replace(_BASE.info, not_after=not_after, fingerprint_sha256=f"{i:064x}")
        facts[f"k{i}"] = replace(_BASE, key=f"k{i}", info=info, entity_id=None)
    return Inventory(facts)


def _holds(kind: str, not_after: int, now: int, policy: ExpiryMonitorPolicy) -> bool:
    if kind == CERTIFICATE_EXPIRED:
        return now > not_after
    return now <= not_after and not_after - now <= policy.warning_threshold_days * DAY


POLICIES = st.builds(
    ExpiryMonitorPolicy,
    warning_threshold_days=st.integers(1, 40),
    check_cooldown_seconds=st.sampled_from([60, HOUR, 6 * HOUR]),
    event_cooldown_seconds=st.sampled_from([HOUR, 12 * HOUR, DAY, 3 * DAY]),
)
NOT_AFTERS = st.lists(st.integers(T0 - 5 * DAY, T0 + 45 * DAY), min_size=1, max_size=4)
GAPS = st.lists(st.integers(1, 2 * DAY), min_size=1, max_size=120)


def _run(not_afters: list[int], gaps: list[int], policy: ExpiryMonitorPolicy) -> list[tuple[int, str, str]]:
    inventory, now, fired = _inventory(not_afters), T0, {}  # type: ignore[var-annotated]
    record: FiredRecord = fired
    seen: list[tuple[int, str, str]] = []
    for gap in gaps:
        check = check_expiry(inventory, now=now, fired=record, policy=policy)
        seen += [(now, e.facts.key, e.kind) for e in check.events]
        _check_invariants(inventory, now, seen, policy)
        record = check.fired
        now += gap
    return seen


def _check_invariants(inventory: Inventory, now: int, seen: list[tuple[int, str, str]],
                      policy: ExpiryMonitorPolicy) -> None:
    cooldown = policy.event_cooldown_seconds
    for facts in inventory:
        for kind in (CERTIFICATE_EXPIRING_SOON, CERTIFICATE_EXPIRED):
            times = [t for t, key, k in seen if key == facts.key and k == kind]
            assert all(b - a >= cooldown for a, b in zip(times, times[1:])), "two events within the cooldown"
            fired_now = bool(times) and times[-1] == now
            holds = _holds(kind, facts.info.not_after, now, policy)
            assert not fired_now or holds, "an event whose condition does not hold"
            if holds:
                assert fired_now or (times and now - times[-1] < cooldown), "silent while the condition holds"


@given(NOT_AFTERS, GAPS, POLICIES)
@example([T0 + 5 * DAY], [HOUR] * 60, ExpiryMonitorPolicy())
@example([T0 + HOUR], [HOUR] * 30, ExpiryMonitorPolicy())  # expiring soon, then expired the same day
def test_never_twice_within_the_cooldown_never_silent_never_wrong(
    not_afters: list[int], gaps: list[int], policy: ExpiryMonitorPolicy
) -> None:
    _run(not_afters, gaps, policy)


@given(st.integers(T0 + 2 * DAY, T0 + 40 * DAY), st.integers(3, 12), st.sampled_from([HOUR, 30 * 60]))
def test_with_checks_on_schedule_one_event_a_day_while_it_holds(not_after: int, days: int, period: int) -> None:
    policy = ExpiryMonitorPolicy(check_cooldown_seconds=period)
    seen = _run([not_after], [period] * (days * DAY // period), policy)
    for kind in (CERTIFICATE_EXPIRING_SOON, CERTIFICATE_EXPIRED):
        times = [t for t, _, k in seen if k == kind]
        assert all(DAY <= b - a <= DAY + period for a, b in zip(times, times[1:]))
    first_warning_due = max(T0, not_after - 30 * DAY)
    if first_warning_due <= T0 + days * DAY - period:
        soon = [t for t, _, k in seen if k == CERTIFICATE_EXPIRING_SOON]
        assert soon and soon[0] - first_warning_due < period  # the first one comes at the first check due


def test_the_invariants_catch_each_violation() -> None:
    import pytest

    policy, inventory = ExpiryMonitorPolicy(), _inventory([T0 + 5 * DAY])
    soon = CERTIFICATE_EXPIRING_SOON
    with pytest.raises(AssertionError, match="within the cooldown"):
        _check_invariants(inventory, T0 + HOUR, [(T0, "k0", soon), (T0 + HOUR, "k0", soon)], policy)
    with pytest.raises(AssertionError, match="silent"):
        _check_invariants(inventory, T0 + DAY, [(T0, "k0", soon)], policy)
    with pytest.raises(AssertionError, match="does not hold"):
        _check_invariants(inventory, T0, [(T0, "k0", soon), (T0, "k0", CERTIFICATE_EXPIRED)], policy)
