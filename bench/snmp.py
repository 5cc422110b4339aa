"""SNMP polling cost, side by side: citydc's exporter vs Debian's prometheus-snmp-exporter vs snmpbulkwalk.

    python bench/snmp.py [--devices 20] [--concurrency 4] [--rounds 5] [--static-refresh 300]

Starts its own snmpsim (N generated switches x 54 interfaces, one UDP port each), ``citydc collect
snmp`` and ``prometheus-snmp-exporter`` 0.21 (module written by hand: the same 13 IF-MIB columns,
max-repetitions 25, ifName/ifAlias as labels), polls every switch once per round through each HTTP
endpoint with bounded concurrency, and runs ``snmpbulkwalk -Cr25`` over the same columns. Reports
per tool the poller's CPU seconds per 10,000 varbinds (denominator: the 13 x 54 varbinds each
switch holds, the same for every tool) and the wall seconds of a full round; medians over the
rounds after one warm-up round. The simulator's CPU is reported separately: on 2 cores it
saturates first, so keep N x concurrency where its CPU share stays well below one core.
citydc's warm rounds reuse its static-column cache (ifDescr, ifName, ifAlias, speeds; refresh
period snmp.static_refresh_seconds, ``--static-refresh``; 0 re-walks all 13 columns every poll, as
snmp_exporter does): that is part of what is measured. citydc's polls by path (``fast_v2c`` or
``pysnmp``, from its /metrics) are printed before the table. Stops all it started.
Before the table, the fast v2c session's failure timing is reported (moved here from the unit tests):
how long a malformed answer takes to fail a request whose timeout is 2 s (it must not wait for the
timeout), and how long a silent agent takes to time out with timeout 0.2 s and 2 retries (3 tries,
about 0.6 s), medians over ``--timing-runs``, as ``FIGURE`` lines.
The last two lines are ``RATIO cpu_per_varbind_vs_snmp_exporter`` and ``RATIO wall_vs_snmp_exporter``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from citydc import execute
from citydc.collectors.snmp.poller import PollError
from citydc.collectors.snmp.v2c import V2cSession
from citydc.lab import processes
from citydc.lab.base import LabContext, wait_until
from citydc.lab.snmpd import client_conf_dir
from citydc.lab.snmpsim import FILES, bulkwalk_argv, install_snmpsim, venv_python
from citydc.lab.snmpsim_data import SwitchSpec, records

COMMUNITY = "citydc-bench"  # a benchmark-only community of simulated devices, not a secret
BASE_PORT = 24000
CITYDC_PORT, PEER_PORT = 24900, 24901
COLUMNS = {  # 13 IF-MIB columns: counters, status, speeds and the label columns
    "ifDescr": ("1.3.6.1.2.1.2.2.1.2", "DisplayString"), "ifSpeed": ("1.3.6.1.2.1.2.2.1.5", "gauge"),
    "ifAdminStatus": ("1.3.6.1.2.1.2.2.1.7", "gauge"), "ifOperStatus": ("1.3.6.1.2.1.2.2.1.8", "gauge"),
    "ifInDiscards": ("1.3.6.1.2.1.2.2.1.13", "counter"), "ifInErrors": ("1.3.6.1.2.1.2.2.1.14", "counter"),
    "ifOutDiscards": ("1.3.6.1.2.1.2.2.1.19", "counter"), "ifOutErrors": ("1.3.6.1.2.1.2.2.1.20", "counter"),
    "ifName": ("1.3.6.1.2.1.31.1.1.1.1", "DisplayString"), "ifHCInOctets": ("1.3.6.1.2.1.31.1.1.1.6", "counter"),
    "ifHCOutOctets": ("1.3.6.1.2.1.31.1.1.1.10", "counter"), "ifHighSpeed": ("1.3.6.1.2.1.31.1.1.1.15", "gauge"),
    "ifAlias": ("1.3.6.1.2.1.31.1.1.1.18", "DisplayString"),
}
INTERFACES = 54
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Given a PID, return its user+system CPU seconds (all threads) from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peer_config() -> dict:
    """Return prometheus-snmp-exporter 0.21's snmp.yml with the bench module (0.21: community inside the module)."""
    index = [{"labelname": "ifIndex", "type": "gauge"}]
    lookups = [{"labels": ["ifIndex"], "labelname": n, "oid": COLUMNS[n][0], "type": "DisplayString"}
               for n in ("ifName", "ifAlias")]
    metrics = [{"name": name, "oid": oid, "type": kind, "indexes": index, "lookups": lookups}
               for name, (oid, kind) in COLUMNS.items() if name not in ("ifName", "ifAlias")]
    return {"bench13": {"walk": [oid for oid, _ in COLUMNS.values()], "version": 2, "max_repetitions": 25,
                        "retries": 1, "timeout": "5s", "auth": {"community": COMMUNITY}, "metrics": metrics}}


def citydc_config(n: int, static_refresh: float = 300) -> dict:
    return {"sites": [{"id": "siwei", "name": "Siwei"}],
            "snmp_auth": {"bench": {"version": "2c", "community": "env:CITYDC_BENCH_COMMUNITY"}},
            "devices": [{"name": f"bench-{k:03d}", "address": f"127.0.0.1:{BASE_PORT + k}", "site": "siwei",
                         "role": "access", "snmp_auth": "bench", "snmp_module": "bench13"} for k in range(n)],
            "snmp": {"listen": f"127.0.0.1:{CITYDC_PORT}", "timeout_seconds": 5, "retries": 1,
                     "static_refresh_seconds": static_refresh,
                     "modules": {"bench13": {"columns": list(COLUMNS), "max_repetitions": 25}}}}


def http_round(url_of, n: int, concurrency: int, sample: bytes) -> float:
    """Scrape n devices; each answer must hold one ``sample`` line per interface (a real, full poll)."""
    def get(k: int) -> int:
        with urllib.request.urlopen(url_of(k), timeout=30) as resp:  # noqa: S310 - loopback
            body = resp.read()
        if body.count(sample) != INTERFACES:
            raise RuntimeError(f"device {k}: {body.count(sample)} {sample!r} samples, expected {INTERFACES}")
        return len(body)

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(get, range(n)))
    return time.monotonic() - started


def bulkwalk_round(n: int, concurrency: int, conf: Path) -> float:
    def walk(k: int) -> None:
        for oid, _ in COLUMNS.values():
            res = execute.run("snmpbulkwalk", bulkwalk_argv(f"127.0.0.1:{BASE_PORT + k}", oid, 25),
                              env={"SNMPCONFPATH": str(conf), "MIBS": ""}, timeout=30)
            if not res.ok:
                raise RuntimeError(f"snmpbulkwalk failed: {res.masked_stderr()}")

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(walk, range(n)))
    return time.monotonic() - started


def polls_by_path(url: str) -> dict[str, float]:
    """Given citydc's /metrics URL, return its polls by path (fast_v2c, pysnmp)."""
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    return {s.labels["path"]: s.value for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == "citydc_snmp_exporter_polls_total"}


async def _failure_seconds(answer: bytes | None, timeout: float, retries: int) -> tuple[float, str]:
    """Run one GET against a loopback agent that answers every request with ``answer`` (None: never);
    return (seconds until the request failed, the PollError reason)."""
    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind(("127.0.0.1", 0))
    agent.setblocking(False)
    loop = asyncio.get_running_loop()

    def reply() -> None:
        try:
            _, addr = agent.recvfrom(65535)
        except BlockingIOError:
            return
        if answer is not None:
            agent.sendto(answer, addr)

    loop.add_reader(agent.fileno(), reply)
    session = await V2cSession.open("bench-timing", "127.0.0.1", agent.getsockname()[1], timeout, retries)
    started = time.perf_counter()
    try:
        await session.get([(1, 3, 6, 1, 2, 1, 1, 3, 0)])
        reason = "answered"
    except PollError as exc:
        reason = exc.reason
    finally:
        took = time.perf_counter() - started
        session.close()
        loop.remove_reader(agent.fileno())
        agent.close()
    return took, reason


def v2c_failure_timing(runs: int) -> dict[str, float]:
    """Return median seconds: a malformed answer failing a 2 s-timeout request, and a silent agent's 3 tries."""
    out = {}
    for name, answer, timeout, retries, expected in (
            ("malformed_answer_fail", b"\x30\x03\x02\x01\x07", 2.0, 1, "decode"),
            ("silent_agent_3_tries_of_0.2", None, 0.2, 2, "timeout")):
        times = []
        for _ in range(runs):
            took, reason = asyncio.run(_failure_seconds(answer, timeout, retries))
            if reason != expected:
                raise RuntimeError(f"{name}: expected {expected}, got {reason}")
            times.append(took)
        out[name] = statistics.median(times)
    return out


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--static-refresh", type=float, default=300, help="citydc's snmp.static_refresh_seconds")
    ap.add_argument("--timing-runs", type=int, default=5, help="runs of each v2c failure timing")
    a = ap.parse_args()
    if not (1 <= a.devices <= 200 and 1 <= a.concurrency <= 64 and 1 <= a.rounds <= 20 and a.static_refresh >= 0
            and 1 <= a.timing_runs <= 50):
        ap.error("--devices 1-200, --concurrency 1-64, --rounds 1-20, --static-refresh >= 0, --timing-runs 1-50")
    timing = v2c_failure_timing(a.timing_runs)
    ctx = LabContext(log=lambda m: print(f"# {m}", file=sys.stderr))
    install_snmpsim(ctx)
    if not shutil.which("prometheus-snmp-exporter"):
        from citydc.lab.base import apt_install
        apt_install(["prometheus-snmp-exporter"], ctx)
    work = Path(tempfile.mkdtemp(prefix="citydc-bench-snmp-"))
    started: list[processes.ProcessRecord] = []
    try:
        data = work / "data" / COMMUNITY
        data.mkdir(parents=True)
        for k in range(a.devices):
            (data / f"1.3.6.1.6.1.1.{k}.snmprec").write_text(records(SwitchSpec(f"bench-{k:03d}", 1000 + k)))
        (work / "cache").mkdir()
        sim = processes.spawn(
            [str(venv_python(ctx)), str(FILES / "snmpsim_lite.py"), "--v2c-arch", "--logging-method=null",
             f"--data-dir={work / 'data'}", f"--cache-dir={work / 'cache'}", "--max-var-binds=512",
             *[f"--agent-udpv4-endpoint=127.0.0.1:{BASE_PORT + k}" for k in range(a.devices)]],
            log_path=work / "snmpsim.log", env={"SNMPSIM_ALLOW_ROOT": "true"})
        started.append(processes.record(sim.pid, "snmpsim"))
        conf = client_conf_dir(COMMUNITY, work / "client")
        wait_until(lambda: execute.run("snmpget", ("snmpget", "-t", "1", "-r", "0", f"127.0.0.1:{BASE_PORT}",
                                                   "1.3.6.1.2.1.1.5.0"),
                                       env={"SNMPCONFPATH": str(conf), "MIBS": ""}, timeout=5).ok, 120,
                   "snmpsim answered")
        (work / "citydc.yaml").write_text(yaml.safe_dump(citydc_config(a.devices, a.static_refresh)))
        ours = processes.spawn([str(Path(sys.executable).with_name("citydc")), "-c", str(work / "citydc.yaml"),
                                "collect", "snmp"], log_path=work / "citydc.log",
                               env={"CITYDC_BENCH_COMMUNITY": COMMUNITY})
        started.append(processes.record(ours.pid, "citydc"))
        peer_yml = work / "snmp.yml"
        peer_yml.write_text(yaml.safe_dump(peer_config()))
        peer_yml.chmod(0o600)
        peer = processes.spawn(["prometheus-snmp-exporter", f"--config.file={peer_yml}",
                                f"--web.listen-address=127.0.0.1:{PEER_PORT}", "--log.level=warn"],
                               log_path=work / "snmp_exporter.log")
        started.append(processes.record(peer.pid, "snmp_exporter"))
        for port in (CITYDC_PORT, PEER_PORT):
            wait_until(lambda p=port: urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=2).status == 200,
                       30, f"exporter on {port} answered")

        tools = {
            "citydc": (ours.pid, lambda: http_round(
                lambda k: f"http://127.0.0.1:{CITYDC_PORT}/snmp?target=127.0.0.1:{BASE_PORT + k}&module=bench13",
                a.devices, a.concurrency, b"\ncitydc_snmp_if_receive_bytes_total{")),
            "snmp_exporter": (peer.pid, lambda: http_round(
                lambda k: f"http://127.0.0.1:{PEER_PORT}/snmp?target=127.0.0.1:{BASE_PORT + k}&module=bench13",
                a.devices, a.concurrency, b"\nifHCInOctets{")),
            "snmpbulkwalk": (None, lambda: bulkwalk_round(a.devices, a.concurrency, conf)),
        }
        varbinds = a.devices * INTERFACES * len(COLUMNS)
        results: dict[str, dict[str, list[float]]] = {t: {"cpu": [], "wall": [], "sim": []} for t in tools}
        deadline = time.monotonic() + 170  # every loop here is bounded in count and in time
        for rnd in range(a.rounds + 1):
            for name, (pid, run_round) in tools.items():
                if time.monotonic() > deadline:
                    break
                cpu0 = cpu_seconds(pid) if pid else children_cpu()
                sim0 = cpu_seconds(sim.pid)
                wall = run_round()
                cpu = (cpu_seconds(pid) if pid else children_cpu()) - cpu0
                if rnd > 0:  # round 0 warms every tool up
                    results[name]["cpu"].append(cpu)
                    results[name]["wall"].append(wall)
                    results[name]["sim"].append(cpu_seconds(sim.pid) - sim0)
        print(f"# {a.devices} simulated switches x {INTERFACES} interfaces x {len(COLUMNS)} columns = "
              f"{varbinds} varbinds per round; concurrency {a.concurrency}; max-repetitions 25; "
              f"medians of {len(results['citydc']['cpu'])} rounds; citydc static refresh {a.static_refresh:g} s")
        print(f"# citydc polls by path: {polls_by_path(f'http://127.0.0.1:{CITYDC_PORT}/metrics')}")
        print(f"# fast v2c failure timing, medians of {a.timing_runs}: a malformed answer fails a request whose "
              f"timeout is 2 s; a silent agent with timeout 0.2 s and 2 retries (3 tries) times out")
        for name, seconds in timing.items():
            print(f"FIGURE v2c_{name}_ms {seconds * 1000:.2f}")
        print(f"{'tool':15} {'cpu_s/10k_varbinds':>19} {'wall_s/round':>13} {'simulator_cpu_s/round':>22}")
        med = {}
        for name, r in results.items():
            if not r["cpu"]:
                continue
            med[name] = (statistics.median(r["cpu"]) / varbinds * 10_000, statistics.median(r["wall"]),
                         statistics.median(r["sim"]))
            print(f"{name:15} {med[name][0]:19.3f} {med[name][1]:13.3f} {med[name][2]:22.3f}")
        print(f"RATIO cpu_per_varbind_vs_snmp_exporter {med['citydc'][0] / med['snmp_exporter'][0]:.3f}")
        print(f"RATIO wall_vs_snmp_exporter {med['citydc'][1] / med['snmp_exporter'][1]:.3f}")
        return 0
    finally:
        processes.stop(list(reversed(started)))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
