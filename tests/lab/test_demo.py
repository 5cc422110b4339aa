"""`citydc demo` is the README's main command: it must run one full, healthy cycle on the lab."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from citydc.lab import ports

pytestmark = pytest.mark.lab


def test_demo_runs_one_healthy_cycle(lab_env):
    proc = subprocess.run([sys.executable, "-m", "citydc.cli.main", "demo", "--json"], capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    steps = {s["step"]: s for s in report["steps"]}
    assert all(s["ok"] for s in report["steps"]), [s for s in report["steps"] if not s["ok"]]
    snmp = steps["snmp"]["rows"]
    assert snmp and all(r["up"] == 1 and r["interfaces"] > 0 for r in snmp)
    assert {r["site"] for r in snmp} == {"siwei", "fengshan"}
    netflow = {r["version"]: r for r in steps["netflow"]["rows"]}
    assert set(netflow) == {"v5", "v9", "ipfix"}, steps["netflow"]
    for version, site in (("v5", "siwei"), ("v9", "siwei"), ("ipfix", "fengshan")):
        # The expected totals are nfdump's, read this run from the same softflowd datagrams.
        row = netflow[version]
        assert (row["exporter"], row["site"]) == ("127.0.0.1", site)
        assert row["nfdump_records"] > 0 and row["nfdump_bytes"] > 0, row
        assert (row["records"], row["bytes"]) == (row["nfdump_records"], row["nfdump_bytes"]), row
    assert "collector exit 0" in steps["netflow"]["detail"]
    for job in ("siwei-ldap", "fengshan-device-configs"):
        rows = steps[f"backup {job}"]["rows"]
        assert {(r["step"], r["repo"]) for r in rows if r["status"] == "success"} >= {
            ("backup", "local"), ("copy", "offsite"), ("drill", "local")}
    assert steps["security log verify"]["detail"].startswith("OK")
    actions = {r["event.action"] for r in steps["security log stats"]["rows"]}
    assert {"demo-started", "backup-run", "backup-copy", "restore-drill"} <= actions
    # No lab secret leaks into what the demo prints.
    assert not any(v in proc.stdout + proc.stderr for v in ports.LAB_ENV.values())
