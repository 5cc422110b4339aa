# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)
"""HAProxy runtime API over its admin unix socket: one command per connection, parsed answers."""

from __future__ import annotations

import socket
import time

# srv_admin_state bits (HAProxy 2.6 include/haproxy/server-t.h)
ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # forced, inherited, config, resolution, hostname maintenance
ADMIN_DRAIN = 0x08 | 0x10  # forced, inherited drain
OP_RUNNING = 2


class RuntimeError_(Exception):
    """The socket could not be reached or HAProxy refused a command."""


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
    """Given the socket and a backend, return {server: {op_state, admin_state, weight, addr, port}}."""
    text = command(sock, "show servers state %s" % backend)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].startswith(("Can't find backend", "Unknown")):
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
                    "sessions": st.get(name, {}).get("scur", 0), "status": st.get(name, {}).get("status", ""),
                    "addr": s["addr"], "port": s["port"]})
    return out


def wait_for(check, timeout, interval=0.2):
    """Call ``check`` until it returns a true value or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value
