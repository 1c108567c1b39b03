"""The Store protocol's helpers, against an in-memory fake."""

from __future__ import annotations

from typing import cast

import pytest

from trio_gw.errors import GatewayError
from trio_gw.model.entities import Entities, Service
from trio_gw.store.base import (
    SealedKeyError,
    Store,
    StoreConflict,
    StoreError,
    export_entities,
    replace_all,
)


class FakeStore:
    """Holds one configuration; the first ``conflicts`` commits lose a race.

    Only what the helpers under test call (:func:`fake` gives it the type they take).
    """

    def __init__(self, conflicts: int = 0) -> None:
        self.entities = Entities()
        self.counter = 0
        self.conflicts = conflicts

    def load(self) -> Entities:
        return self.entities

    def commit(self, old: Entities, new: Entities) -> int:
        if self.conflicts:
            self.conflicts -= 1
            raise StoreConflict("raced")
        assert old is self.entities
        self.entities, self.counter = new, self.counter + 1
        return self.counter

    def version(self) -> int:
        return self.counter

    def close(self) -> None:
        pass


def fake(conflicts: int = 0) -> Store:
    """A :class:`FakeStore` where a :class:`~trio_gw.store.base.Store` is taken."""
    return cast(Store, FakeStore(conflicts))


WANTED = Entities(services={"a": Service(id="a", host="h")})


def test_replace_all_commits_over_whatever_is_there() -> None:
    store = fake()
    assert replace_all(store, WANTED) == 1
    assert export_entities(store) == WANTED


def test_replace_all_retries_conflicts() -> None:
    store = fake(conflicts=2)
    assert replace_all(store, WANTED) == 1


def test_replace_all_gives_up_after_its_attempts() -> None:
    with pytest.raises(StoreConflict):
        replace_all(fake(conflicts=3), WANTED)
    with pytest.raises(ValueError, match="at least 1"):
        replace_all(fake(), WANTED, attempts=0)


def test_errors_are_gateway_errors() -> None:
    assert issubclass(StoreConflict, StoreError)
    assert issubclass(SealedKeyError, StoreError)
    assert issubclass(StoreError, GatewayError)
