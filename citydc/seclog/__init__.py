"""The security log: ECS events → durable spool → shipper → SQLite or Elasticsearch store.

Every component records events with ``emit(make_event(...), spool_dir=...)``; the shipper
(``citydc log ship``) delivers them; auditors query them with ``citydc log search``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from citydc.seclog.chain import SpoolDamaged
from citydc.seclog.emit import emit, emit_configured
from citydc.seclog.event import EventInvalid, make_event, validate_event
from citydc.seclog.store import DeliveryError, Query, Store

if TYPE_CHECKING:
    from citydc.config.loader import LoadedConfig

__all__ = ["DeliveryError", "EventInvalid", "Query", "SpoolDamaged", "Store", "emit", "emit_configured", "make_event",
           "open_store", "validate_event"]


def open_store(loaded: LoadedConfig, *, readonly: bool = False) -> Store:
    """Given the loaded config, return its security-log store (SQLite, or Elasticsearch imported lazily).

    ``readonly`` (the reading commands: search, stats, saved, verify): a SQLite store is never created or
    altered; a missing one, or a file that is no citydc store, raises StoreUnusable naming the path and the
    config field. Only a writer (``log ship``, the demo) creates or upgrades the store.
    """
    sink = loaded.config.security_log.sink
    if sink.kind == "elasticsearch":
        from citydc.seclog.store_es import ElasticsearchStore  # the ES client is only loaded when used

        return ElasticsearchStore.from_config(sink, loaded.base_dir)
    from citydc.seclog.store_sqlite import SqliteStore

    return SqliteStore.from_config(sink, loaded.base_dir, create=not readonly)
