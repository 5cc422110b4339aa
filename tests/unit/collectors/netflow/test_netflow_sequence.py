"""Listed exporters only, and export sequence numbers (sequence.py): gaps, late datagrams, replays and
restarts, counted the same way on the compiled and the numpy path."""

from __future__ import annotations

import random
import struct

import pytest
from prometheus_client import CollectorRegistry

from citydc.collectors.netflow import fastpath, sequence, synth
from citydc.collectors.netflow.aggregate import AgencyPrefixes, Aggregator
from citydc.collectors.netflow.collector import listed_addresses
from citydc.collectors.netflow.decoder import Decoder
from citydc.collectors.netflow.metrics import NetflowMetrics
from citydc.collectors.netflow.receive import Received
from citydc.collectors.netflow.sequence import RING, SequenceTracker
from citydc.config.models import Netflow

assert fastpath.available(), "the _fastflow extension is not built: run `pip install -e .`"

FLOWS = synth.random_flows(600, seed=3)
V5 = synth.v5_datagrams(FLOWS)            # 20 datagrams of 30 flows, sequence 0, 30, 60, ...
V9 = synth.v9_datagrams(FLOWS, 9)         # sequence 0, 1, 2, ...
IPFIX = synth.v9_datagrams(FLOWS, 10)     # sequence 0, 30, 60, ... (records)
A, B = "192.0.2.1", "192.0.2.66"


@pytest.fixture(autouse=True, params=["seq_run", "numpy"])
def in_order_check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    # Every test runs with the in-order check in C (_fastflow.seq_run) and with its numpy fallback
    # (an install without the extension): both must count the same.
    if request.param == "numpy":
        monkeypatch.setattr(sequence, "_fastflow", None)
    return request.param


def decoder(compiled: bool, listed: set[str] | None = None) -> tuple[Decoder, Aggregator]:
    agg = Aggregator([AgencyPrefixes.build("x", ["10.0.0.0/8"])])
    dec = Decoder(listed=listed)
    if compiled:
        dec.use_compiled(agg)
    return dec, agg


def feed(dec: Decoder, datagrams: list[tuple[bytes, str]], batch: int = 8) -> None:
    for start in range(0, len(datagrams), batch):
        dec.feed_batch(Received.of(datagrams[start:start + batch]), "siwei", 0.0)


def events(dec: Decoder) -> dict:
    return dict(dec.sequences.events)


def restamp(data: bytes, version: int, *, seq: int | None = None, secs: int | None = None,
            uptime: int | None = None) -> bytes:
    # Rewrite header fields of a synth datagram (as an exporter would send them).
    out = bytearray(data)
    seq_at, secs_at = {5: (16, 8), 9: (12, 8), 10: (8, 4)}[version]
    if seq is not None:
        out[seq_at:seq_at + 4] = struct.pack("!I", seq)
    if secs is not None:
        out[secs_at:secs_at + 4] = struct.pack("!I", secs)
    if uptime is not None and version != 10:  # IPFIX has no uptime (its export time is at 4)
        out[4:8] = struct.pack("!I", uptime)
    return bytes(out)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize(("version", "grams", "unit"), [(5, V5, 30), (9, V9, 1), (10, IPFIX, 30)])
def test_in_order_stream_has_no_events_and_a_gap_counts_its_units(compiled: bool, version: int, grams: list,
                                                                  unit: int) -> None:
    dec, _ = decoder(compiled)
    feed(dec, [(d, A) for d in grams])
    assert events(dec) == {} and dict(dec.sequences.lost) == {}
    dec, _ = decoder(compiled)
    # datagrams 5 and 6 lost on the way: v5 counts 60 flows, v9 2 datagrams, IPFIX 60 records
    feed(dec, [(d, A) for i, d in enumerate(grams) if i not in (5, 6)])
    key = ("siwei", A, str(version))
    assert events(dec) == {(*key, "gap"): 1}
    assert dict(dec.sequences.lost) == {key: 2 * unit}


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize(("version", "grams"), [(5, V5), (9, V9), (10, IPFIX)])
def test_a_replayed_datagram_is_a_replay_and_a_reordered_one_is_late(compiled: bool, version: int,
                                                                     grams: list) -> None:
    dec, _ = decoder(compiled)
    stream = [(d, A) for d in grams]
    stream.insert(12, stream[4])                  # replayed
    stream[15], stream[16] = stream[16], stream[15]  # reordered: a gap of one, then the late one
    feed(dec, stream, batch=5)
    key = ("siwei", A, str(version))
    assert events(dec) == {(*key, "replay"): 1, (*key, "gap"): 1, (*key, "late"): 1}
    # Counted, not dropped: every datagram's records were decoded (the replay's twice).
    assert dec.stats.records[key] == (len(grams) + 1) * 30


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("version", [5, 9, 10])
def test_a_restarted_exporter_is_one_reset_not_a_flood_of_replays(compiled: bool, version: int) -> None:
    grams = {5: V5, 9: V9, 10: IPFIX}[version]
    dec, _ = decoder(compiled)
    first = [(restamp(d, version, secs=1_700_000_000 + i, uptime=1000 + 1000 * i), A) for i, d in enumerate(grams)]
    # The exporter restarts 100 s later: sequence from 0 again, uptime from 0 again.
    again = [(restamp(d, version, secs=1_700_000_100 + i, uptime=10 + 1000 * i), A) for i, d in enumerate(grams)]
    feed(dec, first + again)
    assert events(dec) == {("siwei", A, str(version), "reset"): 1}
    assert dict(dec.sequences.lost) == {}


@pytest.mark.parametrize("compiled", [False, True])
def test_an_old_copy_beyond_the_remembered_window_is_a_replay_not_a_reset(compiled: bool) -> None:
    grams = synth.v9_datagrams(synth.random_flows(30 * (RING + 20), seed=1), 9)
    stream = [(restamp(d, 9, secs=1_700_000_000 + i // 10), A) for i, d in enumerate(grams)]
    feed(dec := decoder(compiled)[0], [*stream, stream[0]])
    assert events(dec) == {("siwei", A, "9", "replay"): 1}


def test_sequence_numbers_wrap_at_2_to_the_32() -> None:
    grams = [restamp(d, 9, seq=(0xFFFFFFFE + i) & 0xFFFFFFFF) for i, d in enumerate(V9[:6])]
    dec, _ = decoder(False)
    feed(dec, [(d, A) for d in grams], batch=2)
    assert events(dec) == {}


def test_sources_are_separate_and_bounded() -> None:
    tracker = SequenceTracker(max_sources=8)
    dec = Decoder(sequences=tracker)
    for i in range(50):  # 50 spoofed sources: memory stays at the bound, nothing is counted
        feed(dec, [(d, f"198.51.100.{i}") for d in V9[:3]])
    assert len(tracker) == 8 and events(dec) == {}
    # two exporters interleaved in one batch are two sequences, both in order
    dec = Decoder()
    feed(dec, [x for pair in zip([(d, A) for d in V9], [(d, B) for d in V9], strict=True) for x in pair], batch=16)
    assert events(dec) == {}


@pytest.mark.parametrize("compiled", [False, True])
def test_unlisted_sources_are_dropped_before_decoding_and_counted(compiled: bool) -> None:
    dec, agg = decoder(compiled, listed={A})
    mixed = [(d, B if i % 3 == 1 else A) for i, d in enumerate(V9)]
    feed(dec, mixed, batch=7)
    feed(dec, [(d, B) for d in V5])  # batches of only the unlisted source
    for b in dec.flush():
        agg.add(b)
    dropped = sum(1 for _, e in mixed if e == B) + len(V5)
    assert dict(dec.stats.dropped) == {("siwei", B, "unknown_exporter"): dropped}
    # Only A's datagrams were decoded: nothing from B in any counter or aggregate.
    assert {k[1] for k in dec.stats.datagrams} == {A} and {k[1] for k in agg.interfaces} == {A}
    assert dec.stats.datagrams[("siwei", A, "9")] == len(mixed) - sum(1 for _, e in mixed if e == B)
    # Dropping the unlisted datagrams in between is not a gap of A's sequence... but A's own
    # missing ones are (every third datagram went to B).
    assert {k[3] for k in events(dec)} == {"gap"}


def test_unlisted_source_labels_are_bounded() -> None:
    dec = Decoder(listed={A})
    for i in range(200):
        feed(dec, [(V9[0], f"198.51.100.{i}")])
    assert len(dec.stats.dropped) == 65 and dec.stats.dropped[("siwei", "other", "unknown_exporter")] == 200 - 64


def test_same_events_on_both_paths_for_a_random_messy_stream() -> None:
    rng = random.Random(5)
    stream = [(d, A) for d in V5] + [(d, B) for d in V9] + [(d, "192.0.2.3") for d in IPFIX]
    for _ in range(40):  # replays, drops and swaps everywhere
        i, j = rng.randrange(len(stream)), rng.randrange(len(stream))
        op = rng.randrange(3)
        if op == 0:
            stream.insert(j, stream[i])
        elif op == 1:
            del stream[i]
        else:
            stream[i], stream[j] = stream[j], stream[i]
    got = []
    for compiled in (False, True):
        dec, _ = decoder(compiled)
        feed(dec, stream, batch=9)
        got.append((events(dec), dict(dec.sequences.lost), dict(dec.stats.records)))
    assert got[0] == got[1]
    assert {k[3] for k in got[0][0]} >= {"gap", "replay"}


def test_listed_addresses_from_config() -> None:
    cfg = Netflow.model_validate({"exporters": [{"address": "10.0.0.1"}, {"address": "2001:DB8::0001"}]})
    assert listed_addresses(cfg) == {"10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1"}
    assert listed_addresses(cfg.model_copy(update={"accept_unlisted": True})) is None
    assert listed_addresses(Netflow()) is None
    with pytest.raises(ValueError, match="source IP address"):
        Netflow.model_validate({"exporters": [{"address": "router1.example"}]})


def test_metrics_export_drops_and_sequence_events() -> None:
    dec, agg = decoder(False, listed={A})
    feed(dec, [(d, A) for i, d in enumerate(V9) if i != 3] + [(V9[1], A), (V9[0], B)])
    registry = CollectorRegistry()
    registry.register(NetflowMetrics(dec, agg, sites=["siwei"]))
    get = registry.get_sample_value
    assert get("citydc_netflow_dropped_datagrams_total",
               {"site": "siwei", "exporter": B, "reason": "unknown_exporter"}) == 1
    assert get("citydc_netflow_sequence_lost_total", {"site": "siwei", "exporter": A, "version": "v9"}) == 1
    for event in ("gap", "replay"):
        assert get("citydc_netflow_sequence_events_total",
                   {"site": "siwei", "exporter": A, "version": "v9", "event": event}) == 1


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("version", [5, 9])
def test_a_restart_within_the_same_second_is_told_by_the_boot_time(compiled: bool, version: int) -> None:
    # Same export second as the last datagram before the restart, but sysUptime starts again at 0:
    # only the boot time (export seconds - uptime) shows that this is a new exporter life.
    grams = {5: V5, 9: V9}[version]
    dec, _ = decoder(compiled)
    first = [(restamp(d, version, secs=1_700_000_000, uptime=600_000 + i), A) for i, d in enumerate(grams)]
    again = [(restamp(d, version, secs=1_700_000_000, uptime=5 + i), A) for i, d in enumerate(grams)]
    feed(dec, first + again)
    assert events(dec) == {("siwei", A, str(version), "reset"): 1}


@pytest.mark.parametrize("version", [5, 9, 10])
def test_the_ring_and_counts_match_between_the_c_and_numpy_in_order_checks(version: int,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    grams = synth.v9_datagrams(synth.random_flows(30 * 150, seed=5), version) if version != 5 else \
        synth.v5_datagrams(synth.random_flows(30 * 150, seed=5))
    rng = random.Random(7)
    stream = [(restamp(d, version, secs=1_700_000_000 + i // 4), A) for i, d in enumerate(grams)]
    for _ in range(6):  # a few replays, reorders and losses among long in-order runs
        i = rng.randrange(10, len(stream) - 2)
        stream.insert(i, stream[rng.randrange(0, i)])
        stream[i + 1], stream[i + 2] = stream[i + 2], stream[i + 1]
        del stream[rng.randrange(10, len(stream))]
    states = []
    for fast in (sequence._fastflow, None):
        monkeypatch.setattr(sequence, "_fastflow", fast)
        dec, _ = decoder(True)
        feed(dec, stream, batch=9)
        (src,) = dec.sequences._sources.values()
        states.append((events(dec), dict(dec.sequences.lost), src.expected, src.boot, src.newest, src.pairs()))
    assert states[0] == states[1]
    assert len(states[0][-1]) == RING and states[0][0]  # the ring is full and something was counted


def test_two_domains_of_one_exporter_in_alternate_batches_are_two_sequences() -> None:
    # v9 source ids 1 and 2 of one exporter, each in order, a batch each in turn; then one gap in 2.
    def domain(d: bytes, source_id: int) -> bytes:
        return d[:16] + struct.pack("!I", source_id) + d[20:]
    # Source 2's batch always carries the sequence numbers source 1 expects next: only the domain
    # tells them apart.
    one, two = [domain(d, 1) for d in V9], [domain(d, 2) for d in V9[4:]]
    dec, _ = decoder(True)
    for start in range(0, len(V9), 4):
        feed(dec, [(d, A) for d in one[start:start + 4]])
        feed(dec, [(d, A) for i, d in enumerate(two[start:start + 4], start) if i != 9])
    assert events(dec) == {("siwei", A, "9", "gap"): 1}
    assert dict(dec.sequences.lost) == {("siwei", A, "9"): 1}
