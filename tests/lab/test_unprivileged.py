"""Least privilege: the SNMP exporter and the NetFlow collector run as the lab's unprivileged user
``citydc-lab`` (no capabilities, like the systemd units of docs/operations.md), with their config,
state and flow output owned by that user and private. The exporter polls the lab's snmpd and saves
its counter state; the collector decodes datagrams and, without CAP_NET_ADMIN, says that the
kernel capped its receive buffer at net.core.rmem_max (the fallback of SO_RCVBUFFORCE).

The interpreter is the system's /usr/bin/python3 (3.11, the same ABI as the virtualenv's) with the
virtualenv's site-packages added: the virtualenv's own interpreter lives under /root, which an
unprivileged user cannot enter. The code run is this checkout's, as in every other lab test."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from citydc.collectors.netflow import synth
from citydc.lab import ports, processes
from citydc.lab.elasticsearch import LAB_USER, Elasticsearch

pytestmark = pytest.mark.lab

SYSTEM_PYTHON = "/usr/bin/python3"
LAUNCH = ("import site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv[0] = 'citydc'; "
          "from citydc.cli.main import main; main()")
SNMP_PORT = ports.SNMP_EXPORTER_TLS


def proc_status(pid: int) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


@pytest.fixture
def home():
    user = Elasticsearch().user()  # creates the lab's unprivileged user (root only)
    assert user == LAB_USER, "the lab must run as root to start processes as another user"
    entry = pwd.getpwnam(user)
    d = Path(tempfile.mkdtemp(prefix="citydc-unprivileged-"))
    os.chown(d, entry.pw_uid, entry.pw_gid)
    d.chmod(0o700)
    yield d, entry
    shutil.rmtree(d, ignore_errors=True)


def test_snmp_exporter_and_netflow_collector_run_unprivileged(lab_up, lab_env, home) -> None:
    lab_up("snmpd")
    d, entry = home
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    doc = {"sites": [{"id": "siwei", "name": "Siwei"}],
           "snmp_auth": {"lab": {"version": "2c", "community": "env:CITYDC_SNMP_COMMUNITY"}},
           "devices": [{"name": "lab-host", "address": f"{ports.HOST}:{ports.SNMPD}", "site": "siwei",
                        "role": "server", "snmp_auth": "lab"}],
           "snmp": {"listen": f"{ports.HOST}:{SNMP_PORT}", "state_dir": "state/snmp", "state_save_seconds": 1},
           "netflow": {"listeners": [{"port": ports.NETFLOW_HARDEN, "site": "siwei",
                                      "receive_buffer_bytes": 2 * rmem_max}],
                       "exporters": [{"address": "127.0.0.1"}]}}
    cfg = d / "citydc.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    cfg.chmod(0o600)
    os.chown(cfg, entry.pw_uid, entry.pw_gid)
    site_packages = sysconfig.get_paths()["purelib"]
    assert Path(sys.prefix, "lib").exists() and site_packages.startswith(sys.prefix)
    base = [SYSTEM_PYTHON, "-c", LAUNCH, site_packages, "-c", str(cfg), "collect"]
    snmp = processes.spawn([*base, "snmp"], log_path=d / "snmp.log", user=LAB_USER, cwd=d)
    netflow = processes.spawn([*base, "netflow", "--no-snmp", "--metrics",
                               f"{ports.HOST}:{ports.NETFLOW_HARDEN_METRICS}",
                               "--flow-output", str(d / "flows" / "flows.jsonl")],
                              log_path=d / "netflow.log", user=LAB_USER, cwd=d)
    records = [processes.record(p.pid, "citydc") for p in (snmp, netflow)]
    try:
        snmp_url = f"http://{ports.HOST}:{SNMP_PORT}/snmp?target={ports.HOST}:{ports.SNMPD}&module=if_mib"
        metrics_url = f"http://{ports.HOST}:{ports.NETFLOW_HARDEN_METRICS}/metrics"
        deadline = time.monotonic() + 40
        while True:
            try:
                with urllib.request.urlopen(snmp_url, timeout=10) as resp:
                    body = resp.read().decode()
                with urllib.request.urlopen(metrics_url, timeout=10) as resp:
                    resp.read()
                break
            except OSError:
                logs = (d / "snmp.log").read_text() + (d / "netflow.log").read_text()
                assert time.monotonic() < deadline and snmp.poll() is None and netflow.poll() is None, logs
                time.sleep(0.5)
        assert 'citydc_snmp_up{device="lab-host"' in body and "} 1.0" in body.split("citydc_snmp_up{")[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for data in synth.v5_datagrams(synth.random_flows(90, seed=4)):
                sock.sendto(data, (ports.HOST, ports.NETFLOW_HARDEN))
        deadline = time.monotonic() + 20
        while 'citydc_netflow_records_total{exporter="127.0.0.1",site="siwei",version="v5"} 90.0' not in body:
            assert time.monotonic() < deadline, body[-3000:]
            time.sleep(0.5)
            with urllib.request.urlopen(metrics_url, timeout=10) as resp:
                body = resp.read().decode()
        for proc in (snmp, netflow):  # really unprivileged: its user, no effective capability
            status = proc_status(proc.pid)
            assert status["Uid"].split()[:2] == [str(entry.pw_uid)] * 2, status["Uid"]
            assert int(status["CapEff"], 16) == 0, status["CapEff"]
        time.sleep(1.5)  # one state save period
    finally:
        processes.stop(records)
        for proc in (snmp, netflow):
            proc.wait(10)
    log = (d / "netflow.log").read_text()
    assert "net.core.rmem_max caps it for a process without CAP_NET_ADMIN" in log, log
    state = list((d / "state" / "snmp").iterdir())
    written = [*state, d / "state" / "snmp", d / "flows", d / "flows" / "flows.jsonl"]
    assert state, (d / "snmp.log").read_text()
    for path in written:
        st = path.stat()
        assert st.st_uid == entry.pw_uid and stat.S_IMODE(st.st_mode) & 0o077 == 0, (path, oct(st.st_mode))
