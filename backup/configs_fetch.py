"""Fetch one device's configs over SSH with netmiko, its host key pinned.

Given a :class:`Target` (a device with its login resolved), :func:`fetch` logs in, enters enable
mode where the platform has one, runs the platform's running-config (and startup-config) command,
and returns the raw text with the host key the device presented. The key is checked against the
keys pinned for ``[host]:port`` before any password is sent: a different key raises
:class:`FetchFailed` with reason ``host-key-changed`` (never accepted); a device seen for the first
time is trusted and its key returned for the caller to pin.

Every failure is a :class:`FetchFailed` with a short reason code (``unreachable``, ``timeout``,
``auth``, ``host-key-changed``, ``enable``, ``prompt``, ``command``, ``disconnected``, ``error``)
and a one-line message holding no secret.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from citydc.backup.configs_rules import PLATFORMS
from citydc.execute import mask

__all__ = ["FetchFailed", "Fetched", "Target", "fetch", "host_key_name"]

# netmiko logs every byte of the session at DEBUG (configs with their secrets, the enable secret the
# device echoes): its logger never goes below WARNING, whatever -vv asks. citydc's own log lines
# of this backup carry only masked text.
logging.getLogger("netmiko").setLevel(logging.WARNING)
logging.getLogger("paramiko").setLevel(logging.WARNING)

# What a device answers instead of the output when it refuses a command (compared, case-insensitively, with the
# start of the first line that is not a ``^`` marker): a bad command (IOS/EOS ``% Invalid input``, NX-OS
# ``% Invalid command``, Junos ``syntax error`` / ``unknown command.``), or command authorization refusing
# the backup user (IOS TACACS+ ``Command authorization failed.``, ``% Authorization failed.``, EOS
# ``% Authorization denied for command ...``, NX-OS ``% Permission denied for the role``, Junos
# ``error: permission denied``).
_REJECTED = ("% Invalid input", "% Invalid command", "% Incomplete command", "% Ambiguous command", "Unknown command",
             "syntax error", "error: syntax error", "Command authorization failed", "% Authorization failed",
             "% Authorization denied", "% Permission denied", "% Access denied", "error: permission denied")
# A linux host's command failing: ``cat: /etc/x: Permission denied``, ``bash: x: command not found``.
_SHELL_ERROR = re.compile(r"^[\w./+-]+: .*(?:Permission denied|No such file or directory|Is a directory|not found)$")


@dataclass(frozen=True)
class Target:
    name: str
    site: str
    platform: str
    host: str
    port: int
    username: str
    password: str | None = field(default=None, repr=False)
    key_file: Path | None = None
    enable_secret: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    running_command: str | None = None
    startup_command: str | None = None

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.enable_secret) if s)

    def commands(self) -> tuple[str, str | None]:
        rules = PLATFORMS[self.platform]
        return self.running_command or rules.running, self.startup_command or rules.startup


@dataclass(frozen=True)
class Fetched:
    running: str
    startup: str | None
    host_key: tuple[str, str]  # (key type, base64) the device presented


class FetchFailed(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def host_key_name(host: str, port: int) -> str:
    """Given a host and port, return its known_hosts name (``[127.0.0.1]:2222``, or the host for port 22)."""
    return host if port == 22 else f"[{host}]:{port}"


@functools.cache
def _classes():
    """Return (pinned client class, trust-first-use policy class); paramiko (the ``configs`` extra) loads here."""
    import paramiko

    class PinnedClient(paramiko.SSHClient):
        """An SSHClient that remembers a mismatching host key (paramiko raises BadHostKeyException)."""

        bad_key: paramiko.BadHostKeyException | None = None

        def connect(self, *args, **kwargs):
            try:
                return super().connect(*args, **kwargs)
            except paramiko.BadHostKeyException as exc:
                self.bad_key = exc
                raise

    class TrustFirstUse(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):  # a first contact: the caller pins what it saw
            return

    return PinnedClient, TrustFirstUse


def _first_line(text: str, secrets: tuple[str, ...]) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return mask(lines[0] if lines else type(text).__name__, secrets)[:200]


def fetch(target: Target, pinned: list[tuple[str, str]]) -> Fetched:
    """Given a target and the host keys pinned for it [(type, base64)], return its configs.
    Raise FetchFailed with the reason."""
    import paramiko
    from netmiko import ConnectHandler
    from netmiko.exceptions import NetmikoAuthenticationException, NetmikoTimeoutException, ReadTimeout

    pinned_client, trust_first_use = _classes()
    client = pinned_client()
    name = host_key_name(target.host, target.port)
    for ktype, b64 in pinned:
        try:
            client.get_host_keys().add(name, ktype, paramiko.PKey.from_type_string(ktype, _b64(b64)))
        except (ValueError, paramiko.SSHException):
            continue  # a key type paramiko cannot load is never matched: the connection then fails as changed
    secrets = target.secrets()
    params = {
        "device_type": target.platform, "host": target.host, "port": target.port, "username": target.username,
        "password": target.password or "", "secret": target.enable_secret or "",
        "key_file": str(target.key_file) if target.key_file else None, "use_keys": target.key_file is not None,
        "allow_agent": False, "conn_timeout": target.timeout, "auth_timeout": target.timeout,
        "banner_timeout": target.timeout, "read_timeout_override": target.timeout, "auto_connect": False,
        "system_host_keys": False, "alt_host_keys": False, "ssh_strict": False,
    }
    conn = None
    try:
        conn = ConnectHandler(**params)
        conn.key_policy = trust_first_use()
        conn._get_ssh_client_instance = lambda: client  # type: ignore[method-assign]
        try:
            conn._open()
        except NetmikoAuthenticationException:
            raise FetchFailed("auth", f"authentication failed for user {target.username}") from None
        except NetmikoTimeoutException as exc:
            if client.bad_key is not None:
                seen = client.bad_key.key
                raise FetchFailed("host-key-changed", f"host key of {name} changed: presented "
                                  f"{seen.get_name()} {seen.fingerprint}, pinned "
                                  f"{client.bad_key.expected_key.fingerprint}; not accepted") from None
            text = str(exc)
            if "TCP connection to device failed" in text or "DNS failure" in text:
                raise FetchFailed("unreachable", f"no SSH connection to {target.host}:{target.port}") from None
            raise FetchFailed("timeout", _first_line(text, secrets)) from None
        except ReadTimeout:
            raise FetchFailed("prompt", "logged in, but no prompt was recognised") from None
        transport = client.get_transport()
        key = transport.get_remote_server_key() if transport else None
        if key is None:
            raise FetchFailed("disconnected", "the session closed before the host key was read")
        rules = PLATFORMS[target.platform]
        if rules.enable:
            try:
                conn.enable()
            except (ValueError, ReadTimeout):
                raise FetchFailed("enable", "could not enter enable mode (wrong or missing enable secret)") from None
        running_cmd, startup_cmd = target.commands()
        outputs = []
        for cmd in (running_cmd, startup_cmd):
            if cmd is None:
                outputs.append(None)
                continue
            try:
                out = conn.send_command(cmd, read_timeout=target.timeout)
            except ReadTimeout:
                raise FetchFailed("prompt", f"no prompt after {cmd!r} within {target.timeout:g} s") from None
            refused = _refusal(str(out), target.platform, rules.last_line if cmd == rules.running else None,
                               secrets)
            if refused:
                raise FetchFailed("command", f"{cmd!r} {refused}")
            outputs.append(out)
        return Fetched(outputs[0], outputs[1], (key.get_name(), key.get_base64()))
    except FetchFailed:
        raise
    except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
        raise FetchFailed("disconnected", f"connection lost: {_first_line(exc, secrets)}") from None
    except Exception as exc:  # netmiko raises many types; the run goes on with the next device
        raise FetchFailed("error", f"{type(exc).__name__}: {_first_line(exc, secrets)}") from None
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):  # a session that died mid-run cannot be closed politely
                conn.disconnect()
        client.close()


def _refusal(out: str, platform: str, last_line: str | None, secrets: tuple[str, ...]) -> str:
    """Given a command's answer, return why it is not the config asked for ("" when it is): nothing at all,
    a refusal text, or a config without the line it always ends with (``last_line``)."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines:
        return "answered nothing"
    first = next((line for line in lines if line.strip("^ ")), lines[0])
    if any(first.casefold().startswith(r.casefold()) for r in _REJECTED) or (
            platform == "linux" and _SHELL_ERROR.match(first)):
        return f"rejected: {_first_line(first, secrets)}"
    if last_line is not None and lines[-1] != last_line:
        # its lines are not quoted: a config's lines may hold secrets no one has masked yet
        return f"answered {len(lines)} line(s) without the closing {last_line!r} line (cut short, or not a config)"
    return ""


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)
