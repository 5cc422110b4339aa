"""Security-log benchmark, side by side in one run (issues 6 and 10).

(a) Elasticsearch: events/s delivered by citydc's shipper (spool -> Shipper -> ElasticsearchStore.put
    in the shipper's batches) against the engine's own limit: the same NDJSON bytes, pre-built, sent
    with the client's ``bulk`` in the same request sizes. Both sides: the same events, the same
    request parameters (no refresh, so the index's 1 s refresh_interval; the same response
    filter_path), one request in flight, fresh indices from the same template for every run.
    Untimed rounds of both sides first: at least ten, then on until the cluster stops getting faster
    (a freshly started one needed about eight; see ``warm_up``). After every run, timed or not, its
    indices are refreshed and deleted untimed (``settle``), so each run, of either side, starts on a
    cluster with no bench index and no indexing left over from the run before. Then 40 pairs of
    40,000-event runs; the order of the
    sides alternates from pair to pair (ABBA), so drift in the machine's load (shared by other work)
    cancels within a pair, and the ratio is the interquartile mean of the paired ratios (shipper /
    plain bulk per pair, the lowest and highest quarter dropped: ``trimmed_mean``), so a few pairs hit
    by other work on the machine do not move it; the throughput over all pairs (``pooled_ratio``, the
    previous figure) is printed for information. ``--compare-full-parse`` adds, in
    the same runs, the shipper parsing every spool line in full (the read path before
    spool_scan.py). ``store.put`` alone and ``refresh="wait_for"`` on every batch are measured once.
(b) SQLite (bench/seclog_sqlite.py): the pipeline emit() -> spool -> shipper -> SqliteStore as a
    throughput ratio against a plain ``executemany`` of the same rows into the same schema (FTS
    included), with the same durability (WAL, synchronous=FULL) and batch size; higher is better.
    Then the fsyncs per emit() and per batch, counted under strace.

(c) ``--null-client``: the shipper's own CPU per event (user + system of the process, all threads), with
    an ElasticsearchStore whose client answers every bulk request at once as all created, so no
    cluster runs beside it. Median of ``--runs`` runs (at most 7), in microseconds per event;
    ``--profile`` adds a cProfile of one run. This is what to compare when changing the shipper's
    read/prepare path.

Run: ``.venv/bin/python bench/seclog.py`` (about 10 minutes; starts the lab's Elasticsearch if it is
not running and stops it again afterwards in that case). The last line of each part is its RATIO
line: ``RATIO es_shipper_vs_bulk`` and, last, ``RATIO sqlite_pipeline_vs_plain_insert``.
``.venv/bin/python bench/seclog.py --null-client`` and ``bench/seclog_sqlite.py`` need no service.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from elasticsearch import Elasticsearch
from seclog_sqlite import add_arguments as add_sqlite_arguments  # bench/ is sys.path[0] when run as a script
from seclog_sqlite import fresh_spool, make_events, sqlite_part

from citydc.lab import ports, registry
from citydc.lab.base import LabContext
from citydc.seclog.shipper import Shipper
from citydc.seclog.spool import Spool
from citydc.seclog.store_es import _BULK_FILTER, ElasticsearchStore
from citydc.seclog.store_es_template import template_body, template_name

ES_URL = f"http://{ports.HOST}:{ports.ELASTICSEARCH}"


def reset_prefix(client: Elasticsearch, prefix: str) -> None:
    client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
    client.indices.put_index_template(name=template_name(prefix), **template_body(prefix))


def drop_prefix(client: Elasticsearch, prefix: str) -> None:
    client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
    client.options(ignore_status=404).indices.delete_index_template(name=template_name(prefix))


def settle(client: Elasticsearch, prefix: str) -> None:
    """After a run (untimed): refresh the run's indices, so the indexing it left buffered is done now, then delete
    them, so the next run, of either side, starts on a cluster holding no bench index and no pending work."""
    client.indices.refresh(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
    client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)


def es_shipper_run(client: Elasticsearch, spool_dir: Path, base: Spool, batch: int, refresh: bool | str,
                   bulk_events: int, full_parse: bool = False) -> float:
    """Ship a copy of the pre-filled spool into fresh indices; return events/s.

    ``full_parse``: every spool line parsed in full, as before lines were recognised by their hash.
    """
    prefix = "bench-seclog-shipper"
    reset_prefix(client, prefix)
    shutil.rmtree(spool_dir, ignore_errors=True)
    shutil.copytree(base.dir, spool_dir)
    spool = Spool(spool_dir, writer=base.writer)
    store = ElasticsearchStore(Elasticsearch(ES_URL, max_retries=0, request_timeout=120), endpoint=ES_URL,
                               index_prefix=prefix, refresh_on_put=refresh, bulk_events=bulk_events)
    store.takes_spooled_lines = not full_parse
    store.ensure_template()  # one-time setup (the baseline's template is installed untimed too)
    started = time.perf_counter()
    result = Shipper(spool, store, batch_size=batch).ship()
    elapsed = time.perf_counter() - started
    assert result.ok and result.stored == result.delivered, result
    store.close()
    settle(client, prefix)
    return result.delivered / elapsed


def es_bulk_run(client: Elasticsearch, bodies: list[bytes], n: int) -> float:
    """Send pre-built NDJSON bodies with the client's bulk into fresh indices; return events/s."""
    prefix = "bench-seclog-bulk"
    reset_prefix(client, prefix)
    started = time.perf_counter()
    for body in bodies:
        resp = client.bulk(operations=body, refresh=False, filter_path=_BULK_FILTER)  # as the store asks
        assert all(item["create"]["status"] == 201 for item in resp["items"])
    rate = n / (time.perf_counter() - started)
    settle(client, prefix)
    return rate


def es_put_run(client: Elasticsearch, events: list[dict], batch: int, bulk_events: int) -> float:
    """store.put alone (events already read from the spool) in the shipper's batches; return events/s."""
    prefix = "bench-seclog-put"
    reset_prefix(client, prefix)
    store = ElasticsearchStore(Elasticsearch(ES_URL, max_retries=0, request_timeout=120), endpoint=ES_URL,
                               index_prefix=prefix, bulk_events=bulk_events)
    store.ensure_template()
    started = time.perf_counter()
    stored = sum(store.put(events[i:i + batch]) for i in range(0, len(events), batch))
    elapsed = time.perf_counter() - started
    assert stored == len(events)
    store.close()
    return len(events) / elapsed


def prebuilt_bodies(events: list[dict], bulk_events: int) -> list[bytes]:
    """Return the NDJSON the store sends for the events, one body per bulk request it makes."""
    shaper = ElasticsearchStore(None, endpoint=ES_URL, index_prefix="bench-seclog-bulk",  # type: ignore[arg-type]
                                bulk_events=bulk_events)
    step = shaper.bulk_events
    return [b"".join(shaper._action(j, ev)[1] for j, ev in enumerate(events[i:i + step]))
            for i in range(0, len(events), step)]


class NullClient:
    """Stands in for the Elasticsearch client: every bulk request is answered at once, all created."""

    def bulk(self, *, operations: bytes, refresh: bool | str, filter_path: list[str]) -> dict:
        return {"errors": False, "items": [{"create": {"status": 201}}] * (operations.count(b"\n") // 2)}

    def close(self) -> None:
        pass


def null_client_run(spool_dir: Path, base: Spool, batch: int, bulk_events: int, profile: bool = False,
                    full_parse: bool = False) -> float:
    """Ship a copy of the pre-filled spool into a NullClient; return the process's CPU seconds per event."""
    shutil.rmtree(spool_dir, ignore_errors=True)
    shutil.copytree(base.dir, spool_dir)
    spool = Spool(spool_dir, writer=base.writer)
    store = ElasticsearchStore(NullClient(), endpoint="null:", bulk_events=bulk_events)  # type: ignore[arg-type]
    store._template_ready = True  # no cluster: nothing to install
    store.takes_spooled_lines = not full_parse
    if profile:  # cProfile sees one thread: run the shipper's steps one after the other in this one
        profiler = cProfile.Profile()
        profiler.enable()
        shipper, pos, n = Shipper(spool, store, batch_size=batch), None, 0
        for _ in range(10**6):  # bounded: ends when the spool is read
            read = shipper._read_ahead(pos)
            if read.end == pos:
                break
            n += store.put(read.events)
            spool.acknowledge(read.end, read.heads if read.heads is not None else read.events)
            pos = read.end
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(22)
        return 0.0
    started = time.process_time()
    result = Shipper(spool, store, batch_size=batch).ship()
    cpu = time.process_time() - started
    assert result.ok and result.stored == result.delivered and not result.corrupt, result
    store.close()
    return cpu / result.delivered


def null_client_main(args: argparse.Namespace) -> None:
    """The shipper's own CPU per event, without a cluster (see the module docstring, (c))."""
    work = Path(tempfile.mkdtemp(prefix="citydc-bench-seclog-null-"))
    try:
        events = make_events(args.es_events, "es")
        gc.collect()
        gc.freeze()
        base, _ = fresh_spool(work, "base", events, args.emit_batch)
        null_client_run(work / "run", base, args.batch, args.bulk_events)  # warm-up: caches, page cache
        costs, full_costs = [], []
        for run in range(args.runs):
            costs.append(null_client_run(work / "run", base, args.batch, args.bulk_events))
            full = ""
            if args.compare_full_parse:
                full_costs.append(null_client_run(work / "run", base, args.batch, args.bulk_events, full_parse=True))
                full = f"   (full parse: {full_costs[-1] * 1e6:.2f} µs)"
            print(f"null-client run {run + 1}: {costs[-1] * 1e6:.2f} µs CPU per event{full}")
        if args.profile:
            null_client_run(work / "run", base, args.batch, args.bulk_events, profile=True)
        print(f"CPU shipper_us_per_event {statistics.median(costs) * 1e6:.2f} (median of {args.runs}, "
              f"range {min(costs) * 1e6:.2f}-{max(costs) * 1e6:.2f}; {args.es_events} events, batches of "
              f"{args.batch}, {args.bulk_events} per bulk request)")
        if full_costs:
            print(f"CPU full_parse_shipper_us_per_event {statistics.median(full_costs) * 1e6:.2f} (the previous read "
                  f"path, in the same runs; range {min(full_costs) * 1e6:.2f}-{max(full_costs) * 1e6:.2f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def warm_up(sides: dict[str, Callable[[], float]], window: int, gain: float, at_most: int,
            report: Callable[[str], None], at_least: int = 0) -> int:
    """Given the sides, run untimed rounds of all of them until Elasticsearch stops getting faster; return
    the rounds run.

    A freshly started cluster ran its first rounds at a tenth of its later speed and took about
    eight rounds to get there (the JVM's JIT, the cluster's caches), so a fixed two rounds did not
    reach steady state. Steady: the mean rate of the last ``window`` rounds (all sides together) is
    at most ``gain`` above that of the ``window`` rounds before. At least ``at_least`` rounds whatever the
    rates say (two invocations that stopped after 6 and 8 rounds differed by 0.035), at most ``at_most``.
    """
    means: list[float] = []
    for rounds in range(1, at_most + 1):
        rates = {name: side() for name, side in sides.items()}
        means.append(statistics.fmean(rates.values()))
        report(f"warm-up {rounds}: " + "   ".join(f"{name} {rate:,.0f} ev/s" for name, rate in rates.items()))
        if rounds >= max(2 * window, at_least):
            last, before = statistics.fmean(means[-window:]), statistics.fmean(means[-2 * window:-window])
            if last <= before * (1 + gain):
                return rounds
    report(f"# warm-up: still getting faster after {at_most} rounds; measuring anyway")
    return at_most


def pooled_ratio(shipper_rates: list[float], bulk_rates: list[float]) -> float:
    """Given both sides' events/s per run (the same events per run), return the shipper's throughput over
    all its runs divided by plain bulk's: plain bulk's total time over the shipper's.

    Printed for information since the RATIO became the interquartile mean of the paired ratios
    (``trimmed_mean``): a few runs slowed by other work on the shared machine (0.52 and 1.28 among
    0.9s) moved this total by 0.08 between two invocations, while the paired ratios' middle half held.
    """
    return sum(1 / r for r in bulk_rates) / sum(1 / r for r in shipper_rates)


def trimmed_mean(values: list[float], cut: float = 0.25) -> float:
    """Given values, return their mean without the lowest and highest ``cut`` of them (0.25: the interquartile
    mean). Raise ValueError on no values."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    k = int(len(ordered) * cut)
    return statistics.fmean(ordered[k:len(ordered) - k] if len(ordered) > 2 * k else ordered)


def es_part(args: argparse.Namespace, client: Elasticsearch, work: Path) -> float:
    """Given the arguments, a client and a scratch directory, measure (a) and print it; return the paired ratio."""
    es_events = make_events(args.es_events, "es")
    gc.collect()
    gc.freeze()  # the pre-built events are not part of what is measured, nor is their weight on the GC
    base, emit_s = fresh_spool(work, "es-base", es_events, args.emit_batch)
    print(f"# spool filled in {emit_s:.2f} s (not part of the ES figures)")
    chained = base.read(None, 10**9).events
    bodies = prebuilt_bodies(chained, args.bulk_events)
    line_bytes = sum(len(e.raw.encode()) for e in chained) / len(chained)
    print(f"# event size: {line_bytes:.0f} bytes as a spool line, {sum(map(len, bodies)) / len(chained):.0f} "
          f"bytes as NDJSON (action line + document + search words); {len(bodies)} bulk requests of up to "
          f"{len(chained) // max(len(bodies), 1)} events on both sides, one in flight at a time")
    sides = {"bulk": lambda: es_bulk_run(client, bodies, args.es_events),
             "shipper": lambda: es_shipper_run(client, work / "es-run", base, args.batch, False, args.bulk_events)}
    if args.compare_full_parse:
        sides["full"] = lambda: es_shipper_run(client, work / "es-run", base, args.batch, False,
                                               args.bulk_events, full_parse=True)
    rounds = warm_up(sides, args.steady_window, args.steady_gain, args.warmup_max, print, args.warmup_min)
    print(f"# warm-up: {rounds} untimed rounds")
    es_rates: dict[str, list[float]] = {name: [] for name in sides}
    shipper_rates, bulk_rates, full_rates = es_rates["shipper"], es_rates["bulk"], es_rates.get("full", [])
    ratios, full_ratios = [], []
    for run in range(args.es_runs):
        # Alternate the order (A B C, C B A, ...) so that drift in the machine's load favours no side.
        for name in list(sides) if run % 2 == 0 else list(sides)[::-1]:
            es_rates[name].append(sides[name]())
        ratios.append(shipper_rates[-1] / bulk_rates[-1])
        full = ""
        if args.compare_full_parse:
            full_ratios.append(full_rates[-1] / bulk_rates[-1])
            full = f"   full-parse shipper {full_rates[-1]:,.0f} ev/s (ratio {full_ratios[-1]:.3f})"
        print(f"run {run + 1}: shipper {shipper_rates[-1]:,.0f} ev/s   plain bulk {bulk_rates[-1]:,.0f} ev/s"
              f"   (ratio {ratios[-1]:.3f}){full}")
    put_rate = es_put_run(client, chained, args.batch, args.bulk_events)
    wait_for = es_shipper_run(client, work / "es-run", base, args.batch, "wait_for", args.bulk_events)
    gc.unfreeze()
    ratio = trimmed_mean(ratios)
    es_ship, es_bulk = statistics.median(shipper_rates), statistics.median(bulk_rates)
    half = len(ratios) // 2
    print(f"ES medians: shipper {es_ship:,.0f} ev/s; plain bulk {es_bulk:,.0f} ev/s; per run shipper/bulk "
          f"{min(ratios):.3f}-{max(ratios):.3f}, median of the paired ratios {statistics.median(ratios):.3f}")
    print(f"ES interquartile mean of the {len(ratios)} paired ratios (the figure): {ratio:.3f}; first {half} pairs "
          f"{trimmed_mean(ratios[:half]):.3f}, last {len(ratios) - half} {trimmed_mean(ratios[half:]):.3f}")
    print(f"# for information: throughput ratio over all pairs (plain bulk's total time / the shipper's, the "
          f"previous figure) {pooled_ratio(shipper_rates, bulk_rates):.3f}; first {half} pairs "
          f"{pooled_ratio(shipper_rates[:half], bulk_rates[:half]):.3f}, last "
          f"{len(ratios) - half} {pooled_ratio(shipper_rates[half:], bulk_rates[half:]):.3f}")
    if full_rates:
        print(f"ES full-parse shipper (previous read path): median {statistics.median(full_rates):,.0f} ev/s; "
              f"paired ratio to bulk {statistics.median(full_ratios):.3f} "
              f"(per-run {min(full_ratios):.3f}-{max(full_ratios):.3f})")
    print(f"ES store.put alone, events already read (1 run): {put_rate:,.0f} ev/s; the shipper with "
          f"refresh=wait_for on every batch (1 run): {wait_for:,.0f} ev/s ({wait_for / es_ship:.2f} of no-refresh)")
    for prefix in ("bench-seclog-shipper", "bench-seclog-put", "bench-seclog-bulk"):
        drop_prefix(client, prefix)
    print(f"RATIO es_shipper_vs_bulk {ratio:.3f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--es-events", type=int, default=40_000, help="events per Elasticsearch run")
    parser.add_argument("--es-runs", "--runs", dest="es_runs", type=int, default=40,
                        help="timed Elasticsearch pairs (shipper, plain bulk); with --null-client, its runs")
    parser.add_argument("--warmup-min", type=int, default=10, help="at least this many untimed warm-up rounds")
    parser.add_argument("--warmup-max", type=int, default=20, help="at most this many untimed warm-up rounds")
    parser.add_argument("--steady-window", type=int, default=3,
                        help="warm-up ends when the mean rate of this many rounds is at most --steady-gain above "
                             "that of as many rounds before")
    parser.add_argument("--steady-gain", type=float, default=0.03)
    parser.add_argument("--batch", type=int, default=5000, help="shipper batch (the Shipper's default)")
    parser.add_argument("--bulk-events", type=int, default=ElasticsearchStore.DEFAULT_BULK_EVENTS,
                        help="events per bulk request, on both sides (the store's default)")
    parser.add_argument("--emit-batch", type=int, default=5000,
                        help="events per emit() call (one fsync each); the shipper's and the plain insert's batch size")
    parser.add_argument("--no-sqlite", dest="sqlite", action="store_false", help="only the Elasticsearch part")
    add_sqlite_arguments(parser)
    parser.add_argument("--compare-full-parse", action="store_true",
                        help="also run the shipper parsing every spool line in full (the previous read path)")
    parser.add_argument("--null-client", action="store_true",
                        help="only measure the shipper's own CPU per event against a client that answers at once")
    parser.add_argument("--profile", action="store_true", help="with --null-client: print a cProfile of one run")
    args = parser.parse_args()
    if args.null_client:
        args.runs = min(args.es_runs, 7)
        null_client_main(args)
        return

    ctx = LabContext()
    es_service = registry.SERVICES["elasticsearch"]
    started_es = not es_service.running(ctx)
    work = Path(tempfile.mkdtemp(prefix="citydc-bench-seclog-"))
    client = None
    try:
        registry.up(ctx, ["elasticsearch"])
        client = Elasticsearch(ES_URL, max_retries=0, request_timeout=120)
        print(f"# Elasticsearch {client.nodes.info(filter_path='nodes.*.version')['nodes'].popitem()[1]['version']}"
              f" at {ES_URL}; {args.es_events} events per run, batches of {args.batch}, {args.es_runs} pairs")
        es_part(args, client, work)
    finally:
        if client is not None:
            client.close()
        shutil.rmtree(work, ignore_errors=True)
        if started_es:
            registry.down(ctx, ["elasticsearch"])
    if args.sqlite:
        sqlite_part(args.sqlite_events, args.emit_batch, args.batch, args.sqlite_runs, concurrent=args.concurrent,
                    fsyncs=args.fsync_count)


if __name__ == "__main__":
    main()
