# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)
"""HAProxy runtime API over its admin unix socket: one command per connection, parsed answers."""

from __future__ import annotations

import os
import re
import socket
import time

# srv_admin_state bits (HAProxy 2.6 include/haproxy/server-t.h)
ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # forced, inherited, config, resolution, hostname maintenance
ADMIN_DRAIN = 0x08 | 0x10  # forced, inherited drain
OP_RUNNING = 2


class RuntimeError_(Exception):
    """The socket could not be reached or HAProxy refused a command."""


class UnknownBackend(RuntimeError_):
    """The running HAProxy has no such backend (e.g. one added to the file that was not reloaded yet)."""


def command(sock, cmd, timeout=5.0):
    """Given the admin socket path and one command, return HAProxy's answer as text."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock)
            s.sendall(cmd.encode() + b"\n")
            s.shutdown(socket.SHUT_WR)  # the master CLI answers once its input ends
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as exc:
        raise RuntimeError_("runtime API socket %s: %s" % (sock, exc)) from None
    return b"".join(chunks).decode("utf-8", "replace")


def servers_state(sock, backend):
    """Given the socket and a backend, return {server: {op_state, admin_state, weight, iweight, addr, port}}
    (weight: the runtime weight; iweight: the configured one)."""
    text = command(sock, "show servers state %s" % backend)
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("Can't find backend"):
        raise UnknownBackend("backend %s: %s" % (backend, text.strip()))
    if not lines or lines[0].startswith("Unknown"):
        raise RuntimeError_("backend %s: %s" % (backend, text.strip() or "no answer"))
    header = None
    out = {}
    for line in lines[1:]:
        if line.startswith("#"):
            header = line.lstrip("# ").split()
            continue
        if header is None:
            continue
        row = dict(zip(header, line.split()))
        out[row["srv_name"]] = {
            "op_state": int(row["srv_op_state"]),
            "admin_state": int(row["srv_admin_state"]),
            "weight": int(row["srv_uweight"]),
            "iweight": int(row["srv_iweight"]) if row.get("srv_iweight", "-").isdigit() else None,
            "addr": row["srv_addr"],
            "port": int(row["srv_port"]) if row.get("srv_port", "-").isdigit() else None,
        }
    return out


def stats(sock, backend):
    """Given the socket and a backend, return {server: {scur, status, check_status}} from ``show stat``."""
    text = command(sock, "show stat")
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise RuntimeError_("show stat: unexpected answer %r" % text[:200])
    header = lines[0][2:].split(",")
    out = {}
    for line in lines[1:]:
        if not line:
            continue
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        out[row["svname"]] = {"scur": int(row.get("scur") or 0), "status": row.get("status", ""),
                              "check_status": row.get("check_status", "")}
    return out


def server_view(sock, backend):
    """Given the socket and a backend, return a list of servers with state, health and sessions."""
    states = servers_state(sock, backend)
    st = stats(sock, backend)
    out = []
    for name, s in states.items():
        admin = s["admin_state"]
        mode = "maint" if admin & ADMIN_MAINT else "drain" if admin & ADMIN_DRAIN else "ready"
        out.append({"name": name, "admin": mode, "up": s["op_state"] == OP_RUNNING, "weight": s["weight"],
                    "iweight": s["iweight"],
                    "sessions": st.get(name, {}).get("scur", 0), "status": st.get(name, {}).get("status", ""),
                    "addr": s["addr"], "port": s["port"]})
    return out


def save_server_state(sock, path):
    """Write ``show servers state`` (every backend) to the server-state-file ``path``, atomically (mode 0600).

    HAProxy applies that file at every start (``load-server-state-from-file global``), a cold restart too: so it
    is written after each runtime change, not only before a reload, else a restart brings back stale states."""
    state = command(sock, "show servers state")
    if not state.lstrip().startswith("1"):  # the format version line; anything else is an error message
        raise RuntimeError_("show servers state: unexpected answer %r" % state[:200])
    tmp = "%s.tmp" % path
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(state)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise RuntimeError_("server-state-file %s: %s" % (path, exc)) from None


def parse_proc(text):
    """Given the master CLI's ``show proc``, return {reloads, failed, workers: [pid, ...]} (failed: None when
    this HAProxy does not count failed reloads)."""
    m = re.search(r"^(\d+)\s+master\s+(\d+)(?:\s+\[failed:\s*(\d+)\])?", text, re.M)
    if not m:
        raise RuntimeError_("master CLI show proc: unexpected answer %r" % text[:300])
    workers = []
    section = None
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.strip("# ").strip()
            continue
        words = line.split()
        if section == "workers" and len(words) >= 2 and words[0].isdigit() and words[1] == "worker":
            workers.append(int(words[0]))
    return {"master": int(m.group(1)), "reloads": int(m.group(2)),
            "failed": int(m.group(3)) if m.group(3) is not None else None, "workers": workers}


def wait_for(check, timeout, interval=0.2):
    """Call ``check`` until it returns a true value or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value
