"""``citydc backup configs`` against the lab's real fake-device server (``python -m citydc.lab.netdevices_run``: fakenos
over SSH, netmiko on our side): secrets masked in what is stored, refused or empty answers never stored, and the
server itself stopping on SIGTERM whatever its clients left behind.

The server listens on a free port of 127.0.0.1:12301-12399 and is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest
import yaml

CITYDC = str(Path(sys.executable).with_name("citydc"))
PASSWORD = "DevPass-Secr3t-unit"
ENABLE = "En4ble-Secr3t-unit"
MASK = re.compile(r"<masked:[0-9a-f]{8}>")

IOS = """\
Building configuration...

Current configuration : 1834 bytes
!
! Last configuration change at {now} by netops
!
version 15.2
hostname r1
!
enable secret 5 $1$mERr$unitENABLEhash
username netops privilege 15 secret 9 $9$unitUSERhash
!
interface GigabitEthernet0/1
 description uplink-core
 ip address 10.10.1.1 255.255.255.0
!
snmp-server community Unit-comm-secret RO
ntp clock-period {ticks}
!
end
"""
EOS = """\
! Command: show running-config
! device: r2 (vEOS-lab, EOS-4.30.1F)
! Uptime: {uptime}
!
hostname r2
!
username netops privilege 15 role network-admin secret sha512 $6$unitEOShash
!
interface Ethernet1
   description uplink-core
!
end
"""
# The lines of finding 2 (secrets the masks missed) and finding 10 (lines the masks garbled), as an IOS box holds them.
FINDING_LINES = """\
snmp-server user v3user v3group v3 auth sha AuthKEY-v3-secret priv aes 128 PrivKEY-v3-secret
snmp-server host 10.10.0.9 version 3 priv v3user
key chain EIGRP-KEYS
 key 1
  key-string 7 KeyString-eigrp-secret
interface Vlan10
 standby 1 authentication md5 key-string HSRP-md5-secret
 vrrp 2 authentication text VRRP-text-secret
interface Serial0/0
 ppp chap hostname r1-chap
 ppp chap password PPP-chap-secret
 ppp pap sent-username r1 password 7 PPP-pap-secret
"""
SECRETS = ["AuthKEY-v3-secret", "PrivKEY-v3-secret", "KeyString-eigrp-secret", "HSRP-md5-secret", "VRRP-text-secret",
           "PPP-chap-secret", "PPP-pap-secret", "Unit-comm-secret", "unitENABLEhash", "unitUSERhash", "unitEOShash",
           PASSWORD, ENABLE]


_GIVEN: set[int] = set()  # ports handed out: a device's server binds later, and fakenos binds with SO_REUSEPORT


def free_port() -> int:
    for port in sorted(set(range(12301, 12400)) - _GIVEN):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _GIVEN.add(port)
            return port
    raise RuntimeError("no free port in 127.0.0.1:12301-12399")


def new_device(base: Path, name: str, platform: str, running: str) -> dict:
    directory = base / "dev" / name
    directory.mkdir(parents=True)
    paramiko.RSAKey.generate(2048).write_private_key_file(str(directory / "host_rsa"))
    (directory / "running.cfg").write_text(running)
    (directory / "startup.cfg").write_text(running)
    return {"name": name, "platform": platform, "port": free_port(), "username": "netops", "password": PASSWORD,
            "enable_secret": ENABLE, "dir": str(directory)}


class Server:
    """``python -m citydc.lab.netdevices_run SPEC`` as the lab runs it."""

    def __init__(self, base: Path, devices: list[dict]):
        spec = base / "spec.json"
        spec.write_text(json.dumps({"devices": devices}))
        self.log = base / "server.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "citydc.lab.netdevices_run", str(spec)],
                                     stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("serving"):
            self.stop()
            raise RuntimeError(f"device server did not start: {self.log.read_text()[-2000:]}")

    def terminate(self, bound: float = 20.0, to: int | None = None) -> int | None:
        """SIGTERM by PID (or to the thread ``to`` of it); the exit code, or None when it was still running
        after ``bound`` seconds (a hang check: it is then killed)."""
        os.kill(to or self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.terminate()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    base = tmp_path_factory.mktemp("configs-devices")
    devices = [new_device(base, "r1", "cisco_ios", IOS), new_device(base, "r2", "arista_eos", EOS)]
    server = Server(base, devices)
    (base / "citydc.yaml").write_text(yaml.safe_dump({
        "sites": [{"id": "siwei", "name": "Siwei"}],
        "device_logins": {"netops": {"username": "netops", "password": "env:T_UNIT_DEV_PW",
                                     "enable_secret": "env:T_UNIT_DEV_EN", "timeout_seconds": 8}},
        "devices": [{"name": d["name"], "address": "127.0.0.1", "site": "siwei", "role": "core",
                     "netmiko_device_type": d["platform"], "login": "netops",
                     "management_address": f"127.0.0.1:{d['port']}"} for d in devices],
        "backup": {"configs": {"repo_dir": "repo", "known_hosts": "kh", "state_dir": "state"}},
        "security_log": {"spool_dir": "spool", "sink": {"kind": "sqlite", "path": "seclog.db"}},
    }, sort_keys=False))
    yield base
    server.stop()


def cli(base: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "T_UNIT_DEV_PW": PASSWORD, "T_UNIT_DEV_EN": ENABLE}
    return subprocess.run([CITYDC, "-c", str(base / "citydc.yaml"), "backup", "configs", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def backup(base: Path, device: str) -> tuple[int, dict]:
    proc = cli(base, "--device", device, "--json")
    return proc.returncode, json.loads(proc.stdout)["devices"][0]


def set_running(base: Path, device: str, text: str) -> None:
    (base / "dev" / device / "running.cfg").write_text(text)


def git(base: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(base / "repo"), *args], capture_output=True, text=True,
                          check=True).stdout


def actions(base: Path) -> list[str]:
    out = []
    for p in sorted((base / "spool").rglob("*")):
        for line in p.read_text(errors="replace").splitlines() if p.is_file() else ():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and "event" in doc:
                out.append(f"{doc['event']['action']}:{doc['event'].get('outcome', '')}")
    return out


def test_masked_repository_holds_no_secret_and_no_garbled_line(fleet):
    set_running(fleet, "r1", IOS.replace("ntp clock-period", FINDING_LINES + "ntp clock-period"))
    rc, r1 = backup(fleet, "r1")
    assert rc == 0 and r1["status"] in ("new", "changed"), r1
    stored = (fleet / "repo" / "siwei" / "r1.cfg").read_text()
    shown = cli(fleet, "diff", "r1").stdout
    history = git(fleet, "log", "-p", "--all")
    for secret in SECRETS:
        assert secret not in stored and secret not in shown and secret not in history, secret
    lines = stored.splitlines()
    for expected in ("version 15.2", "key chain EIGRP-KEYS", " key 1", " ppp chap hostname r1-chap",
                     "snmp-server host 10.10.0.9 version 3 priv v3user",
                     "snmp-server user v3user v3group v3 auth sha <m> priv aes 128 <m>", "  key-string 7 <m>",
                     " standby 1 authentication md5 key-string <m>", " vrrp 2 authentication text <m>",
                     " ppp chap password <m>", " ppp pap sent-username r1 password 7 <m>"):
        assert expected in [MASK.sub("<m>", line) for line in lines], expected


REFUSALS = [
    ("r1", "Command authorization failed.\n"),  # IOS, TACACS+ command authorization refusing the backup user
    ("r1", "% Authorization failed.\n"),
    ("r1", "% Permission denied\n"),
    ("r1", "% Access denied\n"),
    ("r2", "Command authorization failed.\n"),
    ("r2", "% Authorization denied for command 'show running-config': not authorized\n"),  # EOS
    ("r1", ""),  # nothing at all
    ("r2", "  \n\n"),
    ("r1", IOS.split("interface GigabitEthernet0/1")[0]),  # cut short: no closing "end"
]


@pytest.mark.parametrize(("device", "answer"), REFUSALS)
def test_a_refused_or_empty_answer_fails_the_device_and_keeps_what_is_stored(fleet, device, answer):
    good = (IOS if device == "r1" else EOS).replace("hostname", f"banner motd ^good {len(answer)}^\nhostname")
    set_running(fleet, device, good)
    rc, res = backup(fleet, device)
    # the negative control: the same setup stores a good answer, as a change
    assert rc == 0 and res["status"] in ("new", "changed"), res
    path = fleet / "repo" / "siwei" / f"{device}.cfg"
    stored, commits, events = path.read_bytes(), git(fleet, "rev-list", "--count", "HEAD"), len(actions(fleet))

    set_running(fleet, device, answer)
    rc, res = backup(fleet, device)
    assert rc == 1 and (res["status"], res["reason"]) == ("failure", "command"), res
    assert "show running-config" in res["error"]
    assert path.read_bytes() == stored
    assert git(fleet, "rev-list", "--count", "HEAD") == commits
    assert git(fleet, "status", "--porcelain") == ""
    assert actions(fleet)[events:] == ["device-config-backup:failure"]


def authenticated_transport(port: int) -> paramiko.Transport:
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.start_client(timeout=20)
    transport.auth_password("netops", PASSWORD)
    return transport


def left_at_enable_password_prompt(port: int) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - a throwaway test device
    client.connect("127.0.0.1", port, "netops", PASSWORD, look_for_keys=False, allow_agent=False, timeout=20)
    channel = client.invoke_shell()
    channel.settimeout(20)
    channel.send(b"enable\n")
    seen = b""
    while b"Password:" not in seen:
        chunk = channel.recv(4096)
        assert chunk, seen
        seen += chunk
    client.close()  # gone, with its shell at the Password: prompt
    return client


def wait_for_log(server: Server, text: str) -> None:
    for _ in range(200):  # bounded: 20 s
        if text in server.log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the server's log")


@pytest.mark.parametrize("client", ["no channel, still open", "no channel, closed", "left at the enable prompt",
                                    "plain TCP"])
def test_the_device_server_stops_on_sigterm_whatever_a_client_left(tmp_path, client):
    device = new_device(tmp_path, "r9", "cisco_ios", IOS)
    server = Server(tmp_path, [device])
    held = []
    try:
        if client.startswith("no channel"):
            held.append(authenticated_transport(device["port"]))
            if client.endswith("closed"):
                held.pop().close()
        elif client == "left at the enable prompt":
            left_at_enable_password_prompt(device["port"])
            wait_for_log(server, "session not alive, stopping shell")  # fakenos has typed "exit" into the shell
        else:
            held.append(socket.create_connection(("127.0.0.1", device["port"])))
        rc = server.terminate()
    finally:
        for h in held:
            h.close()
        server.stop()
    log = server.log.read_text()
    assert rc == 0, log[-3000:]
    assert "Traceback" not in log


def test_the_device_server_stops_when_sigterm_reaches_one_of_its_threads(tmp_path):
    # the kernel delivers a process's signal to any thread; Python runs the handler in the main thread only
    device = new_device(tmp_path, "r9", "cisco_ios", IOS)
    server = Server(tmp_path, [device])
    try:
        threads = sorted(int(t) for t in os.listdir(f"/proc/{server.proc.pid}/task") if int(t) != server.proc.pid)
        assert threads  # fakenos' listener thread
        rc = server.terminate(to=threads[0])
    finally:
        server.stop()
    assert rc == 0, server.log.read_text()[-3000:]


def test_a_connection_ended_before_its_handshake_does_not_wait_for_the_banner():
    from citydc.lab.netdevices_run import _end_session

    ours, client = socket.socketpair()  # a client that connected and says nothing (yet)
    transport = paramiko.Transport(ours)
    transport.banner_timeout = 300  # what it would wait otherwise
    _end_session(transport)  # the server stops before fakenos has started the handshake
    failed: list[Exception] = []

    def handshake():
        try:
            transport.start_server(server=paramiko.ServerInterface())
        except Exception as exc:
            failed.append(exc)

    worker = threading.Thread(target=handshake, daemon=True)
    worker.start()
    worker.join(20)  # a hang check
    client.close()
    assert not worker.is_alive() and failed
