"""The NOC page's data endpoint under 1 and then 20 wall screens, against the lab Prometheus holding the fleet.

    python bench/noc.py [--seconds 60] [--rounds 3] [--screen-interval 0.5] [--poll-interval 5]

Starts the lab's Prometheus (alerts/ rules loaded), node_exporter with the lab's NOC textfile data,
the 190-switch snmpsim fleet scraped through ``citydc collect snmp`` (file_sd from ``citydc collect
snmp-targets``), an Alertmanager of its own (Debian ``prometheus-alertmanager``, holding a few
alerts) and ``citydc noc serve``. Then, for ``--rounds`` rounds, 1 and then 20 concurrent screens
ask ``/api/noc`` every ``--screen-interval`` seconds (20x faster than a screen's default refresh)
for ``--seconds`` each. Prometheus counts the queries itself
(``prometheus_http_requests_total`` of the query and query_range handlers, read from its
``/metrics`` before and after each phase); the screens time every answer.

Prints per phase the queries per minute, requests served and latency percentiles, then medians
over the rounds. Last lines: ``RATIO prometheus_queries_20_vs_1_screens`` (median queries per
minute with 20 screens over the median with 1; goal <= 1.1) and ``P95_MS noc_data`` (p95 of every
answer with 20 screens; goal <= 100 ms). Stops all it started (``citydc lab down`` stops the lab).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from citydc import execute
from citydc.lab import noc_data, ports, processes, registry
from citydc.lab.base import LabContext, wait_until
from citydc.lab.node_exporter import textfile_dir
from citydc.lab.prometheus import file_sd_dir, query
from citydc.lab.snmpsim import lab_config, lab_snmp_env

CITYDC = str(Path(sys.executable).with_name("citydc"))
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
PROM = f"http://{ports.HOST}:{ports.PROMETHEUS}"
AM = f"http://{ports.HOST}:{ports.ALERTMANAGER_NOC_TEST}"
NOC = f"http://{ports.HOST}:{ports.NOC}/api/noc"
QUERY_HANDLERS = ("/api/v1/query", "/api/v1/query_range")
SD_FILE = "citydc-snmp-bench-noc.json"


def prometheus_queries() -> float:
    """Return how many query and query_range requests Prometheus has answered (its own counter)."""
    with urllib.request.urlopen(f"{PROM}/metrics", timeout=10) as resp:  # noqa: S310 - loopback lab URL
        text = resp.read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == "prometheus_http_requests_total" and s.labels.get("handler") in QUERY_HANDLERS)


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def post_alerts() -> None:
    now = time.time()
    alerts = [{"labels": {"alertname": name, "severity": sev, "site": site},
               "annotations": {"summary": f"{name} ({site})"}, "startsAt": iso(now - 60), "endsAt": iso(now + 7200)}
              for name, sev, site in (("Watchdog", "none", "all"), ("UplinkDown", "critical", "siwei"),
                                      ("BackupNotSucceeded", "critical", "fengshan"),
                                      ("LinkUtilisationHigh", "warning", "fengshan"))]
    req = urllib.request.Request(f"{AM}/api/v2/alerts", data=json.dumps(alerts).encode(), method="POST",  # noqa: S310
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10):  # noqa: S310 - loopback lab URL
        pass


def phase(screens: int, seconds: float, interval: float) -> dict[str, float]:
    """Run ``screens`` screens for ``seconds``; return queries per minute, requests and latency percentiles (ms)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def screen(k: int) -> None:
        time.sleep(interval * k / screens)  # screens out of step, as real ones are
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(NOC, timeout=10) as resp:
                    body = resp.read()
                ok = resp.status == 200 and body.startswith(b"{")
            except OSError:
                ok = False
            took = time.perf_counter() - started
            with lock:
                if ok:
                    latencies.append(took)
                else:
                    errors[0] += 1
            time.sleep(max(0.0, interval - took))

    q0, t0 = prometheus_queries(), time.monotonic()
    threads = [threading.Thread(target=screen, args=(k,), daemon=True) for k in range(screens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 30)
    q1, t1 = prometheus_queries(), time.monotonic()
    lat = sorted(latencies)
    pct = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) >= 2 else [float("nan")] * 99
    return {"queries_per_min": (q1 - q0) / (t1 - t0) * 60, "requests": len(lat), "errors": errors[0],
            "p50_ms": pct[49] * 1000, "p95_ms": pct[94] * 1000, "max_ms": (lat[-1] if lat else float("nan")) * 1000,
            "latencies": lat}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="length of each phase")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (1 screen, 20 screens)")
    ap.add_argument("--screen-interval", type=float, default=0.5, help="seconds between a screen's requests")
    ap.add_argument("--poll-interval", type=float, default=5, help="the NOC server's noc.poll_interval_seconds")
    a = ap.parse_args()
    if not (5 <= a.seconds <= 600 and 1 <= a.rounds <= 10 and 0.05 <= a.screen_interval <= 60
            and 1 <= a.poll_interval <= 60):
        ap.error("--seconds 5-600, --rounds 1-10, --screen-interval 0.05-60, --poll-interval 1-60")
    ctx = LabContext(log=lambda m: print(f"# {m}", file=sys.stderr))
    registry.up(ctx, ["prometheus", "node-exporter", "snmpsim-fleet"])
    noc_data.write(textfile_dir(ctx))
    env = {**os.environ, **ports.LAB_ENV, **lab_snmp_env()}
    work = Path(tempfile.mkdtemp(prefix="citydc-bench-noc-"))
    started: list[processes.ProcessRecord] = []
    sd = file_sd_dir(ctx) / SD_FILE
    try:
        doc = lab_config(fleet=True, listen=f"{ports.HOST}:{ports.SNMP_EXPORTER}", timeout_seconds=2.0, retries=0)
        doc["devices"] = [d for d in doc["devices"] if d["name"].startswith("fleet-")]
        doc["alerting"] = {"prometheus_url": PROM, "alertmanager_url": AM}
        doc["noc"] = {"listen": f"{ports.HOST}:{ports.NOC}", "poll_interval_seconds": a.poll_interval,
                      "stale_after_seconds": 120, "refresh_seconds": 10}
        cfg = work / "citydc.yaml"
        cfg.write_text(yaml.safe_dump(doc, allow_unicode=True))
        am_conf = work / "alertmanager.yml"
        am_conf.write_text("route:\n  receiver: none\nreceivers:\n  - name: none\n")
        am = processes.spawn([ALERTMANAGER, f"--config.file={am_conf}", f"--storage.path={work / 'am'}",
                              f"--web.listen-address={ports.HOST}:{ports.ALERTMANAGER_NOC_TEST}",
                              "--cluster.listen-address="], log_path=work / "alertmanager.log")
        started.append(processes.record(am.pid, "alertmanager"))
        exporter = processes.spawn([CITYDC, "-c", str(cfg), "collect", "snmp"], log_path=work / "exporter.log",
                                   env=env)
        started.append(processes.record(exporter.pid, "citydc collect snmp"))
        res = execute.run("citydc", (CITYDC, "-c", str(cfg), "collect", "snmp-targets", "-o", str(sd)), env=env,
                          timeout=60)
        if not res.ok:
            raise SystemExit(f"snmp-targets failed: {res.masked_stderr()}")
        # The lab's scrape job polls every second (for its wrap tests); the fleet is scraped as a site
        # would, every 15 s: Prometheus reads __scrape_interval__/__scrape_timeout__ from target labels.
        groups = json.loads(sd.read_text())
        for g in groups:
            g["labels"] = {**g.get("labels", {}), "__scrape_interval__": "15s", "__scrape_timeout__": "10s"}
        tmp = sd.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(sd)
        wait_until(lambda: urllib.request.urlopen(f"{AM}/api/v2/status", timeout=2).status == 200, 30,  # noqa: S310
                   "Alertmanager answered")
        post_alerts()
        series = 'link:citydc_snmp_if_utilisation:ratio_rate5m{ifAlias=~"(?i).*uplink.*"}'
        try:
            wait_until(lambda: len(query(series)) >= 2 * 190 * 0.9, 150, "Prometheus recorded the fleet's uplinks")
        except Exception:
            up = query('sum by (site) (citydc_snmp_up{device=~"fleet-.*"})')
            print(f"# fleet up by site: {up}; uplink series: {len(query(series))}", file=sys.stderr)
            raise
        noc = processes.spawn([CITYDC, "-c", str(cfg), "noc", "serve"], log_path=work / "noc.log", env=env)
        started.append(processes.record(noc.pid, "citydc noc serve"))
        wait_until(lambda: json.load(urllib.request.urlopen(NOC, timeout=2))["links"] != [], 60,
                   "the NOC page had its data")
        held = len(query('{__name__=~"citydc_.*|link:.*"}'))
        print(f"# Prometheus holds {held} citydc series ({len(query(series))} uplink utilisation series); "
              f"NOC server polls every {a.poll_interval:g} s; screens ask every {a.screen_interval:g} s; "
              f"phases of {a.seconds:g} s; {a.rounds} rounds")
        print(f"{'round':>5} {'screens':>7} {'queries/min':>11} {'requests':>8} {'errors':>6} {'p50_ms':>7} "
              f"{'p95_ms':>7} {'max_ms':>7}")
        results: dict[int, list[dict[str, float]]] = {1: [], 20: []}
        for rnd in range(1, a.rounds + 1):
            for screens in (1, 20):
                r = phase(screens, a.seconds, a.screen_interval)
                results[screens].append(r)
                print(f"{rnd:>5} {screens:>7} {r['queries_per_min']:>11.2f} {r['requests']:>8} {r['errors']:>6} "
                      f"{r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} {r['max_ms']:>7.2f}")
        q1 = statistics.median(r["queries_per_min"] for r in results[1])
        q20 = statistics.median(r["queries_per_min"] for r in results[20])
        all20 = sorted(t for r in results[20] for t in r["latencies"])
        p95 = statistics.quantiles(all20, n=100, method="inclusive")[94] * 1000
        errors = sum(r["errors"] for rs in results.values() for r in rs)
        print(f"# medians: {q1:.2f} queries/min with 1 screen, {q20:.2f} with 20; {len(all20)} answers with 20 "
              f"screens, {errors} failed requests in all")
        print(f"RATIO prometheus_queries_20_vs_1_screens {q20 / q1:.3f}")
        print(f"P95_MS noc_data {p95:.2f}")
        return 0 if errors == 0 else 1
    finally:
        processes.stop(list(reversed(started)))
        sd.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
