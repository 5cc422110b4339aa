"""Restarting ``citydc collect snmp`` keeps the 32-bit wrap carries: after the simulated switch's Gi1/0/2
wrapped, the exporter process is stopped (SIGTERM) and started again from the same state file; the exported
counter continues from the carried value and Prometheus sees no reset and no spike across the restart.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from citydc import execute
from citydc.cli.collect_snmp import state_file_name
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, wait_until
from citydc.lab.prometheus import file_sd_dir, query
from citydc.lab.registry import SERVICES
from citydc.lab.snmpsim import REBOOT, lab_config, lab_snmp_env
from citydc.lab.snmpsim_data import rate_of

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
EXPORTER = f"http://{ports.HOST}:{ports.SNMP_EXPORTER}"
WRAP_INDEX = 10102  # Gi1/0/2: 32-bit counters only, wraps 25 s after the simulator starts
SERIES = f'citydc_snmp_if_receive_bytes_total{{device="sw-siwei-reboot",ifIndex="{WRAP_INDEX}"}}'


def http_get(path: str) -> str:
    with urllib.request.urlopen(EXPORTER + path, timeout=10) as resp:  # noqa: S310 - loopback
        return resp.read().decode()


def sample(text: str, prefix: str) -> float | None:
    """Given an exposition and the start of a sample line (name and labels), return its value."""
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def exported_counter(target: str) -> float | None:
    """Return the exported receive bytes of Gi1/0/2, polled now through the exporter."""
    for line in http_get(f"/snmp?target={target}").splitlines():
        if line.startswith("citydc_snmp_if_receive_bytes_total{") and f'ifIndex="{WRAP_INDEX}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture(scope="module")
def exporter(lab_up, tmp_path_factory):
    """Return (start, stop, config dir, target): start/stop `citydc collect snmp` on the lab's exporter port."""
    lab_up("prometheus", "snmpsim-reboot")
    env = {**lab_snmp_env()}
    os.environ.update(env)
    doc = lab_config(listen=f"{ports.HOST}:{ports.SNMP_EXPORTER}")
    doc["devices"] = [d for d in doc["devices"] if d["name"] == REBOOT.name]
    cfg_dir = tmp_path_factory.mktemp("snmp-restart")
    cfg_path = cfg_dir / "citydc.yaml"
    cfg_path.write_text(yaml.safe_dump(doc, allow_unicode=True))  # state_dir: the default, var/snmp-state
    res = execute.run("citydc", (CITYDC, "-c", str(cfg_path), "collect", "snmp-targets", "-o",
                                 str(file_sd_dir(LabContext()) / "citydc-snmp.json")), env=env, timeout=60)
    assert res.ok, res.masked_stderr()
    running: list[processes.ProcessRecord] = []

    def start() -> None:
        proc = processes.spawn([CITYDC, "-c", str(cfg_path), "collect", "snmp"], log_path=cfg_dir / "exporter.log",
                               env=env)
        running.append(processes.record(proc.pid, "citydc collect snmp"))
        wait_until(lambda: _answers(), 20, "the exporter answers on /metrics")

    def stop() -> None:
        still = processes.stop(running)
        running.clear()
        assert still, "the exporter was not running"

    yield start, stop, cfg_dir, doc["devices"][0]["address"]
    processes.stop(running)


def _answers() -> bool:
    try:
        return "citydc_snmp_exporter" in http_get("/metrics")
    except OSError:
        return False


def test_carry_survives_an_exporter_restart(exporter):
    start, stop, cfg_dir, target = exporter
    ctx = LabContext()
    SERVICES["snmpsim-reboot"].reboot(ctx)  # a fresh simulator: Gi1/0/2 wraps 25 s from now
    sim_started = time.time()
    start()
    wait_until(lambda: (exported_counter(target) or 0) > 2**32, 45, "Gi1/0/2 wrapped and the exporter carried it")
    wait_until(lambda: query(f"{SERIES} > 4294967296") != [], 10, "Prometheus scraped the carried value")
    before = exported_counter(target)
    assert before is not None and before > 2**32

    stop_at = time.time()
    stop()
    state_path = cfg_dir / "var" / "snmp-state" / state_file_name(ports.HOST, ports.SNMP_EXPORTER)
    saved = json.loads(state_path.read_text())
    carries = [c for t in saved["targets"] for c in t["counters"] if c[1] == WRAP_INDEX and c[0] == "ifInOctets"]
    assert carries and carries[0][3] == 2**32, carries

    start()
    after = exported_counter(target)
    assert after is not None and after >= before, f"after the restart {after} < before {before}"
    assert after > 2**32
    restored = sample(http_get("/metrics"),
                      'citydc_snmp_counter_state_restored_total{outcome="restored",site="siwei"}')
    assert restored == 1

    # Prometheus across the wrap and the restart: no reset, and no rate spike (a lost carry would be
    # counted as 4.3 GB in one step by rate()).
    wait_until(lambda: float(query(f"timestamp({SERIES})")[0]["value"][1]) > time.time() - 2, 10,
               "Prometheus scraped the restarted exporter")
    time.sleep(3)
    at = time.time() - 1
    window = int(at - (sim_started + 15))
    assert at - window < stop_at < at
    result = query(f"resets({SERIES}[{window}s])", at)
    assert len(result) == 1 and float(result[0]["value"][1]) == 0, result
    wrap_rate = rate_of(REBOOT, WRAP_INDEX, "ifInOctets")
    peak = query(f"max_over_time(rate({SERIES}[3s])[{window}s:1s])", at)
    assert float(peak[0]["value"][1]) < wrap_rate * 1.5, "the restart showed up as a spike"
