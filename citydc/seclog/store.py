"""The interface both security-log stores implement (SQLite and Elasticsearch).

A store receives batches of validated, hash-chained ECS events from the shipper and answers
auditor queries. The same Query gives the same results on both stores (tested).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

__all__ = ["FILTER_FIELDS", "DeliveryError", "Query", "Store"]

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

    def count(self) -> int: ...

    def close(self) -> None: ...
