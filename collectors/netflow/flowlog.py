"""Optional forensic flow output: every decoded record as one JSON line in a file.

Off by default. When on it costs a Python loop per record, which is why the collector only
calls it when configured (collector.Collector.flow_sink).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import IO

from citydc.collectors.netflow.records import FlowBatch

__all__ = ["JsonLinesFlowLog", "records_as_dicts"]


def records_as_dicts(batch: FlowBatch) -> list[dict]:
    """Given a batch, return its records as dicts with ECS-style field names."""
    cols = {name: col.tolist() for name, col in batch.columns.items()}
    out = []
    for i in range(len(batch)):
        if cols["ip_version"][i] == 4:
            src, dst = str(ipaddress.IPv4Address(cols["src4"][i])), str(ipaddress.IPv4Address(cols["dst4"][i]))
        else:
            src = str(ipaddress.IPv6Address(cols["src6_hi"][i] << 64 | cols["src6_lo"][i]))
            dst = str(ipaddress.IPv6Address(cols["dst6_hi"][i] << 64 | cols["dst6_lo"][i]))
        out.append({
            "labels.site": batch.site, "observer.ip": batch.exporter, "netflow.version": batch.version,
            "source.ip": src, "source.port": cols["sport"][i], "destination.ip": dst,
            "destination.port": cols["dport"][i], "network.iana_number": cols["proto"][i],
            "network.bytes": cols["bytes"][i], "network.packets": cols["packets"][i],
            "observer.ingress.interface.id": cols["in_if"][i], "observer.egress.interface.id": cols["out_if"][i],
        })
    return out


class JsonLinesFlowLog:
    """Given a path, append each batch's records to it as JSON lines (a callable flow sink)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def __call__(self, batch: FlowBatch) -> None:
        self._file.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in records_as_dicts(batch))
        self._file.flush()

    def close(self) -> None:
        self._file.close()
