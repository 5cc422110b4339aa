"""Optional forensic flow output: every decoded record as one JSON line in a file.

Off by default. When on it costs a Python loop per record, which is why the collector only
calls it when configured (collector.Collector.flow_sink). Every line carries ``@timestamp``, the
time the collector wrote it (at most its flush interval after the datagram arrived: exporters'
own flow times are relative to their uptime and are not kept). ``reopen()`` (SIGHUP in
``citydc collect netflow``) starts a new file after logrotate moved the old one.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from citydc.collectors.netflow.records import FlowBatch

__all__ = ["JsonLinesFlowLog", "records_as_dicts"]


def records_as_dicts(batch: FlowBatch, timestamp: str | None = None) -> list[dict]:
    """Given a batch (and the ``@timestamp`` to give its records), return its records as dicts
    with ECS-style field names."""
    cols = {name: col.tolist() for name, col in batch.columns.items()}
    out = []
    for i in range(len(batch)):
        if cols["ip_version"][i] == 4:
            src, dst = str(ipaddress.IPv4Address(cols["src4"][i])), str(ipaddress.IPv4Address(cols["dst4"][i]))
        else:
            src = str(ipaddress.IPv6Address(cols["src6_hi"][i] << 64 | cols["src6_lo"][i]))
            dst = str(ipaddress.IPv6Address(cols["dst6_hi"][i] << 64 | cols["dst6_lo"][i]))
        out.append({
            **({"@timestamp": timestamp} if timestamp else {}),
            "labels.site": batch.site, "observer.ip": batch.exporter, "netflow.version": batch.version,
            "source.ip": src, "source.port": cols["sport"][i], "destination.ip": dst,
            "destination.port": cols["dport"][i], "network.iana_number": cols["proto"][i],
            "network.bytes": cols["bytes"][i], "network.packets": cols["packets"][i],
            "observer.ingress.interface.id": cols["in_if"][i], "observer.egress.interface.id": cols["out_if"][i],
        })
    return out


class JsonLinesFlowLog:
    """Given a path, append each batch's records to it as JSON lines (a callable flow sink)."""

    def __init__(self, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.path = path
        self.clock = clock
        self._reopen = False
        self._file: IO[str] = self._open()

    def _open(self) -> IO[str]:
        # Flow records say who talked to whom: the file (and a folder made for it) is the owner's only,
        # whatever the umask. Raise OSError if it cannot be opened.
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")

    def __call__(self, batch: FlowBatch) -> None:
        if self._reopen:
            self._reopen = False
            self._file.close()
            self._file = self._open()
        stamp = self.clock().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self._file.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in records_as_dicts(batch, stamp))
        self._file.flush()

    def reopen(self) -> None:
        """Open ``path`` again before the next write (a new file if logrotate moved the old one).

        Only sets a flag, so it is safe in a signal handler that may interrupt a write."""
        self._reopen = True

    def close(self) -> None:
        self._file.close()
