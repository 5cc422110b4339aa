"""Prometheus from the lab scrapes ``citydc collect snmp`` through the file_sd that
``citydc collect snmp-targets`` writes; rate()/increase() over a 32-bit wrap and over a reboot,
checked through Prometheus's HTTP API against the simulator's known counter rates.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from citydc import execute
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, wait_until
from citydc.lab.prometheus import file_sd_dir, query
from citydc.lab.registry import SERVICES
from citydc.lab.snmpsim import REBOOT, lab_config, lab_snmp_env
from citydc.lab.snmpsim_data import rate_of

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
SERIES = 'citydc_snmp_if_receive_bytes_total{{device="sw-siwei-reboot",ifIndex="{i}"}}'


def value(expr: str, at: float) -> float:
    result = query(expr, at)
    assert len(result) == 1, f"{expr}: {result}"
    return float(result[0]["value"][1])


@pytest.fixture(scope="module")
def scraped(lab_up, lab_env, tmp_path_factory):
    lab_up("prometheus", "snmpsim-reboot")
    env = {**lab_snmp_env()}
    os.environ.update(env)
    doc = lab_config(listen=f"{ports.HOST}:{ports.SNMP_EXPORTER}")
    doc["devices"] = [d for d in doc["devices"] if d["name"] == REBOOT.name]
    cfg_path = tmp_path_factory.mktemp("prom") / "citydc.yaml"
    cfg_path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    log = cfg_path.with_name("exporter.log")
    proc = processes.spawn([CITYDC, "-c", str(cfg_path), "collect", "snmp"], log_path=log, env=env)
    record = processes.record(proc.pid, "citydc collect snmp")
    res = execute.run("citydc", (CITYDC, "-c", str(cfg_path), "collect", "snmp-targets", "-o",
                                 str(file_sd_dir(LabContext()) / "citydc-snmp.json")), env=env, timeout=60)
    assert res.ok, res.masked_stderr()
    assert "job_name: citydc_snmp" in res.stdout + res.stderr
    yield SERVICES["snmpsim-reboot"]
    processes.stop([record])


def test_rate_over_32bit_wrap_and_over_reboot(scraped):
    ctx = LabContext()
    # A fresh start: Gi1/0/2 (ifIndex 10102, 32-bit only) wraps 25 s from now at 25 MB/s.
    scraped.reboot(ctx)
    started = time.time()
    wait_until(lambda: query(SERIES.format(i=10102)) != [], 20, "Prometheus scraped the exporter")
    time.sleep(max(0.0, started + 40 - time.time()))
    at = time.time() - 1
    wrap_rate = rate_of(REBOOT, 10102, "ifInOctets")
    # The window [at-20, at] holds the wrap (about started+25).
    increase = value(f"increase({SERIES.format(i=10102)}[20s])", at)
    assert increase == pytest.approx(wrap_rate * 20, rel=0.1)
    assert value(f"resets({SERIES.format(i=10102)}[20s])", at) == 0  # carried: no false reset
    assert value(SERIES.format(i=10102), at) > 2**32
    assert value('citydc_snmp_counter_wraps_total{device="sw-siwei-reboot"}', at) >= 1

    # Reboot: 64-bit counters restart from 0; the exported series resets once, with no spike.
    hc_rate = rate_of(REBOOT, 10601, "ifHCInOctets")
    assert hc_rate and hc_rate > 0
    reboots_before = value('citydc_snmp_counter_resets_total{device="sw-siwei-reboot",reason="reboot"}', at)
    rebooted_at = time.time()
    scraped.reboot(ctx)
    time.sleep(max(0.0, rebooted_at + 20 - time.time()))
    at2 = time.time() - 1
    window = int(at2 - (rebooted_at - 10))
    series = SERIES.format(i=10601)
    increase = value(f"increase({series}[{window}s])", at2)
    assert hc_rate * window * 0.8 < increase < hc_rate * window * 1.1
    assert value(f"resets({series}[{window}s])", at2) == 1
    peak = value(f"max_over_time(rate({series}[3s])[{window}s:1s])", at2)
    assert peak < hc_rate * 1.5, "the reboot showed up as a spike"
    reboots = value('citydc_snmp_counter_resets_total{device="sw-siwei-reboot",reason="reboot"}', at2)
    assert reboots == reboots_before + 1
