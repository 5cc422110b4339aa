"""Stopping ``citydc collect snmp`` with SIGTERM after SNMPv3 polls logs nothing at ERROR.

pysnmp 7's asyncio dispatcher keeps a timer task (``AsyncioDispatcher.handle_timeout``) once it has a
transport; an exporter whose loop ended with that task pending printed "ERROR asyncio: Task was
destroyed but it is pending!" on every stop (journald noise at each restart). The real exporter polls
a real net-snmp ``snmpd`` of this test (SNMPv3 user, authPriv, on 127.0.0.1), then gets SIGTERM: once
after a finished scrape, once while a poll of a silent device is in flight.

Those two need Debian's ``snmpd`` (lab/apt-packages.txt, installed by ``make setup``); they fail without
it. The engine's own stop (the same code in one process, no snmpd) is checked last: no task is left
pending, and a poll in flight at the stop returns at once, up 0, instead of waiting for its budget.
"""

from __future__ import annotations

import gc
import http.client
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from citydc.collectors.snmp.engine import STOPPED, Engine
from citydc.config.models import Config

SNMPD = Path("/usr/sbin/snmpd")
CITYDC = str(Path(sys.executable).with_name("citydc"))
PORTS = range(12000, 12101)  # the loopback ports this test may take
USER = "citydc-stop"


def free_port(kind: socket.SocketKind, taken: set[int]) -> int:
    """Return a port of PORTS that 127.0.0.1 can bind for ``kind`` (UDP or TCP) and not in ``taken``."""
    for port in PORTS:
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise AssertionError(f"no free port in {PORTS.start}-{PORTS.stop - 1} on 127.0.0.1")


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a process this test started, by its PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Agent:
    address: str  # 127.0.0.1:PORT of the snmpd
    silent: str  # 127.0.0.1:PORT where nothing answers
    env: dict[str, str]  # the exporter's environment: the v3 pass phrases, by reference from the config


@pytest.fixture
def snmpd_v3(tmp_path: Path) -> Iterator[Agent]:
    if not SNMPD.exists():  # `make setup` installs it: a missing one fails, never skips
        pytest.fail(f"{SNMPD} is missing: install Debian's snmpd (lab/apt-packages.txt, `make setup`)")
    taken: set[int] = set()
    port, silent = free_port(socket.SOCK_DGRAM, taken), free_port(socket.SOCK_DGRAM, taken)
    auth_key, priv_key = secrets.token_hex(12), secrets.token_hex(12)
    conf = tmp_path / "snmpd.conf"
    conf.write_text(f"agentAddress udp:127.0.0.1:{port}\n"
                    f"createUser {USER} SHA256 {auth_key} AES {priv_key}\n"
                    f"rouser {USER} priv\n"
                    "sysName stop-test\n")
    conf.chmod(0o600)
    persistent = tmp_path / "snmpd-persistent"  # snmpd keeps its USM users and engine boots here, not /var/lib
    persistent.mkdir()
    # -f: foreground, so the PID is snmpd's own; -C: only this config; -I -smux: no listener on port 199.
    proc = subprocess.Popen([str(SNMPD), "-f", "-C", "-c", str(conf), "-Lf", str(tmp_path / "snmpd.log"),
                             "-I", "-smux"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={"PATH": os.environ.get("PATH", ""), "MIBS": "",
                                 "SNMP_PERSISTENT_DIR": str(persistent)})
    try:
        yield Agent(f"127.0.0.1:{port}", f"127.0.0.1:{silent}",
                    {**os.environ, "CITYDC_STOP_AUTH": auth_key, "CITYDC_STOP_PRIV": priv_key})
    finally:
        stop_process(proc)


@dataclass
class Exporter:
    proc: subprocess.Popen
    base: str
    stderr: Path

    def get(self, path: str, timeout: float = 15) -> str:
        with urllib.request.urlopen(self.base + path, timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.read().decode()

    def sigterm(self) -> str:
        """Send SIGTERM; return the exporter's stderr once it exited (0)."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0
        return self.stderr.read_text()


@pytest.fixture
def exporter(snmpd_v3: Agent, tmp_path: Path) -> Iterator[Exporter]:
    listen = free_port(socket.SOCK_STREAM, set())
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text(yaml.safe_dump({
        "sites": [{"id": "siwei", "name": "Siwei"}],
        "snmp": {"listen": f"127.0.0.1:{listen}", "state_dir": None},
        "snmp_auth": {"v3": {"version": "3", "username": USER, "auth_protocol": "SHA256",
                             "auth_key": "env:CITYDC_STOP_AUTH", "priv_protocol": "AES",
                             "priv_key": "env:CITYDC_STOP_PRIV"}},
        "devices": [
            {"name": "sw1", "address": snmpd_v3.address, "site": "siwei", "role": "access", "snmp_auth": "v3"},
            {"name": "sw2", "address": snmpd_v3.silent, "site": "siwei", "role": "access", "snmp_auth": "v3"}],
    }))
    stderr = tmp_path / "exporter.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen([CITYDC, "-c", str(cfg), "collect", "snmp"], env=snmpd_v3.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        exp = Exporter(proc, f"http://127.0.0.1:{listen}", stderr)
        for _ in range(100):
            assert proc.poll() is None, stderr.read_text()
            try:
                exp.get("/metrics", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        yield exp
    finally:
        stop_process(proc)


def scrape_up(exp: Exporter, target: str) -> float | None:
    """Scrape the target through the exporter; return its citydc_snmp_up."""
    match = re.search(r"^citydc_snmp_up\{.*\} (\S+)$", exp.get(f"/snmp?target={target}"), re.MULTILINE)
    return None if match is None else float(match.group(1))


def v3_scrape(exp: Exporter, agent: Agent) -> None:
    """Scrape the snmpd through the exporter until it answers (snmpd may still be starting)."""
    for _ in range(20):
        if scrape_up(exp, agent.address) == 1:
            return
        time.sleep(0.25)
    raise AssertionError(f"the exporter never polled snmpd at {agent.address} over SNMPv3")


def assert_quiet(stderr: str) -> None:
    assert "Task was destroyed" not in stderr, stderr
    assert "ERROR" not in stderr, stderr
    assert "Traceback" not in stderr, stderr


def test_sigterm_after_a_v3_scrape_logs_no_error(snmpd_v3, exporter):
    v3_scrape(exporter, snmpd_v3)
    assert_quiet(exporter.sigterm())


def test_sigterm_during_a_v3_poll_answers_and_logs_no_error(snmpd_v3, exporter):
    v3_scrape(exporter, snmpd_v3)
    answers: list[object] = []

    def scrape_silent() -> None:
        try:
            answers.append(scrape_up(exporter, snmpd_v3.silent))
        # The process may exit before its HTTP thread wrote the answer, or after the headers only (IncompleteRead).
        except (OSError, http.client.HTTPException) as exc:
            answers.append(exc)

    scrape = threading.Thread(target=scrape_silent, daemon=True)
    scrape.start()
    for _ in range(100):  # until the exporter has the silent device's poll in flight
        if "citydc_snmp_exporter_polls_in_flight 1.0" in exporter.get("/metrics"):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the poll of the silent device never started")
    stderr = exporter.sigterm()
    scrape.join(30)
    # The poll was ended by the stop, not left to its budget: up 0 (or the connection closed by the exit).
    closed = (OSError, http.client.HTTPException)
    assert len(answers) == 1 and (answers[0] == 0 or isinstance(answers[0], closed)), answers
    assert_quiet(stderr)


def silent_v3_engine() -> tuple[Engine, str]:
    """Return a started engine whose one device (SNMPv3, noAuthNoPriv) is a UDP port where nothing answers."""
    silent = f"127.0.0.1:{free_port(socket.SOCK_DGRAM, set())}"
    engine = Engine(Config.model_validate({
        "sites": [{"id": "siwei", "name": "Siwei"}],
        "snmp_auth": {"v3": {"version": "3", "username": "u", "security_level": "noAuthNoPriv"}},
        "devices": [{"name": "sw1", "address": silent, "site": "siwei", "role": "access", "snmp_auth": "v3"}],
    }))
    engine.start()
    return engine, silent


def test_stop_closes_pysnmps_dispatcher_and_leaves_no_task_pending(caplog):
    engine, silent = silent_v3_engine()
    try:
        assert engine.poll(engine.resolve(silent), 0.3).reason == "timeout"  # pysnmp's dispatcher now has its timer
    finally:
        engine.stop()
    assert engine.engine.transport_dispatcher is None
    assert engine.loop.is_closed()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        del engine
        gc.collect()  # a task still pending would be reported here, as at the exit of citydc
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


def test_a_poll_in_flight_at_stop_returns_at_once_down():
    engine, silent = silent_v3_engine()
    results = []
    poll = threading.Thread(target=lambda: results.append(engine.poll(engine.resolve(silent), 600)), daemon=True)
    try:
        poll.start()
        for _ in range(200):  # until the poll is on the loop
            if engine.inflight:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the poll never started")
    finally:
        engine.stop()
    poll.join(30)
    # Its budget is 600 s: only the stop can have ended it.
    assert [(r.up, r.reason, r.message) for r in results] == [(False, "timeout", STOPPED)]
