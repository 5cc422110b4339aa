"""NetFlow collector benchmark: citydc vs nfdump's nfcapd vs pmacct's nfacctd, side by side.

The same generated stream (v5, v9 and IPFIX; softflowd's IPv4 layout, 30 records per datagram)
is sent over loopback, paced at --rate records/s, to each collector in turn; the records each
collector accounted and its CPU are measured the same way for all: the kernel's exact run time
of every thread (/proc/<pid>/task/*/schedstat, nanoseconds) just before the first datagram, and
after the last one, once the collector has gone idle (drained), its whole user+system time from
wait4() when it exits, so work done at exit (nfcapd writes its file, citydc flushes) counts.
nfacctd forks plugin processes, so for it both readings are schedstat sums over its process
tree, the second taken once drained, before SIGINT. Medians over --runs runs.

Run: python bench/netflow.py [--records 2000000] [--rate 500000] [--runs 3]
The last lines are `RATIO cpu_per_record_vs_nfcapd_<v5|v9|ipfix> <value>` and
`LOST citydc_records <value>` (the worst run's loss summed over formats).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from citydc import execute
from citydc.cli.output import exit_now
from citydc.collectors.netflow import synth
from citydc.lab import nfdump, ports, processes

PORT_CITYDC, PORT_NFCAPD, PORT_NFACCTD = ports.NFCAPD + 5, ports.NFCAPD + 6, ports.NFCAPD + 7
BUFFER = 32 * 1024 * 1024


def cpu_seconds(pids: list[int]) -> float:
    """Given PIDs, return the CPU seconds their threads have run so far (exact, not in clock ticks)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread may end while we read
                total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def wait_drained(pids: list[int], quiet: float = 0.3, limit: float = 20.0) -> None:
    """Wait until the processes have used no CPU for ``quiet`` seconds (bounded by ``limit``)."""
    deadline = time.monotonic() + limit
    last = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_seconds(pids)
        if now - last < 0.002:  # idle wake-ups only
            return
        last = now


def exit_cpu(pid: int) -> float:
    """Wait for our child ``pid`` to exit; return its whole user+system CPU seconds."""
    _, _, usage = os.wait4(pid, 0)
    return usage.ru_utime + usage.ru_stime


def children(pid: int) -> list[int]:
    out = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return out


def send_paced(datagrams: list[bytes], per_datagram: int, rate: float, port: int) -> float:
    """Send datagrams to 127.0.0.1:port at ``rate`` records/s; return the seconds it took."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic()
    step = 64
    for i in range(0, len(datagrams), step):
        due = start + i * per_datagram / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for d in datagrams[i:i + step]:
            sock.sendto(d, ("127.0.0.1", port))
    sock.close()
    return time.monotonic() - start


def serve(port: int) -> None:
    """Child mode: run citydc's full pipeline on 127.0.0.1:port until SIGTERM, then print JSON."""
    from citydc.collectors.netflow.aggregate import AgencyPrefixes
    from citydc.collectors.netflow.collector import Listener, build
    from citydc.collectors.netflow.receive import open_socket
    from citydc.config.models import Netflow

    # The sender is a listed exporter, as in production: the source check and the sequence tracking run.
    collector = build(Netflow.model_validate({"exporters": [{"address": "127.0.0.1"}]}))
    collector.aggregator.agencies = [AgencyPrefixes.build("civil-affairs", ["10.0.0.0/26"]),
                                     AgencyPrefixes.build("police", ["10.0.1.0/24", "fd00::/8"])]
    collector.listeners = [Listener(open_socket("127.0.0.1", port, BUFFER), "siwei")]
    signal.signal(signal.SIGTERM, lambda *_: collector.stop())
    print("ready", flush=True)
    collector.run()
    print(json.dumps({"records": collector.aggregator.records, "path": collector.decoder.path,
                      "errors": sum(collector.decoder.stats.errors.values()),
                      "sequence_events": sum(collector.decoder.sequences.events.values())}), flush=True)
    exit_now(0)  # as `citydc collect netflow` ends


def run_citydc(datagrams, per, rate) -> tuple[float, int, str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(PORT_CITYDC)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    before = cpu_seconds([proc.pid])
    send_paced(datagrams, per, rate, PORT_CITYDC)
    wait_drained([proc.pid])
    proc.send_signal(signal.SIGTERM)
    out = proc.stdout.read()
    cpu = exit_cpu(proc.pid) - before  # includes the work done at exit, as for nfcapd
    result = json.loads(out.strip().splitlines()[-1])
    if result["sequence_events"]:  # a paced, in-order stream over loopback has no sequence errors
        print(f"citydc counted {result['sequence_events']} sequence events", file=sys.stderr)
    return cpu, result["records"], result["path"]


def run_nfcapd(datagrams, per, rate, work: Path) -> tuple[float, int]:
    flow_dir = work / "nfcapd"
    flow_dir.mkdir()
    proc = processes.spawn(nfdump.nfcapd_argv("127.0.0.1", PORT_NFCAPD, flow_dir, BUFFER), log_path=work / "nfcapd.log")
    time.sleep(1.0)
    before = cpu_seconds([proc.pid])
    send_paced(datagrams, per, rate, PORT_NFCAPD)
    wait_drained([proc.pid])
    proc.terminate()  # nfcapd writes its file at exit: that work is counted too
    cpu = exit_cpu(proc.pid) - before
    res = execute.run("nfdump", nfdump.nfdump_stats_argv(flow_dir), timeout=120)
    return cpu, nfdump.parse_nfdump_stats(res.stdout)["flows"]


def run_nfacctd(datagrams, per, rate, work: Path, packets_per_record: float) -> tuple[float, int]:
    conf, out = work / "nfacctd.conf", work / "nfacctd.csv"
    conf.write_text(nfdump.nfacctd_config("127.0.0.1", PORT_NFACCTD, out, BUFFER))
    proc = processes.spawn(nfdump.nfacctd_argv(conf), log_path=work / "nfacctd.log")
    time.sleep(1.5)
    pids = children(proc.pid)
    before = cpu_seconds(pids)
    send_paced(datagrams, per, rate, PORT_NFACCTD)
    wait_drained(pids)
    cpu = cpu_seconds(pids) - before
    proc.send_signal(signal.SIGINT)  # nfacctd purges its print cache on SIGINT
    proc.wait(timeout=60)
    time.sleep(1.0)
    packets = 0
    if out.exists():
        rows = out.read_text().splitlines()
        col = rows[0].split(",").index("PACKETS") if rows else 0
        packets = sum(int(r.split(",")[col]) for r in rows[1:] if r and not r.startswith("PROTOCOL"))
    # nfacctd's print plugin has no flow count here: records accounted = packets / mean packets per record.
    return cpu, round(packets / packets_per_record)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--rate", type=float, default=500_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-nfacctd", action="store_true")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    flows = synth.random_flows(args.records, seed=42)
    packets_per_record = float(flows.packets.astype(np.uint64).sum()) / args.records
    streams = {"v5": synth.v5_datagrams(flows), "v9": synth.v9_datagrams(flows, 9),
               "ipfix": synth.v9_datagrams(flows, 10)}
    per = 30
    results: dict[tuple[str, str], list[tuple]] = {}
    tools = ["citydc", "nfcapd"] + ([] if args.no_nfacctd else ["nfacctd"])
    for run in range(args.runs):
        for fmt, datagrams in streams.items():
            for tool in tools:
                with tempfile.TemporaryDirectory(prefix="citydc-bench-") as tmp:
                    if tool == "citydc":
                        r = run_citydc(datagrams, per, args.rate)
                    elif tool == "nfcapd":
                        r = run_nfcapd(datagrams, per, args.rate, Path(tmp))
                    else:
                        r = run_nfacctd(datagrams, per, args.rate, Path(tmp), packets_per_record)
                results.setdefault((tool, fmt), []).append(r)
                path = f"  ({r[2]} decode path)" if len(r) > 2 else ""
                print(f"run {run + 1} {fmt:5} {tool:8} cpu {r[0]:.3f} s  records {r[1]}/{args.records}{path}",
                      flush=True)
    print(f"\n{args.records} records per stream, paced at {args.rate:.0f} records/s, medians of {args.runs} runs")
    print(f"{'format':6} {'tool':8} {'cpu s/M records':>16} {'records lost':>13}")
    per_m = {}
    for (tool, fmt), rs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cpu = statistics.median(r[0] for r in rs) / args.records * 1e6
        lost = statistics.median(args.records - r[1] for r in rs)
        per_m[(tool, fmt)] = cpu
        print(f"{fmt:6} {tool:8} {cpu:16.3f} {lost:13.0f}")
    worst_lost = sum(max(args.records - r[1] for r in results[("citydc", fmt)]) for fmt in streams)
    for fmt in streams:
        print(f"RATIO cpu_per_record_vs_nfcapd_{fmt} {per_m[('citydc', fmt)] / per_m[('nfcapd', fmt)]:.3f}")
    print(f"LOST citydc_records {worst_lost}")


if __name__ == "__main__":
    main()
