"""Fuzz target ``sni-select``: SNI index building and certificate selection on any names.

The input is split on ``\\n``.  Its first line is the server name a client
sends (decoded three ways: UTF-8 with surrogate escapes — so lone surrogates
reach the code, as they can from a C extension —, Latin-1, and ``None`` when the
line is empty).  The remaining lines are configured SNI entities of two
certificates, alternating; the index is built from them (strict and not).
"""

from __future__ import annotations

from fuzz.targets._support import InvariantViolation
from trio_gw.errors import ConfigError
from trio_gw.tls.sni import (
    SniCandidate,
    SniIndex,
    SniScope,
    SniSelection,
    select_certificate,
)

INVARIANT = """\
``SniIndex.build`` on any configured names gives an index or ``ConfigError``;
``select_certificate`` on any ``str`` or ``None`` never raises and returns
``None`` or a selection of a configured certificate; selection does not depend
on ASCII letter case; a name configured as an exact SNI entity selects its
certificate.
"""

#: Fixed indexes that exist whatever the input (so selection is always exercised).
_FIXED = [
    SniCandidate("c-exact", names=("api.example.com", "*.wild.example.com", "right.*")),
    SniCandidate("c-san", san_names=("san.example.org", "*.sanwild.example.org", "not a name")),
    SniCandidate("c-domain", san_names=("san.example.org",), scope=SniScope.CUSTOM_DOMAIN, order=1),
    SniCandidate("c-star", names=("*",), order=2),
]
_FIXED_INDEXES = [SniIndex.build(_FIXED), SniIndex.build(_FIXED[:3], strict=True)]


def _names(data: bytes) -> list[str | None]:
    if not data:
        return [None]
    return [data.decode("utf-8", "surrogateescape"), data.decode("latin-1")]


def _check_selection(index: SniIndex, ids: set[str], name: str | None) -> SniSelection | None:
    selection = select_certificate(index, name)
    if selection is not None and selection.certificate_id not in ids:
        raise InvariantViolation(f"selected unknown certificate {selection.certificate_id!r}")
    if name is not None and name.isascii():
        other = select_certificate(index, name.swapcase())
        if other != selection:
            raise InvariantViolation(f"selection depends on case: {name!r} → {selection}, swapped → {other}")
    return selection


def fuzz_one(data: bytes) -> None:
    """Build indexes from the configured lines and select the first line's name."""
    first, *configured = data.split(b"\n")
    names = _names(first)
    fixed_ids = {c.certificate_id for c in _FIXED}
    for index in _FIXED_INDEXES:
        for name in names:
            _check_selection(index, fixed_ids, name)
    entity_names: list[list[str]] = [[], []]
    for i, line in enumerate(configured[:16]):
        entity_names[i % 2].append(line.decode("utf-8", "surrogateescape"))
    candidates = [
        SniCandidate("one", names=tuple(entity_names[0])),
        SniCandidate("two", names=tuple(entity_names[1]), order=1),
        SniCandidate("three", san_names=tuple(entity_names[0] + entity_names[1]), order=2),
    ]
    for strict in (False, True):
        try:
            index = SniIndex.build(candidates, ["one"], strict=strict)
        except ConfigError:
            continue
        for name in names:
            _check_selection(index, {"one", "two", "three"}, name)
        for owner, configured_names in (("one", entity_names[0]), ("two", entity_names[1])):
            for configured_name in configured_names:
                if configured_name.startswith("*") or configured_name.endswith("*"):
                    continue
                selection = select_certificate(index, configured_name)
                if selection is None or selection.certificate_id != owner:
                    raise InvariantViolation(f"configured name {configured_name!r} of {owner} selects {selection}")


SEEDS: dict[str, bytes] = {
    "exact": b"api.example.com\napi.example.com\nother.example.com",
    "wildcard": b"x.wild.example.com\n*.wild.example.com",
    "right": b"right.net\nright.*",
    "trailing-dot": b"API.Example.COM.\napi.example.com",
    "idna": "b\u00fccher.example\nb\u00fccher.example".encode(),
    "ip": b"127.0.0.1\n10.0.0.1",
    "none": b"\n*",
    "dup": b"a.test\na.test\na.test",
    "fullwidth-dot": "a\uff0eexample\uff0ecom\na.example.com".encode(),
}
