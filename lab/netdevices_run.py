"""Run the lab's simulated network-OS devices (fakenos) named in a JSON spec; started by ``lab/netdevices.py``.

``python -m citydc.lab.netdevices_run SPEC.json`` starts one fakenos SSH server per device on
127.0.0.1 and serves until SIGTERM. Each device:

- starts in user mode (``R1>``); ``enable`` asks ``Password:`` and only the device's enable secret
  reaches privileged mode (``R1#``), as on a real Cisco or Arista box;
- answers ``show running-config`` and ``show startup-config`` (privileged mode only) with the files
  ``running.cfg`` / ``startup.cfg`` of its directory, read at every command, so a test changes a
  device's configuration by writing a file; ``{now}``, ``{ticks}`` and ``{uptime}`` in them become the time of
  the command (volatile lines a backup must strip);
- presents the RSA host key in its directory, read at every connection, so a test changes the key
  by replacing the file (a "replaced device" whose pinned key no longer matches).

The secrets of the spec are lab-only values; the spec file is private to the lab directory.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

USER_PROMPT = "{base_prompt}>"
ENABLE_PROMPT = "{base_prompt}#"
PASSWORD_PROMPT = "Password: "  # noqa: S105 - a prompt
STARTED = time.monotonic()


def _server_class() -> type:
    """Return a fakenos server class whose host key is read from its file at each connection.
    fakenos and paramiko (the ``configs`` extra) load here, so importing this module needs neither."""
    import paramiko
    from fakenos.plugins.servers.ssh_server_paramiko import ParamikoSshServer

    class KeyFromFile(ParamikoSshServer):
        key_path: Path

        @property
        def _ssh_server_key(self) -> paramiko.RSAKey:
            return paramiko.RSAKey.from_private_key_file(str(self.key_path))

        @_ssh_server_key.setter
        def _ssh_server_key(self, value: Any) -> None:  # the base class assigns its default key
            pass

    return KeyFromFile


def _file_output(path: Path):
    def output(device: Any, base_prompt: str, current_prompt: str, command: str) -> str:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return "% Invalid input detected at '^' marker."
        now = time.strftime("%H:%M:%S UTC %a %b %d %Y", time.gmtime())
        uptime = int(time.monotonic() - STARTED)
        ticks = str(17179869 + int(time.time() * 1000) % 1000)
        return (text.replace("{now}", now).replace("{ticks}", ticks)
                .replace("{uptime}", f"{uptime // 60} minutes, {uptime % 60} seconds"))
    return output


def commands(platform: str, enable_secret: str, directory: Path) -> dict[str, dict]:
    """Given a platform (cisco_ios or arista_eos), the enable secret and the device's directory,
    return the fakenos command table of the device."""
    arista = platform == "arista_eos"
    both = [USER_PROMPT, ENABLE_PROMPT]
    table: dict[str, dict] = {
        "enable": {"output": None, "new_prompt": PASSWORD_PROMPT, "help": "enter privileged mode",
                   "prompt": USER_PROMPT},
        enable_secret: {"output": None, "new_prompt": ENABLE_PROMPT, "help": "", "prompt": PASSWORD_PROMPT},
        "_default_": {"output": "% Invalid input" if arista else "% Invalid input detected at '^' marker.",
                      "help": "unknown command", "prompt": [*both, PASSWORD_PROMPT]},
        "terminal width 511": {"output": "Width set to 511 columns." if arista else "", "help": "", "prompt": both},
        "terminal length 0": {"output": "Pagination disabled." if arista else "", "help": "", "prompt": both},
        "show running-config": {"output": _file_output(directory / "running.cfg"), "help": "running config",
                                "prompt": ENABLE_PROMPT},
        "show startup-config": {"output": _file_output(directory / "startup.cfg"), "help": "startup config",
                                "prompt": ENABLE_PROMPT},
        "disable": {"output": None, "new_prompt": USER_PROMPT, "help": "", "prompt": ENABLE_PROMPT},
        "exit": {"output": True, "help": "close the session", "prompt": both},
    }
    return table


def serve(spec: dict) -> list:
    """Given the spec ({"devices": [...]}), start one server per device; return them."""
    from fakenos.core.nos import Nos
    from fakenos.plugins.shell.cmd_shell import CMDShell

    server_class = _server_class()
    servers = []
    for dev in spec["devices"]:
        directory = Path(dev["dir"])
        nos = Nos(name=dev["platform"], initial_prompt=USER_PROMPT,
                  commands=commands(dev["platform"], dev["enable_secret"], directory))
        server = server_class(
            shell=CMDShell, nos=nos, nos_inventory_config={}, port=int(dev["port"]), username=dev["username"],
            password=dev["password"], shell_configuration={"base_prompt": dev["name"]}, address="127.0.0.1",
            ssh_banner=f"{dev['name']} (citydc lab)")
        server.key_path = directory / "host_rsa"
        server.start()
        servers.append(server)
    return servers


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    servers = serve(spec)
    print(f"serving {len(servers)} devices", flush=True)
    stop.wait()
    for server in servers:
        try:
            server.stop()
        except Exception as exc:  # one server failing to stop must not keep the others up
            print(f"stop failed: {exc}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
