"""Which ticket keys a node uses, their schedule, and the scope each listener derives them for."""

from __future__ import annotations

import dataclasses
import enum
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gw.errors import ConfigError
from trio_gw.tls.downstream import parse_downstream_policy
from trio_gw.tls.session import ListenerPolicyKey
from trio_gw.tls.ticket_keys import DEFAULT_LEAD
from trio_gw.tls.ticket_policy import (
    MAX_RING_KEYS,
    TicketSource,
    canonical_bytes,
    listener_scope,
    select_ticket_source,
    ticket_rotation_policy,
)


@pytest.mark.parametrize(("tickets", "files", "database", "workers", "source"), [
    (True, (), "postgres", 1, TicketSource.DATASTORE),
    (True, (), "sqlite", 4, TicketSource.DATASTORE),
    (True, ("/k1",), "postgres", 2, TicketSource.FILES),  # nginx's files win wherever they are given
    (True, ("/k1",), "off", 1, TicketSource.FILES),
    (True, (), "off", 2, TicketSource.SUPERVISOR),
    (True, (), "off", 1, TicketSource.OPENSSL),  # one process, nothing to share: as before
    (False, ("/k1",), "postgres", 2, TicketSource.NONE),
])
def test_the_source_of_the_keys(tickets: bool, files: tuple[str, ...], database: str, workers: int,
                                source: TicketSource) -> None:
    assert select_ticket_source(tickets=tickets, files=files, database=database, workers=workers) is source


def test_the_schedule_publishes_a_fifth_of_the_interval_ahead_at_most_five_minutes() -> None:
    policy = ticket_rotation_policy(12 * 3600, 86400)
    assert (policy.interval, policy.lifetime, policy.lead) == (43200, 86400, DEFAULT_LEAD)
    short = ticket_rotation_policy(10, 60)
    assert (short.interval, short.lead) == (10, 2)


def test_an_interval_that_would_overgrow_the_ring_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError) as info:
        ticket_rotation_policy(60, 7 * 86400)
    problem = info.value.problems[0]
    assert problem.path == "ssl_session_ticket_rotation" and "at most 255" in problem.message
    ticket_rotation_policy(7 * 86400 / (MAX_RING_KEYS - 2) + 1, 7 * 86400)  # the shortest accepted


def _key(**changes: object) -> ListenerPolicyKey:
    values = {"ssl_session_timeout": "1d", **{k: v for k, v in changes.items() if k.startswith("ssl_")}}
    policy = parse_downstream_policy(values)
    return policy.listener_key(requests_client_cert=bool(changes.get("client", False)),
                               client_auth_generation=str(changes.get("generation", "")))


def test_the_same_policy_has_the_same_scope_and_any_change_another() -> None:
    base = listener_scope(_key())
    assert listener_scope(_key()) == base and len(base) == 32
    for other in (_key(client=True), _key(client=True, generation="x"), _key(ssl_session_timeout="2h"),
                  _key(ssl_min_version="1.3"), _key(ssl_cipher_suite="modern")):
        assert listener_scope(other) != base


def test_the_scope_does_not_depend_on_the_process() -> None:
    code = ("from trio_gw.tls.downstream import parse_downstream_policy;"
            "from trio_gw.tls.ticket_policy import listener_scope;"
            "k = parse_downstream_policy({}).listener_key(requests_client_cert=True, client_auth_generation='g');"
            "print(listener_scope(k).hex())")
    scopes = {subprocess.run([sys.executable, "-c", code], env={"PYTHONHASHSEED": str(seed)}, capture_output=True,
                             text=True, check=True, timeout=60).stdout.strip() for seed in (1, 2, 3)}
    assert scopes == {listener_scope(_key(client=True, generation="g")).hex()}


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str
    tags: frozenset[str]
    colour: Colour
    note: str = dataclasses.field(default="", compare=False)


@given(st.lists(st.text(max_size=5), max_size=6, unique=True))
def test_a_set_serialises_the_same_in_any_order(items: list[str]) -> None:
    forwards = Sample("a", frozenset(items), Colour.RED)
    backwards = Sample("a", frozenset(reversed(items)), Colour.RED, note="not compared")
    assert canonical_bytes(forwards) == canonical_bytes(backwards)


def test_values_of_unknown_types_are_refused_not_guessed() -> None:
    with pytest.raises(TypeError, match="no canonical form for object"):
        canonical_bytes(Sample("a", frozenset({object()}), Colour.RED))  # type: ignore[arg-type]
    assert canonical_bytes({"b": 1.5, "a": b"\x00"}) == canonical_bytes({"a": b"\x00", "b": 1.5})
