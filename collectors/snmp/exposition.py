"""The interface samples of one poll as Prometheus text exposition (format 0.0.4).

After the fast v2c decoder, client_python's ``generate_latest`` was the largest cost of a poll:
for every sample it re-validates and re-escapes each label name and value. A poll's samples
repeat the same few label sets (one per interface), so this writer escapes each label set once
and formats values with client_python's own ``floatToGoString``. Its output is byte-identical to
``generate_latest`` over Counter/GaugeMetricFamily holding the same samples (a unit test checks
it), so the exporter's small fixed families still go through client_python and these are appended.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client.utils import floatToGoString

from citydc.collectors.snmp.collector import Sample

__all__ = ["samples_text"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def samples_text(samples: Iterable[Sample]) -> bytes:
    """Given samples, return their text exposition: one family per metric, in order of first appearance.

    Raise ValueError if a metric or label name is not a valid Prometheus name (they are code constants).
    """
    families: dict[str, list[str]] = {}
    exposed: dict[str, str] = {}
    label_text: dict[tuple[tuple[str, str], ...], str] = {}
    for s in samples:
        lines = families.get(s.metric)
        if lines is None:
            if not _NAME.fullmatch(s.metric):
                raise ValueError(f"invalid metric name {s.metric!r}")
            name = exposed[s.metric] = f"{s.metric}_total" if s.kind == "counter" else s.metric
            doc = s.help.replace("\\", r"\\").replace("\n", r"\n")
            lines = families[s.metric] = [f"# HELP {name} {doc}\n# TYPE {name} {s.kind}\n"]
        labels = label_text.get(s.labels)
        if labels is None:
            for key, _ in s.labels:
                if not _LABEL.fullmatch(key):
                    raise ValueError(f"invalid label name {key!r} on {s.metric}")
            inner = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(s.labels))
            labels = label_text[s.labels] = f"{{{inner}}}" if inner else ""
        lines.append(f"{exposed[s.metric]}{labels} {floatToGoString(s.value)}\n")
    return "".join(line for lines in families.values() for line in lines).encode()
