"""The fast v2c path against the pysnmp path on the same real agents (snmpsim from the lab).

Proves: for every static recording of a real device and a generated 48-port switch, a poll over
citydc's own BER codec exports exactly the samples a poll over pysnmp exports (values, labels,
interfaces, request count); and the path each poll ran on is visible on /metrics. The equality
with net-snmp's snmpbulkwalk is proven in test_snmp_exporter.py, which runs on the fast path.
"""

from __future__ import annotations

import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from citydc.collectors.snmp.exporter import Exporter
from citydc.config.models import Config
from citydc.lab.snmpsim import RECORDED, lab_config, lab_snmp_env

pytestmark = pytest.mark.lab

VOLATILE = {"citydc_snmp_scrape_duration_seconds"}
# The generated switches' counters and uptime grow with time (snmpsim numeric variation): compare their keys only.
GROWING = ("_total", "citydc_snmp_sys_uptime_seconds")


@pytest.fixture(scope="module")
def exporters(lab_up, lab_env):
    lab_up("snmpsim", "snmpsim-switches")
    os.environ.update(lab_snmp_env())
    out = {}
    for path in ("fast", "pysnmp"):
        cfg = Config.model_validate(lab_config(timeout_seconds=1.0, retries=1, scrape_timeout_seconds=5,
                                               v2c_path=path))
        exp = Exporter(cfg)
        exp.start()
        out[path] = exp
    yield cfg, out
    for exp in out.values():
        exp.stop()


def samples(exp: Exporter, address: str, growing: bool) -> tuple[float, set[tuple]]:
    """Poll one device; return (citydc_snmp_up, every sample but the timing ones as (name, labels, value)).

    With ``growing``, the value of counters and uptime is left out (None).
    """
    job = exp.resolve(address)
    text = exp.render(job, exp.poll(job, 5)).decode()
    out, up = set(), None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "citydc_snmp_up":
                up = s.value
            if s.name not in VOLATILE:
                value = None if growing and s.name.endswith(GROWING) else s.value
                out.add((s.name, tuple(sorted(s.labels.items())), value))
    return up, out


@pytest.mark.parametrize("device", [f"rec-{r}" for r in RECORDED] + ["sw-siwei-acc1", "sw-fengshan-old1"])
def test_fast_path_exports_exactly_what_pysnmp_exports(exporters, device):
    cfg, exps = exporters
    address = next(d.address for d in cfg.devices if d.name == device)
    growing = not device.startswith("rec-")
    up_fast, fast = samples(exps["fast"], address, growing)
    up_ref, ref = samples(exps["pysnmp"], address, growing)
    assert up_fast == up_ref == 1
    assert any(name == "citydc_snmp_if_receive_bytes_total" for name, _, _ in fast)
    assert fast == ref, sorted(fast ^ ref)[:10]


def test_the_path_of_each_poll_is_on_metrics(exporters):
    cfg, exps = exporters
    v2c = next(d for d in cfg.devices if d.name == "sw-siwei-acc2")
    v3 = next(d for d in cfg.devices if d.name == "sw-siwei-core1")
    assert cfg.snmp_auth[v3.snmp_auth].version == "3"
    exp = exps["fast"]

    def polls(path: str) -> float:
        return exp.registry.get_sample_value("citydc_snmp_exporter_polls_total", {"site": "siwei", "path": path}) or 0

    before = polls("fast_v2c"), polls("pysnmp")
    assert exp.poll(exp.resolve(v2c.address), 5).up
    exp.poll(exp.resolve(v3.address), 5)  # v3 goes through pysnmp whatever v2c_path says
    assert (polls("fast_v2c"), polls("pysnmp")) == (before[0] + 1, before[1] + 1)
