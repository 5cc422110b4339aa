"""What a malformed NetFlow/IPFIX datagram costs the collector: decode time of mutated datagrams.

    python bench/netflow_malformed.py [--datagrams 20000] [--seed 1]

The unit tests prove that mutated datagrams never raise and never hit the crash guard
(tests/unit/collectors/netflow/test_netflow_robustness.py); how long each one takes is measured
here, where timings belong. Each datagram is a softflowd-layout v5, v9 or IPFIX datagram with up to
8 random bytes overwritten and a random cut (the fuzz test's mutations), fed twice to a fresh
decoder (the second time its template is known), flushed and aggregated, on the numpy path and on
the compiled one. Reports per path the median, 99th percentile and maximum microseconds per mutated
datagram next to the same figure for the unmutated ones. No peer tool: this is a bound, not a race.
Then a hostile but well-formed case: with 4,000 templates of 40 exporters cached, a datagram whose one set
holds 360 IPFIX withdraw-all records (4 bytes each), fed 200 times; before the template cache kept an index
per observation domain, each record scanned the whole cache (about 250 ms a datagram, measured 2026-12-06).
The last lines are ``FIGURE withdraw_all_flood_ms_median <value>`` and
``FIGURE malformed_decode_max_ms_<numpy|compiled> <value>``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import struct
import sys
import time

from citydc.collectors.netflow import fastpath, synth
from citydc.collectors.netflow.aggregate import AgencyPrefixes, Aggregator
from citydc.collectors.netflow.decoder import Decoder

BASES = (synth.v5_datagrams(synth.random_flows(10, seed=1))[0],
         synth.v9_datagrams(synth.random_flows(10, seed=1), 9)[0],
         synth.v9_datagrams(synth.random_flows(10, seed=1), 10)[0])


def mutate(rng: random.Random, base: bytes) -> bytes:
    """Given a good datagram, return it with up to 8 random bytes overwritten and a random cut."""
    data = bytearray(base)
    for _ in range(rng.randrange(9)):
        pos = rng.randrange(1501)
        if pos < len(data):
            data[pos] = rng.randrange(256)
    cut = rng.randrange(1501)
    return bytes(data[: cut or len(data)])


def decode_seconds(data: bytes, compiled: bool) -> float:
    """Return the wall seconds to feed ``data`` twice to a fresh decoder, flush and aggregate."""
    dec, agg = Decoder(), Aggregator([AgencyPrefixes.build("a", ["10.0.0.0/8", "fd00::/8"])])
    if compiled:
        dec.use_compiled(agg)
    started = time.perf_counter()
    dec.feed(data, "192.0.2.1", "siwei", 0.0)
    dec.feed(data, "192.0.2.1", "siwei", 0.0)
    for batch in dec.flush():
        agg.add(batch)
    return time.perf_counter() - started


def withdraw_all_flood_ms() -> float:
    """Return the median milliseconds to decode a datagram of 360 withdraw-all records against a full cache."""
    dec = Decoder()
    templates = synth.ipfix_message(synth.ipfix_set(2, b"".join(struct.pack("!HHHHHH", 256 + i, 2, 1, 4, 2, 4)
                                                                for i in range(100))))
    for e in range(40):  # 100 templates (two 4-byte fields) from each of 40 exporters
        dec.feed(templates, f"192.0.2.{e + 1}", "siwei", 0.0)
    flood = synth.ipfix_message(synth.ipfix_set(2, struct.pack("!HH", 2, 0) * 360))
    times = []
    for _ in range(200):
        started = time.perf_counter()
        dec.feed(flood, "192.0.2.200", "siwei", 1.0)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datagrams", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if not 100 <= a.datagrams <= 1_000_000:
        ap.error("--datagrams 100-1000000")
    paths = [False, True] if fastpath.available() else [False]
    deadline = time.monotonic() + 300  # bounded in count (--datagrams) and in time
    print(f"# {a.datagrams} mutated datagrams per path (v5, v9, IPFIX alike), each fed twice, flushed, aggregated")
    print(f"{'path':9} {'kind':8} {'median_us':>10} {'p99_us':>10} {'max_us':>10}")
    figures = {}
    for compiled in paths:
        name = "compiled" if compiled else "numpy"
        rng = random.Random(a.seed)
        good = [decode_seconds(BASES[k % 3], compiled) for k in range(300)]
        bad = []
        for _ in range(a.datagrams):
            if time.monotonic() > deadline:
                break
            bad.append(decode_seconds(mutate(rng, rng.choice(BASES)), compiled))
        for kind, times in (("good", good), ("mutated", bad)):
            us = sorted(t * 1e6 for t in times)
            print(f"{name:9} {kind:8} {statistics.median(us):10.1f} {us[int(len(us) * 0.99) - 1]:10.1f} "
                  f"{us[-1]:10.1f}")
        figures[name] = max(bad) * 1e3
    print(f"FIGURE withdraw_all_flood_ms_median {withdraw_all_flood_ms():.3f}")
    for name, value in figures.items():
        print(f"FIGURE malformed_decode_max_ms_{name} {value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
