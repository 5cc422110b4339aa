"""200 targets at once through the exporter's HTTP endpoint: 190 healthy simulated switches,
9 dead ports and 1 slow switch. Every healthy target answers within its scrape timeout; the
dead and slow ones report citydc_snmp_up 0 with reason timeout, also within it.
"""

from __future__ import annotations

import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from threading import Thread

import pytest
from prometheus_client.parser import text_string_to_metric_families

from citydc.collectors.snmp.exporter import Exporter, serve
from citydc.config.models import Config
from citydc.lab.snmpsim import FLEET_SIZE, lab_config, lab_snmp_env

pytestmark = pytest.mark.lab

SCRAPE_TIMEOUT = 10.0


def scrape(base: str, target: str) -> tuple[dict[str, float], float]:
    started = time.monotonic()
    req = urllib.request.Request(f"{base}/snmp?target={target}",  # noqa: S310 - loopback
                                 headers={"X-Prometheus-Scrape-Timeout-Seconds": str(SCRAPE_TIMEOUT)})
    with urllib.request.urlopen(req, timeout=SCRAPE_TIMEOUT + 5) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in ("citydc_snmp_up", "citydc_snmp_interfaces"):
                out[s.name] = s.value
            if s.name == "citydc_snmp_scrape_errors" and s.value:
                out["reason:" + s.labels["reason"]] = s.value
    return out, time.monotonic() - started


def test_200_targets_with_10_dead_or_slow(lab_up, lab_env):
    lab_up("snmpsim-fleet", "snmpsim-slow")
    os.environ.update(lab_snmp_env())
    # 4 s a try: one pure-Python snmpsim serves the 190 healthy switches, and 200 polls at once on a loaded
    # 2-core machine kept one waiting past two 3 s tries (CI, 2026-12-06); two 4 s tries still end in the 9.5 s
    # the exporter leaves itself of the 10 s scrape timeout.
    doc = lab_config(fleet=True, timeout_seconds=4.0, retries=1)
    fleet = [d for d in doc["devices"] if d["name"].startswith("fleet-")]
    dead = [d for d in doc["devices"] if d["name"].startswith("dead-")][:9]
    slow = [d for d in doc["devices"] if d["name"] == "sw-fengshan-slow"]
    targets = fleet + dead + slow
    assert (len(targets), len(fleet)) == (200, FLEET_SIZE)
    exp = Exporter(Config.model_validate(doc))
    exp.start()
    server = serve(exp, "127.0.0.1", 0)
    Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            futures = {d["name"]: pool.submit(scrape, base, d["address"]) for d in targets}
            results = {name: f.result() for name, f in futures.items()}
    finally:
        server.shutdown()
        exp.stop()
    for d in fleet:
        metrics, seconds = results[d["name"]]
        assert metrics.get("citydc_snmp_up") == 1, (d["name"], metrics)
        assert metrics["citydc_snmp_interfaces"] == 7
        assert seconds < SCRAPE_TIMEOUT, f"{d['name']} took {seconds:.1f} s"
    for d in dead + slow:
        metrics, seconds = results[d["name"]]
        assert metrics.get("citydc_snmp_up") == 0 and metrics.get("reason:timeout") == 1, (d["name"], metrics)
        assert seconds < SCRAPE_TIMEOUT, f"{d['name']} held its scrape {seconds:.1f} s"
