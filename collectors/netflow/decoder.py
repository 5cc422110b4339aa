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

from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from citydc.collectors.netflow import batch as batchmod
from citydc.collectors.netflow import ipfix, receive, v5, v9
from citydc.collectors.netflow.decode import (
    Template,
    announced_rate,
    batch_from_records,
    compile_template,
    implausible,
    implausible_at,
    may_be_implausible,
    normalize,
)
from citydc.collectors.netflow.fastpath import DirectAggregates, Partial, walk
from citydc.collectors.netflow.pending import PendingRecords
from citydc.collectors.netflow.records import REASONS, FlowBatch, Malformed
from citydc.collectors.netflow.sequence import SequenceTracker
from citydc.collectors.netflow.templates import TemplateCache, TemplateKey

if TYPE_CHECKING:
    from citydc.collectors.netflow.aggregate import Aggregator

__all__ = ["DecodeStats", "Decoder", "ExporterLabels"]

_BAD_SET = 1 + REASONS.index("bad_set")


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
    dropped: Counter = field(default_factory=Counter)       # (site, exporter, reason): not decoded at all


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
        listed: Collection[str] | None = None,
        sequences: SequenceTracker | None = None,
    ) -> None:
        # ``listed``: when set, datagrams from any other source address are dropped before decoding.
        self.listed = None if listed is None else frozenset(listed)
        self.sequences = sequences if sequences is not None else SequenceTracker()
        # data records per datagram of the batch being decoded (IPFIX sequence increments), and
        # whether a datagram's count is unknown (a held or unreadable data set)
        self._dg_records: np.ndarray | None = None
        self._dg_unknown: np.ndarray | None = None
        self._dg_options: np.ndarray | None = None  # of those records, options data (IPFIX sequence conventions)
        self.templates = templates if templates is not None else TemplateCache()
        self.config_sampling = dict(sampling or {})
        self.labels = exporter_labels or ExporterLabels()
        self.stats = DecodeStats()
        self.hold_seconds = hold_seconds
        self.max_pending_bytes = max_pending_bytes
        self._held: deque[_Held] = deque(maxlen=hold_sets)
        # (site, exporter address, version, domain) -> sampling rate announced in options data
        self.announced_sampling: dict[tuple[str, str, int, int], int] = {}
        # keyed by (site, label, version, id(template), rate)
        self._pending = PendingRecords(max_pending_bytes)
        self._compiled: dict[tuple[int, bool, bytes], list[Template | ipfix.Withdrawal]] = {}

    @property
    def path(self) -> str:
        """Return which decode path runs: 'compiled' (fastpath.py, C) or 'numpy'."""
        return "compiled" if isinstance(self._pending, DirectAggregates) else "numpy"

    def use_compiled(self, aggregator: Aggregator) -> None:
        """Given the aggregator the decoded records are for, sum records on arrival in C
        (fastpath.py): flush() then returns fastpath.Partial sums instead of FlowBatches.

        Call before feeding. Raise RuntimeError if the extension is not built (fastpath.available())."""
        self._pending = DirectAggregates(aggregator, self.max_pending_bytes)

    @property
    def pending_bytes(self) -> int:
        return self._pending.nbytes

    @property
    def needs_flush(self) -> bool:
        return self.pending_bytes >= self.max_pending_bytes

    # -- feeding -------------------------------------------------------------------------------

    def feed(self, data: bytes, exporter: str, site: str, now: float) -> None:
        """Given one datagram, its exporter address, the listener's site and the time, decode
        it into the pending buffers. Never raises for bad input: it is counted and dropped."""
        self.feed_batch(receive.Received.of([(data, exporter)]), site, now)

    def feed_batch(self, batch: receive.Received, site: str, now: float) -> None:
        """Given received datagrams, the listener's site and the time, decode them into the
        pending buffers with a fixed number of numpy operations per batch (see batch.py).

        Never raises for bad input: each bad datagram is counted under its reason and dropped,
        the good ones of the same batch are kept. Within one batch, templates and sampling
        announcements take effect for the whole batch, except that a template whose layout
        changes (or is withdrawn) splits the batch, so earlier records keep the old layout.
        """
        if len(batch) == 0:
            return
        if self.listed is not None and not self.listed.issuperset(batch.exporters):
            batch = self._only_listed(batch, site)
            if batch is None:
                return
        labels = [self.labels(address) for address in batch.exporters]
        if self._held and now - self._held[0].arrived > self.hold_seconds:
            self._expire_held(now)
        if isinstance(self._pending, DirectAggregates) and len(batch.exporters) == 1:
            try:
                if self._v5_in_c(batch, labels[0], site):
                    return
            except Exception:  # crash guard, as below: a bug costs this batch, never the collector
                self.stats.errors[(site, labels[0], "internal_error")] += len(batch)
                return
        try:
            if isinstance(self._pending, DirectAggregates):
                heads, sets = walk(batch)
            else:
                heads = batchmod.read_headers(batch)
                sets = batchmod.walk_sets(batch, heads)
        except Exception:  # crash guard: a bug in the vectorised path costs nothing: decode one by one
            if len(batch) == 1:
                self.stats.errors[(site, labels[int(batch.exporter_index[0])], "internal_error")] += 1
                return
            for one in batchmod.split(batch):
                self.feed_batch(one, site, now)
            return
        self._count_datagrams(heads, labels, site)
        ipfix_rows = heads.vcode == batchmod.IPFIX
        has_ipfix = bool(ipfix_rows.any())
        self._dg_records = np.zeros(len(batch), np.int64) if has_ipfix else None
        self._dg_unknown = np.zeros(len(batch), bool) if has_ipfix else None
        self._dg_options = np.zeros(len(batch), np.int64) if has_ipfix else None
        try:
            self._feed_v5_batch(batch, heads, labels, site)
            if len(sets.dg):
                self._feed_set_batch(batch, heads, sets, labels, site, now)
        except Exception:  # crash guard: a decoder bug costs this batch, never the collector
            for exp in batch.exporter_index.tolist():
                self.stats.errors[(site, labels[exp], "internal_error")] += 1
            return
        for reason_code, where in heads.errors():
            self.stats.errors[(site, labels[where], REASONS[reason_code])] += 1
        self._track(batch, heads, labels, site)

    def _track(self, batch: receive.Received, heads: batchmod.Headers, labels: list[str], site: str) -> None:
        # Sequence numbers of the datagrams whose header is sound: well-formed ones, and those with a
        # bad set (their IPFIX record count is then unknown, so the next one restarts the check).
        bad_set = heads.reason == _BAD_SET
        rows = np.flatnonzero((heads.vcode <= batchmod.IPFIX) & ((heads.reason == 0) | bad_set))
        records, unknown, options = self._dg_records, self._dg_unknown, self._dg_options
        if records is not None and unknown is not None and options is not None:
            records[unknown | bad_set] = -1
            records, options = records[rows], options[rows]
        self._dg_records = self._dg_unknown = self._dg_options = None
        self.sequences.observe(batch, rows, heads.vcode[rows], records, labels, site, options)

    def _v5_in_c(self, batch: receive.Received, label: str, site: str) -> bool:
        # The compiled path's whole-batch shortcut: one exporter's well-formed v5 datagrams of one
        # sampling interval, checked and summed in two C calls; anything else takes the general path.
        sink = self._pending
        assert isinstance(sink, DirectAggregates)
        found = sink.v5_batch(batch)
        if found is None:
            return False
        records, interval = found
        rate = interval or self.config_sampling.get(batch.exporters[0], 1)
        if may_be_implausible(v5.TEMPLATE, rate):  # a configured rate above 65536: records are checked there
            return False
        sink.add_v5((site, label, 5, id(v5.TEMPLATE), rate), v5.TEMPLATE, rate, batch, records)
        self.stats.datagrams[(site, label, "5")] += len(batch)
        self.stats.records[(site, label, "5")] += records
        self.sequences.observe_whole(batch, batchmod.V5, label, site)
        return True

    def _only_listed(self, batch: receive.Received, site: str) -> receive.Received | None:
        # Count and cut out the datagrams of unlisted source addresses; None if nothing is left.
        listed = self.listed
        assert listed is not None
        unknown = [i for i, address in enumerate(batch.exporters) if address not in listed]
        per_exporter = np.bincount(batch.exporter_index, minlength=len(batch.exporters))
        for i in unknown:
            self.stats.dropped[(site, self.labels(batch.exporters[i]), "unknown_exporter")] += int(per_exporter[i])
        if len(unknown) == len(batch.exporters):
            return None
        keep = np.flatnonzero(~np.isin(batch.exporter_index, unknown))
        n, slot = len(batch), batch.slot
        buf = np.zeros((len(keep) + 1) * slot, np.uint8)  # +1 slot: header views may read past the last datagram
        buf[:len(keep) * slot] = batch.buf[:n * slot].reshape(n, slot)[keep].reshape(-1)
        kept = [i for i in range(len(batch.exporters)) if i not in unknown]
        remap = np.zeros(len(batch.exporters), np.intp)
        remap[kept] = np.arange(len(kept))
        return receive.Received(buf, slot, batch.lengths[keep], remap[batch.exporter_index[keep]],
                                [batch.exporters[i] for i in kept])

    def _count_datagrams(self, heads: batchmod.Headers, labels: list[str], site: str) -> None:
        for (exp, vcode), count in heads.datagram_counts().items():
            self.stats.datagrams[(site, labels[exp], batchmod.VERSION_KEYS[vcode])] += count

    def _feed_v5_batch(self, batch: receive.Received, heads: batchmod.Headers, labels: list[str],
                       site: str) -> None:
        rows = heads.v5_rows()
        if len(rows) == 0:
            return
        config = np.array([self.config_sampling.get(a, 1) for a in batch.exporters], np.int64)
        rates = heads.v5_rates(rows, config)
        exp = batch.exporter_index[rows]
        counts = heads.count[rows]
        n = len(rows)
        if n == len(batch) and bool((counts == v5.MAX_COUNT).all()) and bool((rates == rates[0]).all()) and (
                len(batch.exporters) == 1) and not may_be_implausible(v5.TEMPLATE, int(rates[0])):
            # The common case, full v5 datagrams from one exporter: one strided view, one copy.
            self._pending.grid((site, labels[0], 5, id(v5.TEMPLATE), int(rates[0])), v5.TEMPLATE, int(rates[0]),
                               batch.buf, v5.HEADER_LEN, batch.slot, n, v5.MAX_COUNT)
            self.stats.records[(site, labels[0], "5")] += n * v5.MAX_COUNT
            return
        starts = rows * batch.slot + v5.HEADER_LEN
        for (e, rate), sel in batchmod.groups(exp, rates):
            self.stats.records[(site, labels[e], "5")] += self._gather(site, labels[e], 5, v5.TEMPLATE, rate, batch.buf,
                                                                       starts[sel], counts[sel])

    def _feed_set_batch(self, batch: receive.Received, heads: batchmod.Headers, sets: batchmod.Sets,
                        labels: list[str], site: str, now: float) -> None:
        mv = memoryview(batch.buf)
        if sets.version is not None and sets.special is not None:
            version, special = sets.version, sets.special
        else:
            version = np.where(heads.vcode[sets.dg] == batchmod.V9, 9, 10)
            special = ((version == 9) & (sets.set_id <= v9.OPTIONS_SET)) | (
                (version == 10) & ((sets.set_id == ipfix.TEMPLATE_SET) | (sets.set_id == ipfix.OPTIONS_SET)))
        dropped = np.zeros(len(sets.dg), bool)  # sets after a bad template set in the same datagram
        done = 0
        specials = np.flatnonzero(special).tolist()
        sp_dg = sets.dg[specials].tolist()
        dup = sets.dup[specials].tolist() if sets.dup is not None else None
        # Exporters resend the same template sets every few datagrams: when a datagram carries
        # exactly the template sets its source's previous one did, applying them again changes
        # nothing (same templates, same time), so it is skipped. The compiled walk has compared
        # the bytes already (``dup``); otherwise they are compared here.
        last: dict[tuple[int, int, int], tuple[bytes, ...] | bool] = {}
        j = 0
        while j < len(specials):
            dg = sp_dg[j]
            k = j + 1
            while k < len(specials) and sp_dg[k] == dg:
                k += 1
            exp = int(batch.exporter_index[dg])
            source = (exp, int(version[specials[j]]), int(heads.domain[dg]))
            if dup is not None:
                if dup[j] and last.get(source) is True:  # same as the previous, cleanly applied, sets
                    j = k
                    continue
                signature: tuple[bytes, ...] | bool = True
            else:
                signature = tuple(mv[a:b].tobytes() for a, b in zip(sets.start[specials[j:k]].tolist(),
                                                                    sets.stop[specials[j:k]].tolist(), strict=True))
                if last.get(source) == signature:
                    j = k
                    continue
            clean = True
            for m in range(j, k):
                i = specials[m]
                if dropped[i]:
                    continue
                ver, domain, set_id = source[1], source[2], int(sets.set_id[i])
                exporter, label = batch.exporters[exp], labels[exp]
                options = set_id == (v9.OPTIONS_SET if ver == 9 else ipfix.OPTIONS_SET)
                try:
                    records = self._parse_template_set(mv[int(sets.start[i]):int(sets.stop[i])].tobytes(), ver,
                                                       options)
                except Malformed as exc:
                    self.stats.errors[(site, label, exc.reason)] += 1
                    dropped[(sets.dg == dg) & (np.arange(len(dropped)) > i)] = True
                    if self._dg_unknown is not None:  # its later data sets are not read: record count unknown
                        self._dg_unknown[dg] = True
                    clean = False
                    continue
                if self._disrupts(records, site, exporter, ver, domain):
                    # Records before this set must still be read with the templates they were sent with.
                    self._data_sets(batch, heads, sets, labels, site, now, done, i, special | dropped, version)
                    done = i
                self._apply_templates(records, site, label, exporter, ver, domain, options, now)
            if clean:
                last[source] = signature
            else:
                last.pop(source, None)
            j = k
        self._data_sets(batch, heads, sets, labels, site, now, done, len(sets.dg), special | dropped, version)
        self._count_reserved(batch, sets, labels, site, special | dropped)

    def _count_reserved(self, batch: receive.Received, sets: batchmod.Sets, labels: list[str], site: str,
                        skip: np.ndarray) -> None:
        # Set ids below 256 that are not (options) template sets are reserved (RFC 3954 §5.2, RFC
        # 7011 §3.3.2): nothing can be read from them, but an exporter sending them is broken.
        for i in np.flatnonzero(~skip & (sets.set_id < 256)).tolist():
            self.stats.errors[(site, labels[int(batch.exporter_index[sets.dg[i]])], "reserved_set")] += 1

    def _parse_template_set(self, body: bytes, version: int, options: bool) -> list[Template | ipfix.Withdrawal]:
        # Parse and compile a (options) template set body; Malformed('bad_template') if any record
        # is bad. Exporters resend the same template sets every few datagrams: compile each wire form once.
        raw = (version, options, body)
        known = self._compiled.get(raw)
        if known is None:
            known = self._compile_set(body, 0, len(body), version, options)
            if len(self._compiled) >= 1024:  # bounded: ever-new template sets must not grow memory
                self._compiled.clear()
            self._compiled[raw] = known
        return known

    def _compile_set(self, data: bytes, start: int, end: int, version: int, options: bool
                     ) -> list[Template | ipfix.Withdrawal]:
        if version == 9:
            records = (v9.parse_options_templates(data, start, end) if options
                       else [(tid, fields, 0) for tid, fields in v9.parse_templates(data, start, end)])
        else:
            records = ipfix.parse_templates(data, start, end, options)
        return [r if isinstance(r, ipfix.Withdrawal) else compile_template(*r) for r in records]

    def _disrupts(self, records: list[Template | ipfix.Withdrawal], site: str, exporter: str, version: int,
                  domain: int) -> bool:
        # A withdrawal, or a known template id announced with another layout.
        for record in records:
            if isinstance(record, ipfix.Withdrawal):
                return True
            old = self.templates.peek((site, exporter, version, domain, record.template_id))
            if old is not None and (old.fields != record.fields or old.scope_count != record.scope_count):
                return True
        return False

    def _data_sets(self, batch: receive.Received, heads: batchmod.Headers, sets: batchmod.Sets,
                   labels: list[str], site: str, now: float, lo: int, hi: int, skip: np.ndarray,
                   version: np.ndarray) -> None:
        # Decode the data sets among sets[lo:hi]: one template lookup per distinct
        # (exporter, version, domain, set id), one gather per template.
        rows = np.flatnonzero(~skip[lo:hi] & (sets.set_id[lo:hi] >= 256)) + lo
        if len(rows) == 0:
            return
        dg = sets.dg[rows]
        exp = batch.exporter_index[dg]
        keys = np.stack([exp, version[rows], heads.domain[dg], sets.set_id[rows]])
        flows = []
        for (e, ver, domain, set_id), sel in batchmod.groups(*keys):
            key = (site, batch.exporters[e], ver, domain, set_id)
            template = self.templates.get(key, now)
            if template is not None and template.is_options:
                self._sets_one_by_one(template, key, site, labels[e], batch.buf, sets.start[rows[sel]],
                                      sets.stop[rows[sel]], now, dg[sel])
            else:
                flows.append((e, key, template, sel))
        # Flow data after every options data set of the batch: the sampling rate those announce applies to
        # the whole batch, whatever the order of the template ids (the groups come sorted by set id).
        for e, key, template, sel in flows:
            exporter, label, ver = batch.exporters[e], labels[e], key[2]
            starts, stops = sets.start[rows[sel]], sets.stop[rows[sel]]
            if template is None or template.record_len is None:  # held, or variable-length fields
                self._sets_one_by_one(template, key, site, label, batch.buf, starts, stops, now, dg[sel])
                continue
            counts = (stops - starts) // template.record_len  # the remainder is padding
            if ver == 10 and self._dg_records is not None:
                np.add.at(self._dg_records, dg[sel], counts)
            n = int(counts.sum())
            if n == 0:
                continue
            rate = self.announced_sampling.get(key[:4]) or self.config_sampling.get(exporter, 1)
            self.stats.records[(site, label, str(ver))] += self._gather(site, label, ver, template, rate, batch.buf,
                                                                        starts, counts)

    def _sets_one_by_one(self, template: Template | None, key: TemplateKey, site: str, label: str,
                         buf: np.ndarray, starts: np.ndarray, stops: np.ndarray, now: float, dgs: np.ndarray) -> None:
        # The rare kinds of data set, in Python: no template yet (held), options data,
        # templates with variable-length fields. IPFIX counts each one's records in its datagram's
        # sequence increment (-1: unknown, as for a held set).
        records, unknown = (self._dg_records, self._dg_unknown) if key[2] == 10 else (None, None)
        for start, stop, dg in zip(starts.tolist(), stops.tolist(), dgs.tolist(), strict=True):
            body = buf[start:stop].tobytes()
            count = -1
            if template is None:
                self._hold(_Held(key, body, now, site, label))
            else:
                try:
                    count = self._data_set(template, key, site, label, body, 0, len(body))
                except Malformed as exc:
                    self.stats.errors[(site, label, exc.reason)] += 1
            if records is not None and unknown is not None:
                if count >= 0:
                    records[dg] += count
                    if template is not None and template.is_options and self._dg_options is not None:
                        self._dg_options[dg] += count
                else:
                    unknown[dg] = True

    def _apply_templates(self, records: list[Template | ipfix.Withdrawal], site: str, label: str, exporter: str,
                         version: int, domain: int, options: bool, now: float) -> None:
        for record in records:
            if isinstance(record, ipfix.Withdrawal):
                if record < 256:
                    self.templates.withdraw_all(site, exporter, version, domain, options)
                else:
                    self.templates.withdraw((site, exporter, version, domain, int(record)))
                continue
            key = (site, exporter, version, domain, record.template_id)
            self.templates.put(key, record, now)
            if self._held:
                self._replay_held(key, site, label)

    def _data_set(self, template: Template, key: TemplateKey, site: str, label: str, data: bytes,
                  start: int, end: int) -> int:
        # Decode one data set; return its record count.
        version = key[2]
        if template.record_len is None:
            body, count = normalize(template, data, start, end)
        else:
            count = (end - start) // template.record_len  # the remainder is padding
            body = data[start:start + count * template.record_len]
        if count == 0:
            return 0
        if template.is_options:
            self._options_data(template, key, body)
            return count
        rate = self.announced_sampling.get(key[:4]) or self.config_sampling.get(key[1], 1)
        self.stats.records[(site, label, str(version))] += self._append(site, label, version, template, rate, body)
        return count

    def _options_data(self, template: Template, key: TemplateKey, body: bytes) -> None:
        # Options data announcing a sampling interval sets the rate of the whole observation
        # domain (softflowd, Cisco "sampler" options); other options data is not needed here.
        if "sampling" in template.columns:
            rate = announced_rate(template, np.frombuffer(body, dtype=template.dtype))
            if rate is not None:
                self.announced_sampling[key[:4]] = rate

    # _append and _gather leave out the records whose scaled counters are implausible (counted
    # per record under 'implausible_counter') and return how many records they kept.

    def _append(self, site: str, label: str, version: int, template: Template, rate: int, records: bytes) -> int:
        arr = np.frombuffer(records, template.dtype)
        if may_be_implausible(template, rate):
            bad = implausible(template, arr, rate)
            if bad.any():
                self.stats.errors[(site, label, "implausible_counter")] += int(bad.sum())
                arr = arr[~bad]
        if len(arr):
            self._pending.add((site, label, version, id(template), rate), template, rate, arr)
        return len(arr)

    def _gather(self, site: str, label: str, version: int, template: Template, rate: int, buf: np.ndarray,
                starts: np.ndarray, counts: np.ndarray) -> int:
        key = (site, label, version, id(template), rate)
        if may_be_implausible(template, rate):  # 8-byte counters, a sampling field or a huge rate
            offsets = batchmod.record_offsets(starts, counts, template.norm_len)
            bad = implausible_at(template, rate, buf, offsets)
            if bad.any():
                self.stats.errors[(site, label, "implausible_counter")] += int(bad.sum())
                starts, counts = offsets[~bad], np.ones(len(offsets) - int(bad.sum()), np.int64)
                if len(starts) == 0:
                    return 0
        self._pending.runs(key, template, rate, buf, starts, counts)
        return int(counts.sum())

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

    def flush(self) -> list[FlowBatch] | list[Partial]:
        """Return the records fed since the last flush as FlowBatches (one per template and rate),
        or, on the compiled path, as their Partial sums in the same order."""
        if isinstance(self._pending, DirectAggregates):
            return self._pending.take()
        return [batch_from_records(template, records, site, label, version, rate)
                for (site, label, version, _, _), template, rate, records in self._pending.take()]
