"""Run the lab's simulated network-OS devices (fakenos) named in a JSON spec; started by ``lab/netdevices.py``.

``python -m citydc.lab.netdevices_run SPEC.json`` starts one fakenos SSH server per device on
127.0.0.1 and serves until SIGTERM (or SIGINT); it then stops within seconds whatever its clients left
behind (a login that opened no channel, a shell at the ``Password:`` prompt, a bare TCP connection), and a
connection thread still running STOP_GRACE_SECONDS later is named, with its stack, and the process exits
1 instead of hanging. Each device:

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

import contextlib
import faulthandler
import json
import logging
import os
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
STOP_GRACE_SECONDS = 10.0  # after the servers' own stop (fakenos joins each connection for about 3 s)


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

        def _bind_sockets(self) -> None:
            # listen before start() returns ("serving" is printed then), not when the listener thread gets
            # to it: a client connecting at once was refused
            super()._bind_sockets()
            self._socket.listen()

        def _close_active_connections(self) -> None:  # called by stop()
            self.end_sessions()

        def end_sessions(self) -> None:
            """Make every connection's thread end (each connection once: ``_end_session``)."""
            done = self.__dict__.setdefault("_ended", set())
            with self._active_sessions_lock:
                sessions = [s for s in self._active_sessions if id(s) not in done]
            for session in sessions:
                done.add(id(session))
                _end_session(session)

        def connection_function(self, client: Any, is_running: threading.Event) -> None:
            try:
                super().connection_function(client, is_running)
            except Exception as exc:
                # fakenos has closed the transport already. Expected: accept()'s None .makefile() (the client
                # left, or the server stopped, before a channel was opened), and any failure of a connection
                # the stopping server cut (a handshake on a closed socket). Anything else is a bug: raise.
                if is_running.is_set() and not (isinstance(exc, AttributeError) and "makefile" in str(exc)):
                    raise

    return KeyFromFile


def _end_session(session: Any) -> None:
    """Given a fakenos connection's paramiko transport, make its connection thread end."""
    session.close()
    # close() does nothing to a transport not started yet (a client that has just connected): closing its
    # socket makes the SSH handshake about to start fail at once instead of waiting out the banner timeout.
    with contextlib.suppress(OSError):
        session.sock.close()
    # Nor does close() wake accept() (only a transport dying on its own does): a client that logged in but
    # opened no channel held its connection thread, and so this process, forever. A queued None makes
    # accept() return at once, whether the thread waits already or gets there later.
    with session.server_accept_cv:
        session.server_accepts.append(None)
        session.server_accept_cv.notify_all()


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
        # also at the Password: prompt: fakenos stops the shell of a closed session by typing "exit"; refused
        # there, the shell of a client that left after ``enable`` waited forever, and SIGTERM with it
        "exit": {"output": True, "help": "close the session", "prompt": [*both, PASSWORD_PROMPT]},
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
    # Never an endless wait: the kernel may deliver SIGTERM to one of fakenos' threads, and Python runs the
    # handler in the main thread only once that thread wakes up (a wait without a timeout: never).
    while not stop.wait(0.5):
        pass
    # paramiko logs, with a traceback, every handshake the stop cuts short: expected, not news
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    for server in servers:
        try:
            server.stop()
        except Exception as exc:  # one server failing to stop must not keep the others up
            print(f"stop failed: {exc}", file=sys.stderr, flush=True)
    return _threads_ended(servers, STOP_GRACE_SECONDS)


def _threads_ended(servers: list, grace: float) -> int:
    """Wait up to ``grace`` seconds for the connection threads to end, ending the connections accepted while
    the servers stopped; return 0 when they did. Else exit at once with 1, naming them: a lab process asked
    to stop must stop, and Python would wait for them forever."""
    deadline = time.monotonic() + grace
    while True:
        for server in servers:
            server.end_sessions()
        left = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
        if not left or time.monotonic() >= deadline:
            break
        left[0].join(timeout=0.1)
    if not left:
        return 0
    print(f"stopping with {len(left)} connection thread(s) still running: {', '.join(t.name for t in left)}",
          file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr)  # where they are stuck, for the next fix
    sys.stdout.flush()
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
