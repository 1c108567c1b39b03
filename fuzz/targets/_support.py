"""Shared pieces of the fuzz targets: the failure type and small helpers.

A target's ``fuzz_one`` returns normally when its invariant holds and raises
:class:`InvariantViolation` when it does not.  Any *other* exception escaping
``fuzz_one`` is also a finding (an exception the code under test let through).
"""

from __future__ import annotations

import zlib


class InvariantViolation(AssertionError):
    """The code under test broke the target's stated invariant for this input."""


def pick(data: bytes, choices: int, salt: int = 0) -> int:
    """A deterministic choice in ``range(choices)`` derived from the whole input.

    Used where a target needs a second dimension (e.g. how the fake upstream
    behaves) without stealing bytes from the input itself: the same input
    always makes the same choice, so every crash reproduces.
    """
    return (zlib.crc32(data) ^ salt) % choices
