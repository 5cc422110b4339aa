"""Restarting ``citydc collect snmp`` keeps the 32-bit wrap carries: after the simulated switch's Gi1/0/2
wrapped, the exporter process is stopped and started again from the same state file; the exported counter
continues from the carried value and Prometheus sees no reset and no spike across the restart.

Three runs of the same scenario:
* stopped with SIGTERM: the state is saved at stop;
* killed with SIGKILL: only the periodic save (``snmp.state_save_seconds``, 2 s here) exists;
* the negative control, ``state_dir: null``: nothing is saved, and the restart must show up as the
  reset it then is (the counter falls from above 2^32 to the device's raw value, ``resets()`` is 1), so
  the two runs above pass because of the saved state, not by accident.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
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


def saved_carries(path: Path) -> list[list]:
    """Return the saved (column, ifIndex, raw, carry) entries of Gi1/0/2's ifInOctets in a state file."""
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    return [c for t in saved["targets"] for c in t["counters"] if c[1] == WRAP_INDEX and c[0] == "ifInOctets"]


def _answers() -> bool:
    try:
        return "citydc_snmp_exporter" in http_get("/metrics")
    except OSError:
        return False


@dataclass
class Run:
    """One restart scenario's observations."""

    before: float  # exported just before the stop (carried: above 2^32)
    after: float  # exported by the restarted process at its first poll
    restored: float | None  # citydc_snmp_counter_state_restored_total{outcome="restored"} after the restart
    resets: float  # Prometheus resets() over the wrap and the restart
    peak_rate: float  # the highest 3 s rate() over the same window
    carries_at_stop: list  # the state file's Gi1/0/2 carry when the process was gone


@pytest.fixture(scope="module")
def lab(lab_up):
    lab_up("prometheus", "snmpsim-reboot")
    os.environ.update(lab_snmp_env())


def run_restart(tmp: Path, stop_with: signal.Signals, **snmp: object) -> Run:
    """Given a folder, the signal that ends the first exporter process and ``snmp:`` settings, run the
    scenario: fresh simulator, exporter up until Gi1/0/2 wrapped and Prometheus scraped the carried value,
    stop, start again from the same config, and return what was seen."""
    env = lab_snmp_env()
    doc = lab_config(listen=f"{ports.HOST}:{ports.SNMP_EXPORTER}", **snmp)
    doc["devices"] = [d for d in doc["devices"] if d["name"] == REBOOT.name]
    target = doc["devices"][0]["address"]
    cfg_path = tmp / "citydc.yaml"
    cfg_path.write_text(yaml.safe_dump(doc, allow_unicode=True))  # state_dir default: var/snmp-state
    state_path = tmp / "var" / "snmp-state" / state_file_name(ports.HOST, ports.SNMP_EXPORTER)
    res = execute.run("citydc", (CITYDC, "-c", str(cfg_path), "collect", "snmp-targets", "-o",
                                 str(file_sd_dir(LabContext()) / "citydc-snmp.json")), env=env, timeout=60)
    assert res.ok, res.masked_stderr()
    running: list[tuple[subprocess.Popen, processes.ProcessRecord]] = []

    def start() -> None:
        proc = processes.spawn([CITYDC, "-c", str(cfg_path), "collect", "snmp"], log_path=tmp / "exporter.log",
                               env=env)
        running.append((proc, processes.record(proc.pid, "citydc collect snmp")))
        wait_until(_answers, 20, "the exporter answers on /metrics")

    def stop(sig: signal.Signals) -> None:
        (proc, rec), = running
        running.clear()
        assert processes.alive(rec), "the exporter was not running"
        proc.send_signal(sig)
        assert proc.wait(20) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)

    try:
        SERVICES["snmpsim-reboot"].reboot(LabContext())  # a fresh simulator: Gi1/0/2 wraps 25 s from now
        sim_started = time.time()
        start()
        wait_until(lambda: (exported_counter(target) or 0) > 2**32, 45,
                   "Gi1/0/2 wrapped and the exporter carried it")
        wait_until(lambda: query(f"{SERIES} > 4294967296") != [], 10, "Prometheus scraped the carried value")
        before = exported_counter(target)
        assert before is not None and before > 2**32
        if stop_with == signal.SIGKILL and snmp.get("state_dir", "default") is not None:
            # Only the periodic save survives a SIGKILL: wait for one that holds the carry.
            wait_until(lambda: any(c[3] == 2**32 for c in saved_carries(state_path)), 10,
                       "a periodic save holds the carry")
        stop_at = time.time()
        stop(stop_with)
        carries = saved_carries(state_path)

        start()
        after = exported_counter(target)
        assert after is not None
        restored = sample(http_get("/metrics"),
                          'citydc_snmp_counter_state_restored_total{outcome="restored",site="siwei"}')
        wait_until(lambda: float(query(f"timestamp({SERIES})")[0]["value"][1]) > time.time() - 2, 10,
                   "Prometheus scraped the restarted exporter")
        time.sleep(3)
        at = time.time() - 1
        window = int(at - (sim_started + 15))
        assert at - window < stop_at < at
        resets = query(f"resets({SERIES}[{window}s])", at)
        assert len(resets) == 1, resets
        peak = query(f"max_over_time(rate({SERIES}[3s])[{window}s:1s])", at)
        return Run(before, after, restored, float(resets[0]["value"][1]), float(peak[0]["value"][1]), carries)
    finally:
        processes.stop([rec for _, rec in running])


def assert_carried_across(run: Run) -> None:
    assert run.carries_at_stop and run.carries_at_stop[0][3] == 2**32, run.carries_at_stop
    assert run.after >= run.before, f"after the restart {run.after} < before {run.before}"
    assert run.after > 2**32
    assert run.restored == 1
    # Prometheus across the wrap and the restart: no reset, and no rate spike (a lost carry would be
    # counted as 4.3 GB in one step by rate()).
    assert run.resets == 0
    assert run.peak_rate < rate_of(REBOOT, WRAP_INDEX, "ifInOctets") * 1.5, "the restart showed up as a spike"


def test_carry_survives_an_exporter_restart_sigterm(lab, tmp_path):
    assert_carried_across(run_restart(tmp_path, signal.SIGTERM))


def test_carry_survives_a_sigkill_through_the_periodic_save(lab, tmp_path):
    assert_carried_across(run_restart(tmp_path, signal.SIGKILL, state_save_seconds=2))


def test_without_saved_state_the_restart_is_a_reset(lab, tmp_path):
    # The negative control of the two tests above, automated: the same scenario without a state file.
    run = run_restart(tmp_path, signal.SIGTERM, state_dir=None)
    assert run.carries_at_stop == []
    assert run.after < 2**32 < run.before, "without a state file the carry cannot survive"
    assert run.restored is None
    assert run.resets == 1
    with pytest.raises(AssertionError):
        assert_carried_across(run)
