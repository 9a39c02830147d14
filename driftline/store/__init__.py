"""The ClickHouse store: opening it (embedded chDB or a server) and its schema."""

from driftline.store.client import StoreError, StoreInUse, connect
from driftline.store.migrations import migrate, schema_version

__all__ = ["StoreError", "StoreInUse", "connect", "migrate", "schema_version"]
