"""The notification ledger of the Alertmanager webhook: which notifications are already recorded.

Alertmanager retries a webhook post that failed or timed out, and re-sends a group's firing alerts
whenever the group changes, so one notification can arrive many times. The ledger (SQLite,
``<alerting.webhook.state_dir>/ledger.db``, 0600) keeps one row per notification, keyed by
(receiver, fingerprint, status, startsAt, endsAt of a resolved alert): an alert's firing is one
notification however often it is re-sent, its resolution another. An alert can also fire again with
the same startsAt after Alertmanager resolved it (Prometheus' re-sends stopped reaching it for a while,
a Prometheus restart, and then came again): that firing is keyed ``after <endsAt of the latest recorded
resolution>`` in place of the empty endsAt (``firing_key``), so it is recorded once more. The webhook records the
security event first (the spool is durable) and the ledger row after; a crash between the two
repeats the event with the same deterministic id, which the spool and the stores keep once.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

__all__ = ["AFTER", "Ledger", "LedgerKey"]

LedgerKey = tuple[str, str, str, str, str]  # receiver, fingerprint, status, startsAt, endsAt ("" when firing)
AFTER = "after "  # the endsAt part of a firing that follows a recorded resolution of the same alert


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    receiver TEXT NOT NULL, fingerprint TEXT NOT NULL, status TEXT NOT NULL,
    starts_at TEXT NOT NULL, ends_at TEXT NOT NULL,
    group_key TEXT NOT NULL, event_id TEXT NOT NULL, recorded_at TEXT NOT NULL,
    PRIMARY KEY (receiver, fingerprint, status, starts_at, ends_at)
) WITHOUT ROWID;
"""


class Ledger:
    """Given the ledger's path, open (create 0600) it. Use ``lock`` around check-emit-record."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self.lock = threading.Lock()
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)

    def unrecorded(self, keys: Iterable[LedgerKey]) -> list[LedgerKey]:
        """Given keys, return those not in the ledger, in order, each once."""
        out: list[LedgerKey] = []
        for key in dict.fromkeys(keys):
            row = self.conn.execute("SELECT 1 FROM notifications WHERE receiver=? AND fingerprint=? AND status=? "
                                    "AND starts_at=? AND ends_at=?", key).fetchone()
            if row is None:
                out.append(key)
        return out

    def firing_key(self, key: LedgerKey) -> LedgerKey:
        """Given the key of a firing notification (endsAt ""), return the key it is recorded under: itself,
        or, once a resolution of that alert (same receiver, fingerprint and startsAt) is recorded, the key of
        its firing again after the latest such resolution. Its retries and re-sends map to that key too."""
        receiver, fingerprint, status, starts_at, _ = key
        if status != "firing":
            return key
        ends = [row[0] for row in self.conn.execute(
            "SELECT ends_at FROM notifications WHERE receiver=? AND fingerprint=? AND status='resolved' "
            "AND starts_at=?", (receiver, fingerprint, starts_at))]
        if not ends:
            return key
        return receiver, fingerprint, status, starts_at, AFTER + max(ends, key=_instant)

    def record(self, rows: Iterable[tuple[LedgerKey, str, str, str]]) -> None:
        """Given (key, group key, event id, recorded at) rows, store them in one transaction."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany("INSERT OR IGNORE INTO notifications VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  [(*key, group, event, at) for key, group, event, at in rows])

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM notifications").fetchone()[0])

    def close(self) -> None:
        self.conn.close()
