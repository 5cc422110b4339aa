"""The decode stage: datagrams in, FlowBatches out.

``feed`` walks the header and the (flow)sets of one datagram in Python (a few struct reads per
set) and appends the data records' raw bytes to a buffer per compiled template; ``flush`` turns
each buffer into columns with one ``np.frombuffer`` call. So the per-record work is done by
numpy, and the decoder can be tested on bytes alone.

Every malformed datagram or set is counted by reason and dropped; records of sets decoded
before the bad one are kept. Data sets that arrive before their template are held (bounded in
number and age) and decoded when the template arrives.
"""

from __future__ import annotations

import struct
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from citydc.collectors.netflow import ipfix, v5, v9
from citydc.collectors.netflow.decode import Template, batch_from_records, compile_template, normalize, uint_column
from citydc.collectors.netflow.records import FlowBatch, Malformed
from citydc.collectors.netflow.templates import TemplateCache, TemplateKey

__all__ = ["DecodeStats", "Decoder", "ExporterLabels"]

_SET = struct.Struct("!HH")
_VERSION = struct.Struct("!H")


class ExporterLabels:
    """Given the configured exporter addresses and a bound, map an exporter address to its
    metric label: configured and the first ``max_unknown`` other addresses keep their address,
    the rest become 'other', so a spoofed flood cannot grow the label set."""

    def __init__(self, known: Mapping[str, str] | None = None, max_unknown: int = 64) -> None:
        self._labels: dict[str, str] = dict(known or {})
        self._unknown = 0
        self.max_unknown = max_unknown

    def __call__(self, address: str) -> str:
        label = self._labels.get(address)
        if label is None:
            if self._unknown >= self.max_unknown:
                return "other"
            self._unknown += 1
            label = self._labels[address] = address
        return label


@dataclass
class DecodeStats:
    """Counters of the decode stage, exported by metrics.py (all label sets bounded)."""

    datagrams: Counter = field(default_factory=Counter)     # (site, exporter, version)
    records: Counter = field(default_factory=Counter)       # (site, exporter, version)
    errors: Counter = field(default_factory=Counter)        # (site, exporter, reason)
    unknown_template_sets: Counter = field(default_factory=Counter)  # (site, exporter, version, outcome)


@dataclass
class _Held:
    key: TemplateKey
    body: bytes
    arrived: float
    site: str
    label: str


class Decoder:
    """Given templates, per-exporter sampling rates and bounds, decode datagrams in bulk (see module doc)."""

    def __init__(
        self,
        *,
        templates: TemplateCache | None = None,
        sampling: Mapping[str, int] | None = None,
        exporter_labels: Callable[[str], str] | None = None,
        hold_sets: int = 256,
        hold_seconds: float = 10.0,
        max_pending_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.templates = templates if templates is not None else TemplateCache()
        self.config_sampling = dict(sampling or {})
        self.labels = exporter_labels or ExporterLabels()
        self.stats = DecodeStats()
        self.hold_seconds = hold_seconds
        self.max_pending_bytes = max_pending_bytes
        self._held: deque[_Held] = deque(maxlen=hold_sets)
        # (site, exporter address, version, domain) -> sampling rate announced in options data
        self.announced_sampling: dict[tuple[str, str, int, int], int] = {}
        # (site, label, version, id(template), rate) -> (template, rate, parts)
        self._pending: dict[tuple, tuple[Template, int, list[bytes]]] = {}
        self.pending_bytes = 0

    @property
    def needs_flush(self) -> bool:
        return self.pending_bytes >= self.max_pending_bytes

    # -- feeding -------------------------------------------------------------------------------

    def feed(self, data: bytes, exporter: str, site: str, now: float) -> None:
        """Given one datagram, its exporter address, the listener's site and the time, decode
        it into the pending buffers. Never raises for bad input: it is counted and dropped."""
        label = self.labels(exporter)
        if self._held and now - self._held[0].arrived > self.hold_seconds:
            self._expire_held(now)
        try:
            if len(data) < 2:
                raise Malformed("truncated_header", f"{len(data)}-byte datagram")
            (version,) = _VERSION.unpack_from(data)
            if version == 5:
                self.stats.datagrams[(site, label, "5")] += 1
                self._feed_v5(data, site, label, exporter)
            elif version == 9:
                self.stats.datagrams[(site, label, "9")] += 1
                self._feed_sets(data, site, label, exporter, 9, v9.parse_header(data), v9.HEADER_LEN, now)
            elif version == 10:
                self.stats.datagrams[(site, label, "10")] += 1
                self._feed_sets(data, site, label, exporter, 10, ipfix.parse_header(data), ipfix.HEADER_LEN, now)
            else:
                self.stats.datagrams[(site, label, "other")] += 1
                raise Malformed("unsupported_version", f"version {version}")
        except Malformed as exc:
            self.stats.errors[(site, label, exc.reason)] += 1
        except Exception:  # crash guard: a decoder bug must cost one datagram, not the collector
            self.stats.errors[(site, label, "internal_error")] += 1

    def _feed_v5(self, data: bytes, site: str, label: str, exporter: str) -> None:
        count, rate = v5.parse_header(data)
        if rate == 1:
            rate = self.config_sampling.get(exporter, 1)
        self._append(site, label, 5, v5.TEMPLATE, rate, data[v5.HEADER_LEN:])
        self.stats.records[(site, label, "5")] += count

    def _feed_sets(self, data: bytes, site: str, label: str, exporter: str, version: int, domain: int,
                   pos: int, now: float) -> None:
        end = len(data)
        tmpl_set, opt_set = (v9.TEMPLATE_SET, v9.OPTIONS_SET) if version == 9 else (ipfix.TEMPLATE_SET,
                                                                                     ipfix.OPTIONS_SET)
        while end - pos >= 4:
            set_id, length = _SET.unpack_from(data, pos)
            if length < 4 or pos + length > end:
                raise Malformed("bad_set", f"set {set_id} of length {length} at offset {pos} of {end}")
            body, body_end = pos + 4, pos + length
            if set_id >= 256:
                key = (site, exporter, version, domain, set_id)
                template = self.templates.get(key, now)
                if template is None:
                    self._hold(_Held(key, data[body:body_end], now, site, label))
                else:
                    self._data_set(template, key, site, label, data, body, body_end)
            elif set_id in (tmpl_set, opt_set):
                self._template_set(data, body, body_end, site, label, exporter, version, domain,
                                   set_id == opt_set, now)
            # Other set ids below 256 are reserved: skipped by their length, as RFC 7011 asks.
            pos = body_end

    def _template_set(self, data: bytes, start: int, end: int, site: str, label: str, exporter: str,
                      version: int, domain: int, options: bool, now: float) -> None:
        if version == 9:
            records = (v9.parse_options_templates(data, start, end) if options
                       else [(tid, fields, 0) for tid, fields in v9.parse_templates(data, start, end)])
        else:
            records = ipfix.parse_templates(data, start, end, options)
        for record in records:
            if isinstance(record, ipfix.Withdrawal):
                if record < 256:
                    self.templates.withdraw_all(site, exporter, version, domain, options)
                else:
                    self.templates.withdraw((site, exporter, version, domain, int(record)))
                continue
            tid, fields, scope = record
            key = (site, exporter, version, domain, tid)
            self.templates.put(key, compile_template(tid, fields, scope), now)
            if self._held:
                self._replay_held(key, site, label)

    def _data_set(self, template: Template, key: TemplateKey, site: str, label: str, data: bytes,
                  start: int, end: int) -> None:
        version = key[2]
        if template.record_len is None:
            body, count = normalize(template, data, start, end)
        else:
            count = (end - start) // template.record_len  # the remainder is padding
            body = data[start:start + count * template.record_len]
        if count == 0:
            return
        if template.is_options:
            self._options_data(template, key, body)
            return
        rate = self.announced_sampling.get(key[:4]) or self.config_sampling.get(key[1], 1)
        self._append(site, label, version, template, rate, body)
        self.stats.records[(site, label, str(version))] += count

    def _options_data(self, template: Template, key: TemplateKey, body: bytes) -> None:
        # Options data announcing a sampling interval sets the rate of the whole observation
        # domain (softflowd, Cisco "sampler" options); other options data is not needed here.
        if "sampling" in template.columns:
            arr = np.frombuffer(body, dtype=template.dtype)
            rate = int(uint_column(arr, "sampling", len(arr))[-1])
            if rate >= 1:
                self.announced_sampling[key[:4]] = rate

    def _append(self, site: str, label: str, version: int, template: Template, rate: int, body: bytes) -> None:
        pkey = (site, label, version, id(template), rate)
        entry = self._pending.get(pkey)
        if entry is None:
            entry = self._pending[pkey] = (template, rate, [])
        entry[2].append(body)
        self.pending_bytes += len(body)

    # -- held data sets ------------------------------------------------------------------------

    def _hold(self, held: _Held) -> None:
        if len(self._held) == self._held.maxlen:
            old = self._held.popleft()
            self.stats.unknown_template_sets[(old.site, old.label, str(old.key[2]), "dropped")] += 1
        self._held.append(held)

    def _replay_held(self, key: TemplateKey, site: str, label: str) -> None:
        matching = [h for h in self._held if h.key == key]
        if not matching:
            return
        for held in matching:
            self._held.remove(held)
        template = self.templates.get(key, matching[-1].arrived)
        for held in matching:
            self.stats.unknown_template_sets[(held.site, held.label, str(key[2]), "replayed")] += 1
            if template is not None:
                try:
                    self._data_set(template, key, held.site, held.label, held.body, 0, len(held.body))
                except Malformed as exc:
                    self.stats.errors[(held.site, held.label, exc.reason)] += 1

    def _expire_held(self, now: float) -> None:
        while self._held and now - self._held[0].arrived > self.hold_seconds:
            held = self._held.popleft()
            self.stats.unknown_template_sets[(held.site, held.label, str(held.key[2]), "dropped")] += 1

    @property
    def held_sets(self) -> int:
        return len(self._held)

    # -- flushing ------------------------------------------------------------------------------

    def flush(self) -> list[FlowBatch]:
        """Return the records fed since the last flush as FlowBatches (one per template and rate)."""
        pending, self._pending, self.pending_bytes = self._pending, {}, 0
        out = []
        for (site, label, version, _, _), (template, rate, parts) in pending.items():
            out.append(batch_from_records(template, b"".join(parts), site, label, version, rate))
        return out
