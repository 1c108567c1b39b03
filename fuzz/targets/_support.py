"""Shared pieces of the fuzz targets: the failure type and small helpers.

A target's ``fuzz_one`` returns normally when its invariant holds and raises
:class:`InvariantViolation` when it does not.  Any *other* exception escaping
``fuzz_one`` is also a finding (an exception the code under test let through).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass


class InvariantViolation(AssertionError):
    """The code under test broke the target's stated invariant for this input."""


@dataclass(frozen=True)
class KnownBug:
    """A reported, unfixed bug: the pinned input and how its failure is recognised.

    The bounded tests (``tests/property/test_fuzz_*.py``) run each as a strict
    ``xfail``, so CI notices the day it is fixed.
    """

    example: bytes
    reason: str
    cause: type[BaseException]
    message: str

    def matches(self, exc: BaseException) -> bool:
        """Whether ``exc`` (or an exception it was raised from) is this bug."""
        return any(isinstance(e, self.cause) and self.message in str(e) for e in _chain(exc))


def run_past_known_bugs(fuzz_one: Callable[[bytes], None], data: bytes, bugs: Iterable[KnownBug]) -> None:
    """Run one input; a violation with a known bug's signature passes (its own xfail test tracks it)."""
    try:
        fuzz_one(data)
    except InvariantViolation as exc:
        if not any(bug.matches(exc) for bug in bugs):
            raise


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__


def pick(data: bytes, choices: int, salt: int = 0) -> int:
    """A deterministic choice in ``range(choices)`` derived from the whole input.

    Used where a target needs a second dimension (e.g. how the fake upstream
    behaves) without stealing bytes from the input itself: the same input
    always makes the same choice, so every crash reproduces.
    """
    return (zlib.crc32(data) ^ salt) % choices
