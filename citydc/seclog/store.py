"""The interface both security-log stores implement (SQLite and Elasticsearch).

A store receives batches of validated, hash-chained ECS events from the shipper and answers
auditor queries. The same Query gives the same results on both stores (tested).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from citydc.seclog.event import EventInvalid, parse_timestamp

__all__ = ["FILTER_FIELDS", "DeliveryError", "Query", "Store", "storable_timestamp"]

# CLI option -> ECS field. Filters are exact matches on these keyword fields.
FILTER_FIELDS: dict[str, str] = {
    "user": "user.name",
    "action": "event.action",
    "outcome": "event.outcome",
    "dataset": "event.dataset",
    "site": "labels.site",
    "source_ip": "source.ip",
    "kind": "event.kind",
    "host": "host.name",
}

# ISO 8601's extended form, as events are written: the Elasticsearch store names an event's monthly index
# from its first seven characters (store_es_template.index_for).
_EXTENDED_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T")
_LARGEST_SEQ = 2**63 - 1  # a SQLite INTEGER, an Elasticsearch long


def _indexed_by_object() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """Return the string fields a store indexes, grouped by their object: ``((object, ((key, path), ...)), ...)``."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for path in (*FILTER_FIELDS.values(), "citydc.chain.writer"):
        obj, key = path.rsplit(".", 1)
        grouped.setdefault(obj, []).append((key, path))
    return tuple((obj, tuple(keys)) for obj, keys in grouped.items())


# Each optional in an event. Walked with dict lookups, not a generic path walk: the shipper and the store run
# this for every event they handle (an ABC isinstance per path step cost 8 µs an event; 2.5 µs so).
_INDEXED = _indexed_by_object()


def storable_timestamp(doc: Mapping[str, Any]) -> datetime:
    """Given an event, return its ``@timestamp`` as an aware datetime, checking on the way every field a store
    builds its row or index entry from: ``event.id``, ``@timestamp``, ``message``, the filter fields and
    ``citydc.chain.writer`` (strings when present) and ``citydc.chain.seq`` (an integer a store can hold).
    Raise EventInvalid naming the first field a store cannot keep and what it expected.

    Both stores call this for each event they are given, and the shipper for each spool line it reads in
    full, so that a line damaged into an event no store can keep is skipped as a corrupted line rather than
    failing its whole batch at every attempt.
    """
    event = doc.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        raise EventInvalid("event.id", "expected a non-empty string")
    timestamp = doc.get("@timestamp")
    if not isinstance(timestamp, str) or not _EXTENDED_DATE.match(timestamp):
        raise EventInvalid(
            "@timestamp", f"expected an ISO 8601 time such as 2026-03-01T02:00:00.000Z, got {timestamp!r:.60}"
        )
    when = parse_timestamp(timestamp)
    if not isinstance(doc.get("message"), str):
        raise EventInvalid("message", "expected a string")
    for obj_path, keys in _INDEXED:
        obj = _object(doc, obj_path)
        if obj is None:
            continue
        for key, path in keys:
            value = obj.get(key)
            if value is not None and not isinstance(value, str):
                raise EventInvalid(path, f"expected a string, got {type(value).__name__}")
    chain = _object(doc, "citydc.chain")
    seq = chain.get("seq") if chain is not None else None
    if seq is not None and (type(seq) is not int or not 1 <= seq <= _LARGEST_SEQ):
        raise EventInvalid("citydc.chain.seq", f"expected an integer from 1 to {_LARGEST_SEQ}, got {seq!r:.30}")
    return when


def _object(doc: Mapping[str, Any], path: str) -> dict | None:
    """Given an event and an object's dotted path (one or two levels), return that object, or None when absent."""
    first, _, second = path.partition(".")
    value = doc.get(first)
    if second and isinstance(value, dict):
        value = value.get(second)
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Query:
    """An auditor's question. Times are timezone-aware; ``text`` is free text over ``message``."""

    since: datetime | None = None
    until: datetime | None = None
    # ECS field -> exact value, or a tuple of values of which the field may equal any (a saved question's list)
    filters: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    text: str | None = None
    limit: int | None = None  # None: no cap (streamed)
    newest_first: bool = True


class DeliveryError(RuntimeError):
    """A batch could not be stored (store down, rejected credentials, ...). ``reason`` is a metric label."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class Store(Protocol):
    def put(self, events: Sequence[dict]) -> int:
        """Store a batch; an event whose id is already stored is not stored again.

        Return how many were newly stored. Raise DeliveryError if the batch was not accepted
        (then nothing of it may be assumed stored; a retry is safe because ids are deterministic).
        """

    def search(self, query: Query) -> Iterator[dict]:
        """Yield the matching events (full ECS documents), ordered by @timestamp then event.id."""

    def stats(self, query: Query, by: Sequence[str]) -> list[tuple[tuple[str, ...], int]]:
        """Return (values of the ``by`` ECS fields, count) for the matching events, largest count first."""

    def chain(self, since: datetime | None = None) -> Iterator[dict]:
        """Yield every stored event ordered by (citydc.chain.writer, citydc.chain.seq) for verification."""

    def search_index_problem(self) -> str | None:
        """Return how the store's free-text index disagrees with its events (for ``verify``), or None."""

    def count(self) -> int: ...

    def close(self) -> None: ...
