"""The compiled path (fastpath.py, _fastflow.c) against the numpy path: the same batches fed to
both decoders must give the same aggregates, talker summaries and decode counters."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.collectors.netflow import fastpath, synth
from citydc.collectors.netflow.aggregate import AgencyPrefixes, Aggregator
from citydc.collectors.netflow.decoder import Decoder
from citydc.collectors.netflow.receive import Received

# Built by `pip install -e .` and the wheel; a missing build must fail here, not skip.
assert fastpath.available(), "the _fastflow extension is not built: run `pip install -e .`"

FLOWS = synth.random_flows(900, seed=7)
AGENCIES = [AgencyPrefixes.build("civil-affairs", ["10.0.0.0/26", "10.0.0.32/27"]),
            AgencyPrefixes.build("police", ["10.0.1.0/24", "fd00::/8"]),
            AgencyPrefixes.build("v6-only", ["2001:db8:1::/48"])]
# More than 16 interval bounds: the C side binary-searches instead of counting.
MANY = [*AGENCIES, *(AgencyPrefixes.build(f"office-{i}", [f"10.0.{i}.0/25", f"10.{i}.0.0/16"]) for i in range(12))]


def ipfix(*sets: bytes, domain: int = 1) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), 0, 0, domain) + body


def v9(*sets: bytes, source: int = 0) -> bytes:
    return struct.pack("!HHIIII", 9, len(sets), 0, 0, 0, source) + b"".join(sets)


def a_set(set_id: int, body: bytes) -> bytes:
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def template(tid: int, fields: list[tuple[int, int]]) -> bytes:
    return struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)


# IPv6 (27, 28 addresses), reduced-size counters (1: 3 bytes, 2: 2 bytes), 8-byte ifindexes.
V6_FIELDS = [(27, 16), (28, 16), (1, 3), (2, 2), (4, 1), (7, 2), (11, 2), (10, 8), (14, 4)]
# ICMP type/code instead of ports, totals instead of deltas, a per-record sampling interval.
ICMP_FIELDS = [(8, 4), (12, 4), (85, 8), (86, 4), (4, 1), (32, 2), (34, 4), (10, 2), (14, 2)]


def v6_record(rng: random.Random) -> bytes:
    src = (0xFD00 << 112) | rng.randrange(1 << 64) if rng.random() < 0.5 else (0x20010DB80001 << 80) | rng.randrange(9)
    dst = rng.choice([(0x20010DB80001 << 80) | 5, (0xFD12 << 112) | 7, (0x2001 << 112) | rng.randrange(4)])
    return (src.to_bytes(16, "big") + dst.to_bytes(16, "big") + rng.randrange(1 << 24).to_bytes(3, "big")
            + struct.pack("!HBHHQI", rng.randrange(1 << 16), rng.choice([6, 17, 58]), rng.choice([443, 53, 9999]),
                          rng.randrange(1 << 16), rng.choice([1, 2, 70000]), rng.choice([0, 3, 1 << 20])))


def icmp_record(rng: random.Random) -> bytes:
    return struct.pack("!IIQIBHIHH", 0x0A000000 | rng.randrange(1 << 10), 0x0A000100 | rng.randrange(256),
                       rng.randrange(1 << 32), rng.randrange(1 << 20), rng.choice([1, 6, 17, 250]),
                       rng.randrange(1 << 16), rng.choice([0, 0, 10, 100]), rng.randrange(5), 0)


def variable_ipfix(rng: random.Random) -> bytes:
    # IPFIX template 400 with a variable-length field (interfaceName, 82): the normalize path.
    tmpl = a_set(2, template(400, [(8, 4), (12, 4), (82, 65535), (1, 4), (2, 4), (10, 4)]))
    recs = b""
    for _ in range(rng.randrange(1, 5)):
        name = bytes(rng.randrange(97, 123) for _ in range(rng.randrange(0, 9)))
        recs += struct.pack("!II", 0x0A000001 + rng.randrange(100), 0x0A000140) + bytes([len(name)]) + name
        recs += struct.pack("!III", rng.randrange(1 << 16), rng.randrange(1, 50), rng.randrange(3))
    return ipfix(tmpl, a_set(400, recs), domain=9)


def stream(rng: random.Random) -> list[tuple[bytes, str]]:
    """Every kind of datagram the decoders know, from several exporters, some malformed."""
    out = [(d, "192.0.2.1") for d in synth.v5_datagrams(FLOWS)]
    out += [(d, "192.0.2.1") for d in synth.v5_datagrams(FLOWS, per_datagram=7, sampling=0x4000 | 64)]
    out += [(d, "192.0.2.2") for d in synth.v9_datagrams(FLOWS, 9, template_every=7,
                                                         prefix=synth.options_v9(260, 16))]
    out += [(d, "192.0.2.3") for d in synth.v9_datagrams(FLOWS, 10, template_every=5, domain=4)]
    v6_tmpl = a_set(0, template(500, V6_FIELDS))
    icmp_tmpl = a_set(0, template(501, ICMP_FIELDS))
    for i in range(40):
        out.append((v9(v6_tmpl if i % 9 == 0 else b"", a_set(500, b"".join(v6_record(rng) for _ in range(5)) + b"\0"),
                       source=3), "2001:db8::9"))
        out.append((v9(icmp_tmpl, a_set(501, b"".join(icmp_record(rng) for _ in range(4)))), "192.0.2.4"))
        out.append((variable_ipfix(rng), "192.0.2.5"))
    # malformed: truncated, cut sets, flipped bytes, unknown versions, data before any template
    bad = []
    for data, exporter in rng.sample(out, 60):
        data = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        bad.append((bytes(data[:rng.randrange(len(data) + 1)]), exporter))
    bad.append((v9(a_set(777, b"\1" * 40)), "192.0.2.6"))
    out += bad
    rng.shuffle(out)
    return out


def run(datagrams: list[tuple[bytes, str]], compiled: bool, batch: int, flush_every: int,
        agencies: list[AgencyPrefixes], talkers_k: int = 64) -> tuple:
    now = [0.0]
    agg = Aggregator(agencies, clock=lambda: now[0], talkers_k=talkers_k, max_interfaces=4, talker_prefix_v4=30,
                     talker_prefix_v6=48)
    dec = Decoder(sampling={"192.0.2.1": 2, "192.0.2.3": 4})
    if compiled:
        dec.use_compiled(agg)
    assert dec.path == ("compiled" if compiled else "numpy")
    for n, start in enumerate(range(0, len(datagrams), batch)):
        now[0] = n * 0.5
        dec.feed_batch(Received.of(datagrams[start:start + batch]), "siwei", now[0])
        if n % flush_every == flush_every - 1:
            for b in dec.flush():
                agg.add(b)
    for b in dec.flush():
        agg.add(b)
    talkers = {key: [(start, pane.keys.tolist(), pane.counts.tolist(), pane.error, pane.total)
                     for start, pane in window.panes] for key, window in agg.talkers.items()}
    return (agg.records, dict(agg.interfaces), dict(agg.agency), dict(agg.protocol), talkers,
            dict(dec.stats.records), dict(dec.stats.datagrams), dict(dec.stats.errors),
            dict(dec.stats.unknown_template_sets), agg.top_talkers("siwei"), dict(dec.sequences.events),
            dict(dec.sequences.lost))


@pytest.mark.parametrize(("seed", "batch", "flush_every", "agencies"),
                         [(1, 64, 1, AGENCIES), (2, 200, 3, AGENCIES), (3, 1, 50, AGENCIES), (4, 512, 1, MANY)])
def test_compiled_path_aggregates_exactly_like_numpy(seed: int, batch: int, flush_every: int,
                                                     agencies: list[AgencyPrefixes]) -> None:
    data = stream(random.Random(seed))
    want = run(data, False, batch, flush_every, agencies)
    got = run(data, True, batch, flush_every, agencies)
    names = ["records", "interfaces", "agency", "protocol", "talkers", "decoded", "datagrams", "errors", "held", "top",
             "sequence_events", "sequence_lost"]
    for name, w, g in zip(names, want, got, strict=True):
        assert g == w, name
    # The comparison is not vacuous: every aggregate and both address families were exercised.
    records, interfaces, agency, protocol, talkers, *_ = want
    assert records > 2000 and len(interfaces) > 20 and {k[1] for k in agency} >= {a.name for a in AGENCIES}
    assert {k[1] for k in protocol} >= {"tcp", "udp", "icmp", "ipv6-icmp", "other"}
    assert set(talkers) == {("siwei", 4), ("siwei", 6)}
    assert {k[2] for k in interfaces} >= {"other", "70000"}
    # the shuffled stream is full of sequence gaps, late datagrams and copies (the malformed ones)
    assert {k[3] for k in want[10]} >= {"gap", "late"} and sum(want[11].values()) > 0


def test_whole_v5_batches_in_c_match_numpy() -> None:
    # One exporter's v5 batches: the C shortcut (v5_batch/add_v5) takes the uniform ones, the
    # general path the rest (mixed sampling intervals, partial and broken datagrams).
    rng = random.Random(8)
    full = synth.v5_datagrams(FLOWS)
    sampled = synth.v5_datagrams(FLOWS, per_datagram=11, sampling=0x4000 | 100)
    data = [(d, "192.0.2.1") for d in full + sampled + full[:5] + sampled[:3] + [full[0][:100], full[1] + b"x"]]
    batches = [data[:len(full)], data[len(full):len(full) + len(sampled)], data[len(full) + len(sampled):]]
    rng.shuffle(batches[2])
    flat = [d for b in batches for d in b]
    sizes = [len(b) for b in batches]
    for compiled in (False, True):
        now = 0.0
        agg = Aggregator(AGENCIES, clock=lambda: 0.0)
        dec = Decoder(sampling={"192.0.2.1": 3})
        if compiled:
            dec.use_compiled(agg)
        start = 0
        for size in sizes:
            dec.feed_batch(Received.of(flat[start:start + size]), "siwei", now)
            start += size
        for b in dec.flush():
            agg.add(b)
        result = (agg.records, dict(agg.interfaces), dict(agg.agency), dict(agg.protocol), dict(dec.stats.records),
                  dict(dec.stats.datagrams), dict(dec.stats.errors), agg.top_talkers("siwei"))
        if not compiled:
            want = result
    assert result == want
    assert want[0] == 2 * len(FLOWS) + 5 * 30 + 3 * 11 and want[6]


def test_agencies_reassigned_between_batches_match_numpy() -> None:
    data = stream(random.Random(5))
    results = []
    for compiled in (False, True):
        agg = Aggregator([], clock=lambda: 0.0)
        dec = Decoder()
        if compiled:
            dec.use_compiled(agg)
        for i in range(0, len(data), 100):
            if i == 300:
                agg.agencies = AGENCIES  # as bench/netflow.py does after build()
            dec.feed_batch(Received.of(data[i:i + 100]), "siwei", 0.0)
            for b in dec.flush():
                agg.add(b)
        results.append((agg.records, dict(agg.interfaces), dict(agg.agency), dict(agg.protocol)))
    assert results[0] == results[1]
    assert results[0][2]


def test_acc_rejects_runs_outside_the_buffer() -> None:
    dec = Decoder()
    agg = Aggregator()
    dec.use_compiled(agg)
    sink = dec._pending
    from citydc.collectors.netflow import v5
    buf = np.zeros(100, np.uint8)
    for starts, counts in (([60], [1]), ([-1], [1]), ([0], [3]), ([0], [-1]), ([2**62], [2**40])):
        with pytest.raises(ValueError, match="leave the"):
            sink.runs(("s", "e", 5, 0, 1), v5.TEMPLATE, 1, buf, np.array(starts), np.array(counts))
    with pytest.raises(ValueError, match="grid"):
        sink.grid(("s", "e", 5, 0, 1), v5.TEMPLATE, 1, buf, 0, 48, 10, 1)
    with pytest.raises(ValueError, match="layout"):
        fastpath._fastflow.Acc(b"\0" * 8, 1, False, 0, 0, b"", b"", 0)


def same(got: object, want: object) -> bool:
    """Equal, except that sums past 2**53 may differ by float rounding: the numpy path adds
    float64 (np.bincount), the compiled path exact integers (mutated counters reach 2**60)."""
    if isinstance(want, dict) and isinstance(got, dict):
        return want.keys() == got.keys() and all(same(got[k], want[k]) for k in want)
    if isinstance(want, list | tuple) and isinstance(got, list | tuple):
        return len(want) == len(got) and all(same(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, int | float) and isinstance(got, int | float) and abs(want) > 2**53:
        return abs(got - want) <= abs(want) * 2**-40
    return got == want


_BASES = [synth.v5_datagrams(FLOWS)[0], synth.v9_datagrams(FLOWS, 9)[0], synth.v9_datagrams(FLOWS, 10)[0],
          v9(a_set(0, template(500, V6_FIELDS)), a_set(500, v6_record(random.Random(1)) * 3)),
          v9(a_set(0, template(501, ICMP_FIELDS)), a_set(501, icmp_record(random.Random(2)) * 3)),
          variable_ipfix(random.Random(3))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(range(len(_BASES))),
                          st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 255)), max_size=8),
                          st.integers(0, 1500)), min_size=1, max_size=6))
def test_fuzz_compiled_path_never_crashes_and_matches_numpy(mutations: list) -> None:
    datagrams = []
    for base, flips, cut in mutations:
        data = bytearray(_BASES[base])
        for pos, value in flips:
            if pos < len(data):
                data[pos] = value
        datagrams.append((bytes(data[:cut or len(data)]), "192.0.2.1"))
    datagrams += datagrams  # the second copy finds the (mutated) templates known
    want = run(datagrams, False, 4, 1, AGENCIES)
    got = run(datagrams, True, 4, 1, AGENCIES)
    assert same(got, want)
    assert not any(reason == "internal_error" for (_, _, reason) in got[7])


def test_the_running_path_is_exported_as_a_metric() -> None:
    from citydc.collectors.netflow.metrics import NetflowMetrics
    for compiled in (False, True):
        dec, agg = Decoder(), Aggregator()
        if compiled:
            dec.use_compiled(agg)
        fams = {f.name: f for f in NetflowMetrics(dec, agg).collect()}
        (sample,) = fams["citydc_netflow_decoder_info"].samples
        assert sample.labels == {"path": "compiled" if compiled else "numpy"} and sample.value == 1


def reference_dup(batch: Received, heads, sets) -> list[bool]:
    """The dup flag as specified: a template set is a dup when its datagram's template sets equal,
    id for id and byte for byte, those of the previous datagram of the same source that had any."""
    buf = batch.buf.tobytes()
    version = np.where(heads.vcode[sets.dg] == 1, 9, 10)
    special = ((version == 9) & (sets.set_id <= 1)) | ((version == 10) & np.isin(sets.set_id, [2, 3]))
    groups: dict[int, list[tuple[int, bytes]]] = {}
    for i in np.flatnonzero(special).tolist():
        groups.setdefault(int(sets.dg[i]), []).append((int(sets.set_id[i]), buf[sets.start[i]:sets.stop[i]]))
    last: dict[tuple, list] = {}
    dup_of_dg = {}
    for dg in sorted(groups):
        source = (int(batch.exporter_index[dg]), int(version[np.flatnonzero(sets.dg == dg)[0]]), int(heads.domain[dg]))
        dup_of_dg[dg] = last.get(source) == groups[dg]
        last[source] = groups[dg]
    return [bool(special[i]) and dup_of_dg[int(sets.dg[i])] for i in range(len(sets.dg))]


def check_walk(datagrams: list[tuple[bytes, str]]) -> tuple:
    from citydc.collectors.netflow import batch as batchmod
    batch = Received.of(datagrams)
    want_heads = batchmod.read_headers(batch)
    want_sets = batchmod.walk_sets(batch, want_heads)
    heads, sets = fastpath.walk(batch)
    for name in ("vcode", "count", "domain", "sampling", "reason"):
        assert np.array_equal(getattr(heads, name), getattr(want_heads, name)), name
    for name in ("dg", "set_id", "start", "stop"):
        assert np.array_equal(getattr(sets, name), getattr(want_sets, name)), name
    version = np.where(heads.vcode[sets.dg] == 1, 9, 10)
    assert np.array_equal(sets.version, version)
    assert sets.dup.tolist() == reference_dup(batch, heads, sets)
    return heads, sets


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_compiled_walk_finds_what_the_numpy_walk_finds(seed: int) -> None:
    data = stream(random.Random(seed))
    dups = 0
    for start in range(0, len(data), 150):
        _, sets = check_walk(data[start:start + 150])
        dups += int(sets.dup.sum())
    assert dups > 10  # exporters resending templates were seen as such


def test_repeated_changed_and_restored_templates_decode_like_numpy() -> None:
    # Template 300 announced as layout A, then B, then A again inside one batch, each followed by
    # its data: the dup flags must never let a changed layout be skipped.
    a = template(300, [(8, 4), (12, 4), (1, 4), (2, 4), (10, 2), (14, 2)])
    b = template(300, [(12, 4), (8, 4), (2, 4), (1, 4), (14, 2), (10, 2)])
    rec = struct.pack("!IIIIHH", 0x0A000001, 0x0A000102, 1500, 3, 1, 2)
    data = []
    for layout in (a, a, b, b, a, a, b):
        data.append((v9(a_set(0, layout), a_set(300, rec * 4), source=2), "192.0.2.7"))
        data.append((ipfix(a_set(2, layout), a_set(300, rec * 2), domain=2), "192.0.2.7"))
    _, sets = check_walk(data)
    assert sets.dup.sum() == 6  # per version: the repeat in each of the runs a a, b b, a a
    for batch in (1, 3, len(data)):
        assert run(data, True, batch, 1, AGENCIES) == run(data, False, batch, 1, AGENCIES)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(range(len(_BASES))),
                          st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 255)), max_size=8),
                          st.integers(0, 1500), st.sampled_from(["192.0.2.1", "2001:db8::1"])),
                min_size=1, max_size=8))
def test_fuzz_compiled_walk_matches_numpy(mutations: list) -> None:
    datagrams = []
    for base, flips, cut, exporter in mutations:
        data = bytearray(_BASES[base])
        for pos, value in flips:
            if pos < len(data):
                data[pos] = value
        datagrams.append((bytes(data[:cut or len(data)]), exporter))
    check_walk(datagrams + datagrams)


def test_walk_rejects_a_batch_that_does_not_fit_its_buffer() -> None:
    with pytest.raises(ValueError, match="slot"):
        fastpath._fastflow.walk(np.zeros(100, np.uint8), 64, np.array([70], np.int64), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="within the buffer"):
        fastpath._fastflow.walk(np.zeros(100, np.uint8), 64, np.array([10, 10], np.int64), np.zeros(2, np.int64))
