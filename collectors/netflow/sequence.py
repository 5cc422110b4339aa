"""Export sequence numbers: lost export datagrams (gaps), late (reordered) datagrams, replays and
exporter restarts, per source (site, exporter, version, observation domain).

What the header's sequence number counts differs by version, and so does the unit of the loss:

| version | sequence number counts (before this datagram) | increment of a datagram |
|---|---|---|
| v5 | flow records of the engine (engine type/id) | its record count |
| v9 (RFC 3954 §5.1) | export datagrams of the source id | 1 |
| IPFIX (RFC 7011 §3.1) | data records (options data included) of the observation domain | its data records |

A datagram whose sequence number is the one expected is in order. One ahead of it means the
datagrams in between were lost (``lost`` grows by the difference, in the version's unit). One behind
it is, in this order of tests:

1. a **reset** when the exporter's boot time (export seconds minus sysUptime, v5/v9) moved forward
   by more than 2 s: it restarted and counts from 0 again. Its datagrams are taken as the new
   sequence, not as a flood of replays;
2. a **replay** when the same (sequence number, export seconds) was seen among the last 64
   datagrams of the source: an exact copy;
3. a **reset** when it was exported later than every datagram seen so far (IPFIX has no uptime: a
   sequence that starts over with a current export time);
4. **late** when it lies inside the span those 64 datagrams covered (reordered on the way);
5. a **replay** when it is older than that span and was exported more than 1 s before the newest
   datagram seen (a stale copy);
6. otherwise a **reset**.

**Exporters that count the datagram's own records.** softflowd 1.1.0 (and older go-ipfix) put in an
IPFIX header the flow records sent *including* that message's (and no options records), not those
sent before it: in order, its number grows by the records of the datagram that carries it. Checked
against RFC 7011, every change in record count between two datagrams would read as a gap or a late
datagram (115 datagrams in order from softflowd: 32 gaps, 23 late, 621 records "lost"). So when a
datagram is off the RFC expectation but exactly where that convention puts it (the previous
sequence number plus its own flow records), the source is taken to use it, and the check goes on
with the RFC number it should have sent (its sequence number minus its flow records); a datagram
that fits the RFC again switches back. A real loss of exactly the records that explain the other
convention is missed once (one gap not counted) before the next datagram switches back.

Replays and late datagrams do not move the expected number. Counting, not dropping: NetFlow has
no authentication, so anyone able to spoof a listed exporter can also forge fresh sequence
numbers; the counters are a signal for an alert, and a sequence error never costs a record.

Memory is bounded: at most ``max_sources`` sources (least recently seen forgotten first), each
with 64 remembered (sequence, seconds) pairs. The common case, a batch of one source whose
datagrams are all in order, is checked in one call of the compiled extension (``_fastflow.seq_run``,
well under a microsecond for a batch; a few numpy operations where the extension is not built);
only a batch with a gap, a late datagram or a replay is walked datagram by datagram.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np

from citydc.collectors.netflow import batch as batchmod
from citydc.collectors.netflow.receive import Received

try:
    from citydc.collectors.netflow import _fastflow
except ImportError:  # built without a C compiler: the numpy check runs
    _fastflow = None

__all__ = ["EVENTS", "RING", "SequenceTracker"]

MASK = 0xFFFFFFFF
RING = 64             # (sequence, seconds) pairs remembered per source
BOOT_SLACK = 2        # seconds: export seconds and uptime are truncated separately
STALE_SLACK = 1       # seconds
EVENTS = ("gap", "late", "replay", "reset")

# The header fields the sequence check reads, for every version at once (fields overlap).
_HEADER = np.dtype({
    "names": ["count", "uptime", "secs59", "v5_seq", "v5_engine", "v9_seq", "v9_domain", "ipfix_secs", "ipfix_seq",
              "ipfix_domain"],
    "formats": [">u2", ">u4", ">u4", ">u4", ">u2", ">u4", ">u4", ">u4", ">u4", ">u4"],
    "offsets": [2, 4, 8, 16, 20, 12, 16, 4, 8, 12],
    "itemsize": 24,
})


@dataclass
class _Source:
    expected: int | None = None   # None: the next datagram (re)starts the sequence
    boot: int = -1                # export seconds - uptime seconds of the last datagram in order (v5/v9)
    newest: int = 0               # largest export seconds seen
    # the last `filled` (sequence, seconds) pairs, oldest first: sequence numbers in ring[:RING],
    # seconds in ring[RING:] (fixed size, so the in-order check updates it in place)
    ring: np.ndarray = field(default_factory=lambda: np.zeros(2 * RING, np.int64))
    filled: int = 0
    # IPFIX: the sequence number counts the flow records of its own datagram (softflowd, see module doc);
    # then ``expected`` is the sequence number of the last datagram in order, else that plus ``last_n``
    counts_own: bool = False
    last_n: int = -1              # data records (options included) of the last datagram in order (IPFIX)

    def pairs(self) -> list[tuple[int, int]]:
        return list(zip(self.ring[:self.filled].tolist(), self.ring[RING:RING + self.filled].tolist(), strict=True))

    def remember(self, seqs: list[int] | np.ndarray, secs: list[int] | np.ndarray) -> None:
        # Replace the ring by the last RING of the given pairs (oldest first).
        seqs, secs = seqs[-RING:], secs[-RING:]
        self.filled = len(seqs)
        self.ring[:self.filled] = seqs
        self.ring[RING:RING + self.filled] = secs

    def push(self, seqs: np.ndarray, secs: np.ndarray) -> None:
        f = self.filled
        self.remember(np.concatenate((self.ring[:f], seqs)), np.concatenate((self.ring[RING:RING + f], secs)))


# version code -> offsets of the sequence number, the export seconds, the domain, and the domain's width
_OFFSETS = {batchmod.V5: (16, 8, 20, 2), batchmod.V9: (12, 8, 16, 4), batchmod.IPFIX: (8, 4, 12, 4)}
_MODE = {batchmod.V9: 0, batchmod.V5: 1, batchmod.IPFIX: 2}  # seq_run's increment: 1, v5 count, records


def _signed(delta: int) -> int:
    return ((delta + (1 << 31)) & MASK) - (1 << 31)


class SequenceTracker:
    """Given a bound on the sources kept, count gaps, lost units, late datagrams, replays and
    resets of the export sequence numbers (see module doc) into ``lost`` and ``events``."""

    def __init__(self, max_sources: int = 4096) -> None:
        self.max_sources = max_sources
        self.lost: Counter = Counter()     # (site, exporter label, version key) -> units lost
        self.events: Counter = Counter()   # (site, exporter label, version key, event) -> datagrams
        self._sources: OrderedDict[tuple, _Source] = OrderedDict()
        # (site, exporter, version code) -> (source key, source) of its last in-order batch: the usual
        # batch then needs no read of its domain and one dict lookup (cleared when a source is forgotten)
        self._last: dict[tuple, tuple[tuple, _Source]] = {}

    def __len__(self) -> int:
        return len(self._sources)

    def observe_whole(self, batch: Received, vcode: int, label: str, site: str) -> None:
        """Given a batch of one exporter whose datagrams are all well-formed ones of one version
        (V5 or V9: no record counts needed), its label and the site, count as observe() does,
        without building per-datagram arrays when the batch is in order (the usual case)."""
        if self._in_order_c(batch, vcode, None, site):
            return
        n = len(batch)
        if n:
            self.observe(batch, np.arange(n), np.full(n, vcode), None, [label], site)

    def observe(self, batch: Received, rows: np.ndarray, vcode: np.ndarray, records: np.ndarray | None,
                labels: list[str], site: str, options: np.ndarray | None = None) -> None:
        """Given a batch, the indices of its datagrams to check (in arrival order), their version
        codes (batch.V5/V9/IPFIX, one per row), the data records each IPFIX row carried (-1 when
        unknown: the next datagram of its source restarts the check; None when no row is IPFIX),
        the exporter labels, the site and how many of those records were options data (None: 0),
        count what their sequence numbers say."""
        if len(rows) == 0:
            return
        if len(rows) == len(batch) and len(batch.exporters) == 1 and self._in_order(batch, vcode, records, site):
            return
        head = np.ndarray((len(batch),), _HEADER, buffer=batch.buf, strides=(batch.slot,))[rows]
        is5, is9 = vcode == batchmod.V5, vcode == batchmod.V9
        seq = np.where(is5, head["v5_seq"], np.where(is9, head["v9_seq"], head["ipfix_seq"])).astype(np.int64)
        secs = np.where(is5 | is9, head["secs59"], head["ipfix_secs"]).astype(np.int64)
        boot = np.where(is5 | is9, secs - head["uptime"].astype(np.int64) // 1000, -1)
        domain = np.where(is5, head["v5_engine"], np.where(is9, head["v9_domain"], head["ipfix_domain"])
                          ).astype(np.int64)
        inc = np.where(is5, head["count"].astype(np.int64), 1)
        flows = None
        if records is not None:
            inc = np.where(vcode == batchmod.IPFIX, records, inc)
            # flow records alone, for exporters whose sequence counts its own datagram's (-1: unknown)
            flows = inc if options is None else np.where(inc >= 0, inc - options, -1)
        exp = batch.exporter_index[rows]
        for (e, vc, dom), sel in batchmod.groups(exp, vcode, domain):
            version = batchmod.VERSION_KEYS[vc]
            key = (site, batch.exporters[e], version, dom)
            source = self._source(key)
            self._check(source, (site, labels[e], version), seq[sel], inc[sel], secs[sel], boot[sel],
                        flows[sel] if flows is not None and vc == batchmod.IPFIX else None)

    def _in_order(self, batch: Received, vcode: np.ndarray, records: np.ndarray | None, site: str) -> bool:
        # The usual batch, every datagram of one source in order: checked in C where the extension
        # is built, else on strided views of the header fields it needs (a few microseconds);
        # False sends it to the general check.
        v = int(vcode[0])
        if v not in _OFFSETS or not bool((vcode == v).all()):
            return False
        if _fastflow is not None:
            return self._in_order_c(batch, v, records, site)
        seq_at, secs_at, domain_at, domain_width = _OFFSETS[v]
        n, slot, buf = len(batch), batch.slot, batch.buf
        domain = np.ndarray((n,), f">u{domain_width}", buffer=buf, offset=domain_at, strides=(slot,))
        d0 = int(domain[0])
        if n > 1 and not bool((domain == d0).all()):
            return False
        source = self._sources.get((site, batch.exporters[0], batchmod.VERSION_KEYS[v], d0))
        if source is None or source.expected is None or source.counts_own:
            return False
        seq = np.ndarray((n,), ">u4", buffer=buf, offset=seq_at, strides=(slot,)).astype(np.uint32)
        if v == batchmod.V5:
            inc = np.ndarray((n,), ">u2", buffer=buf, offset=2, strides=(slot,)).astype(np.uint32)
        elif v == batchmod.IPFIX:
            if records is None or bool((records < 0).any()):
                return False
            inc = records.astype(np.uint32)
        else:
            inc = None
        last_inc = 1 if inc is None else int(inc[-1])
        if int(seq[0]) != source.expected:
            return False
        if n > 1:
            step = np.diff(seq)  # uint32: wraps modulo 2**32 like the sequence numbers
            if not bool((step == 1).all() if inc is None else (step == inc[:-1]).all()):
                return False
        self._sources.move_to_end((site, batch.exporters[0], batchmod.VERSION_KEYS[v], d0))
        secs = np.ndarray((n,), ">u4", buffer=buf, offset=secs_at, strides=(slot,))
        source.expected = (int(seq[-1]) + last_inc) & MASK
        source.last_n = last_inc
        if v != batchmod.IPFIX:
            uptime = int(np.ndarray((1,), ">u4", buffer=buf, offset=(n - 1) * slot + 4)[0])
            source.boot = int(secs[-1]) - uptime // 1000
        source.newest = max(source.newest, int(secs.max()))
        source.push(seq[-RING:].astype(np.int64), secs[-RING:].astype(np.int64))
        return True

    def _in_order_c(self, batch: Received, v: int, records: np.ndarray | None, site: str) -> bool:
        # _in_order in one call of the extension; the domain of the first datagram names the source.
        if _fastflow is None:
            return self._in_order(batch, np.full(len(batch), v), records, site)
        seq_at, secs_at, domain_at, width = _OFFSETS[v]
        mode = _MODE[v]
        if mode == 2 and (records is None or records.dtype != np.int64 or not records.flags.c_contiguous):
            return False
        hint = (site, batch.exporters[0], v)
        last = self._last.get(hint)
        if last is None:
            d0 = int.from_bytes(batch.buf.data[domain_at:domain_at + width], "big")
            key = (site, batch.exporters[0], batchmod.VERSION_KEYS[v], d0)
            source = self._sources.get(key)
        else:
            key, source = last
        if source is None or source.expected is None or source.counts_own:
            return False
        found = _fastflow.seq_run(batch.buf, batch.slot, len(batch.lengths), seq_at, secs_at, domain_at, width, mode,
                                  key[3], source.expected, source.ring, source.filled, records)
        if found is None:
            self._last.pop(hint, None)  # another domain, or not in order: found again after the general check
            return False
        if last is None:
            self._last[hint] = (key, source)
        self._sources.move_to_end(key)
        source.expected, last_secs, uptime, newest, source.filled = found
        if mode != 2:
            source.boot = last_secs - uptime // 1000
        elif records is not None:
            source.last_n = int(records[-1])
        if newest > source.newest:
            source.newest = newest
        return True

    def _source(self, key: tuple) -> _Source:
        source = self._sources.get(key)
        if source is None:
            if len(self._sources) >= self.max_sources:  # bounded: spoofed sources must not grow memory
                self._sources.popitem(last=False)
                self._last.clear()  # it may name the forgotten source
            source = self._sources[key] = _Source()
        else:
            self._sources.move_to_end(key)
        return source

    def _check(self, src: _Source, label: tuple, seq: np.ndarray, inc: np.ndarray, secs: np.ndarray,
               boot: np.ndarray, flows: np.ndarray | None = None) -> None:
        # ``flows``: IPFIX only, the flow records of each datagram (its sequence convention, see module doc).
        own = flows is not None and src.counts_own
        number, step = ((seq - flows) & MASK, flows) if own else (seq, inc)
        if src.expected is not None and bool((step >= 0).all()):
            want = np.empty_like(number)
            want[0] = src.expected
            want[1:] = (number[:-1] + step[:-1]) & MASK
            if bool((number == want).all()):  # the common case: everything in order
                src.expected = int((number[-1] + step[-1]) & MASK)
                src.last_n = int(inc[-1])
                src.boot = int(boot[-1])
                src.newest = max(src.newest, int(secs.max()))
                src.push(seq, secs)
                return
        ring = src.pairs()
        flow_list = flows.tolist() if flows is not None else [-1] * len(seq)
        for s, n, f, t, b in zip(seq.tolist(), inc.tolist(), flow_list, secs.tolist(), boot.tolist(), strict=True):
            number, step = ((s - f) & MASK, f) if src.counts_own else (s, n)
            if flows is not None and number != src.expected and self._follow_convention(src, s, f):
                number, step = ((s - f) & MASK, f) if src.counts_own else (s, n)
            event = None if src.counts_own and f < 0 else self._one(src, ring, number, s, t, b)
            if event is not None:
                self.events[(*label, event)] += 1
                if event == "gap":
                    self.lost[label] += _signed(number - src.expected)  # type: ignore[operator]
            if event in (None, "gap", "reset"):
                src.expected = (number + step) & MASK if step >= 0 else None
                src.last_n = n
                src.boot = b
            if event != "replay":
                ring.append((s, t))
                del ring[:-RING]
            src.newest = max(src.newest, t)
        src.remember([s for s, _ in ring], [t for _, t in ring])

    @staticmethod
    def _follow_convention(src: _Source, s: int, f: int) -> bool:
        # Given an IPFIX datagram off the expected number (its header's ``s``, its flow records ``f``), switch
        # the source to the other convention when that one puts it exactly there (see module doc) and
        # return True: it is then in order.
        if src.expected is None or src.last_n < 0 or f < 0:
            return False
        if src.counts_own:
            last = src.expected
            if s != (last + src.last_n) & MASK:
                return False
            src.counts_own, src.expected = False, s
        else:
            last = (src.expected - src.last_n) & MASK
            if s != (last + f) & MASK:
                return False
            src.counts_own, src.expected = True, last
        return True

    @staticmethod
    def _one(src: _Source, ring: list[tuple[int, int]], s: int, raw: int, t: int, b: int) -> str | None:
        # Return the event of one datagram (None: in order, or the first of its sequence): ``s`` is its
        # sequence number in the RFC's convention, ``raw`` the one in its header (what ``ring`` holds).
        if src.expected is None:
            return None
        delta = _signed(s - src.expected)
        if delta == 0:
            return None
        if delta > 0:
            return "gap"
        if b >= 0 and src.boot >= 0 and b > src.boot + BOOT_SLACK:
            return "reset"
        if (raw, t) in ring:
            return "replay"
        if t > src.newest:  # exported after everything seen so far, yet behind: a new sequence
            return "reset"
        if ring and _signed(raw - ring[0][0]) >= 0:
            return "late"
        if t + STALE_SLACK < src.newest:
            return "replay"
        return "reset"
