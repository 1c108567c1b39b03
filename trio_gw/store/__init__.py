"""Datastores: where the configuration lives when ``database`` is not ``off``."""

from trio_gw.store.base import SealedKeyError as SealedKeyError
from trio_gw.store.base import Store as Store
from trio_gw.store.base import StoreConflict as StoreConflict
from trio_gw.store.base import StoreError as StoreError
from trio_gw.store.base import export_entities as export_entities
from trio_gw.store.base import replace_all as replace_all
from trio_gw.store.sqlite import SqliteStore as SqliteStore

__all__ = [
    "SealedKeyError",
    "SqliteStore",
    "Store",
    "StoreConflict",
    "StoreError",
    "export_entities",
    "replace_all",
]
