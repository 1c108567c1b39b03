"""The Store protocol's helpers, against an in-memory fake."""

from __future__ import annotations

import pytest

from trio_gw.errors import GatewayError
from trio_gw.model.entities import Entities, Service
from trio_gw.store.base import (
    SealedKeyError,
    StoreConflict,
    StoreError,
    export_entities,
    replace_all,
)
from trio_gw.store.sealing import Sealer


class FakeStore:
    """Holds one configuration; the first ``conflicts`` commits lose a race.

    A whole :class:`~trio_gw.store.base.Store`; the members the helpers never call refuse.
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

    # --- not used by the helpers under test ------------------------------------------------

    def load_versioned(self) -> tuple[Entities, int]:
        raise NotImplementedError

    def acquire_writer(self, timeout: float = 30.0) -> None:
        raise NotImplementedError

    def release_writer(self) -> None:
        raise NotImplementedError

    def read_secret(self, name: str) -> str | None:
        raise NotImplementedError

    def write_secret(self, name: str, value: str) -> None:
        raise NotImplementedError

    def read_secrets(self, prefix: str) -> dict[str, str]:
        raise NotImplementedError

    def delete_secret(self, name: str) -> None:
        raise NotImplementedError

    def try_lock(self, name: str) -> bool:
        raise NotImplementedError

    def unlock(self, name: str) -> None:
        raise NotImplementedError

    def read_meta(self, key: str) -> str | None:
        raise NotImplementedError

    def swap_meta(self, key: str, expected: str | None, value: str) -> bool:
        raise NotImplementedError

    @property
    def sealer(self) -> Sealer | None:
        return None


WANTED = Entities(services={"a": Service(id="a", host="h")})


def test_replace_all_commits_over_whatever_is_there() -> None:
    store = FakeStore()
    assert replace_all(store, WANTED) == 1
    assert export_entities(store) == WANTED


def test_replace_all_retries_conflicts() -> None:
    store = FakeStore(conflicts=2)
    assert replace_all(store, WANTED) == 1


def test_replace_all_gives_up_after_its_attempts() -> None:
    with pytest.raises(StoreConflict):
        replace_all(FakeStore(conflicts=3), WANTED)
    with pytest.raises(ValueError, match="at least 1"):
        replace_all(FakeStore(), WANTED, attempts=0)


def test_errors_are_gateway_errors() -> None:
    assert issubclass(StoreConflict, StoreError)
    assert issubclass(SealedKeyError, StoreError)
    assert issubclass(StoreError, GatewayError)
