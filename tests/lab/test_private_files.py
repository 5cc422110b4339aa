"""Private by default: run the commands whose output the demo writes — backup init/run/drill (restic
repository, run state, drill evidence, textfile metrics), the security log (spool, SQLite store,
verify), the SNMP exporter (counter state), the NetFlow collector (flow output) and the file_sd
targets — each started with the usual umask 022, then walk every file and directory they made:
none may be readable by others (nor by the group: no files.group is configured). The only
exceptions are the node_exporter textfile metrics (``*.prom``, 0644 in a 0755 folder: metrics only)
and the file_sd targets (0644: device names and addresses Prometheus' user reads)."""

from __future__ import annotations

import os
import socket
import stat
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from citydc import execute
from citydc.collectors.netflow import synth
from citydc.lab import ports, processes

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
SNMP_PORT = ports.SNMP_EXPORTER_TLS  # free while test_web_tls.py is not running (same lock)


def config(root: Path) -> Path:
    (root / "data").mkdir()
    for i in range(5):
        (root / "data" / f"config-{i}.txt").write_text(f"hostname sw{i}\n")
    repo = {"url": str(root / "restic" / "siwei"), "password": "env:CITYDC_RESTIC_PASSWORD", "site": "siwei"}
    doc = {"sites": [{"id": "siwei", "name": "Siwei"}],
           "snmp_auth": {"lab": {"version": "2c", "community": "env:CITYDC_SNMP_COMMUNITY"}},
           "devices": [{"name": "lab-host", "address": f"{ports.HOST}:{ports.SNMPD}", "site": "siwei",
                        "role": "server", "snmp_auth": "lab"}],
           "snmp": {"listen": f"{ports.HOST}:{SNMP_PORT}", "state_dir": str(root / "var" / "snmp-state"),
                    "state_save_seconds": 1},
           "netflow": {"listeners": [{"port": ports.NETFLOW_HARDEN, "site": "siwei"}],
                       "exporters": [{"address": "127.0.0.1"}]},
           "backup": {"jobs": [{"name": "siwei-configs", "site": "siwei", "sources": [str(root / "data")],
                                "local_repo": repo, "drill_sample_files": 2}],
                      "state_dir": str(root / "var" / "backup"), "textfile_dir": str(root / "var" / "textfile")},
           "security_log": {"spool_dir": str(root / "var" / "spool"),
                            "sink": {"kind": "sqlite", "path": str(root / "var" / "seclog.db")}}}
    path = root / "citydc.yaml"
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def run(*argv: str, timeout: float = 300) -> execute.Result:
    res = execute.run("citydc", (CITYDC, *argv), timeout=timeout)
    assert res.ok, f"{argv}: {res.masked_stderr()[-2000:]}"
    return res


def exposed(root: Path) -> list[str]:
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            if path.is_symlink():
                continue
            textfile = (path.parent.name == "textfile" and path.suffix == ".prom") or path.name == "textfile"
            if (textfile or path.name == "targets.json") and mode & 0o022 == 0:
                continue  # metrics only, for node_exporter's user; file_sd targets, for Prometheus'
            if mode & 0o077:
                bad.append(f"{path} {mode:04o}")
    return bad


def test_everything_the_operations_cycle_writes_is_private(lab_up, lab_env, tmp_path: Path) -> None:
    lab_up("snmpd")
    old = os.umask(0o022)  # the usual login umask: citydc must not depend on it (children inherit it)
    try:
        cfg = str(config(tmp_path))
        for action in ("init", "run", "drill"):
            run("-c", cfg, "backup", action, "siwei-configs", "--json")
        run("-c", cfg, "log", "ship")
        run("-c", cfg, "log", "verify")
        run("-c", cfg, "collect", "snmp-targets", "-o", str(tmp_path / "var" / "targets.json"))
        snmp = processes.spawn([CITYDC, "-c", cfg, "collect", "snmp"], log_path=tmp_path / "snmp.log")
        netflow = processes.spawn([CITYDC, "-c", cfg, "collect", "netflow", "--no-snmp", "--metrics",
                                   f"{ports.HOST}:{ports.NETFLOW_HARDEN_METRICS}", "--duration", "8",
                                   "--flow-output", str(tmp_path / "var" / "flows" / "flows.jsonl")],
                                  log_path=tmp_path / "netflow.log")
        records = [processes.record(p.pid, "citydc") for p in (snmp, netflow)]
        try:
            url = f"http://{ports.HOST}:{SNMP_PORT}/snmp?target={ports.HOST}:{ports.SNMPD}&module=if_mib"
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=10) as resp:
                        assert b"citydc_snmp_up" in resp.read()
                    break
                except OSError:
                    assert time.monotonic() < deadline, (tmp_path / "snmp.log").read_text()
                    time.sleep(0.5)
            time.sleep(1.5)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for data in synth.v5_datagrams(synth.random_flows(60, seed=1)):
                    sock.sendto(data, (ports.HOST, ports.NETFLOW_HARDEN))
            assert netflow.wait(30) == 0, (tmp_path / "netflow.log").read_text()
        finally:
            processes.stop(records)
            snmp.wait(10)
    finally:
        os.umask(old)
    made = {p.name for p in (tmp_path / "var").iterdir()}
    assert {"backup", "textfile", "spool", "seclog.db", "snmp-state", "targets.json", "flows"} <= made, made
    assert any((tmp_path / "var" / "snmp-state").iterdir())
    assert (tmp_path / "var" / "flows" / "flows.jsonl").stat().st_size > 0
    assert any((tmp_path / "restic" / "siwei").iterdir())
    bad = exposed(tmp_path / "var") + exposed(tmp_path / "restic")
    assert bad == [], "\n".join(bad)
