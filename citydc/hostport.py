"""The one ``host:port`` parser of the project.

Device addresses, the SNMP exporter's listen address, ``--metrics`` and ``--listen`` options and
``/snmp?target=`` all go through :func:`parse_host_port`, so every place accepts the same forms:
``host``, ``host:port``, ``[v6]``, ``[v6]:port`` and a bare IPv6 address (``::1``, which has more
than one colon and so cannot carry a port without brackets).
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

__all__ = ["HostPort", "format_host_port", "is_loopback", "parse_host_port"]


class HostPort(NamedTuple):
    host: str
    port: int


def _port(text: str) -> int:
    # isdigit() alone accepts other scripts' digits ("١٦١"), which int() would then take.
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ValueError(f"port must be 1-65535, got {text!r}")
    return int(text)


def parse_host_port(text: str, default_port: int | None = None) -> HostPort:
    """Given ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address, return (host, port).

    The port falls back to ``default_port``; brackets are removed from the host. Raise ValueError,
    naming what was expected, if the text is malformed, the port is not 1-65535, or there is no
    port and no default.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected HOST or HOST:PORT as a string, got {type(text).__name__}")
    address = text.strip()
    expected = "expected HOST, HOST:PORT or [IPv6]:PORT"
    if address.startswith("["):
        host, closed, rest = address[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"{expected}, got {text!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"expected an IPv6 address inside [brackets], got {text!r}") from None
        port_text = rest[1:] if rest else None
    elif address.count(":") == 1:
        host, _, port_text = address.partition(":")
    else:
        host, port_text = address, None
        if ":" in host:  # several colons: only a bare IPv6 address is meant so
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{expected}, got {text!r}") from None
    if not host or any(c.isspace() or c in "/[]" for c in host):
        raise ValueError(f"{expected}, got {text!r}")
    if port_text is not None:
        return HostPort(host, _port(port_text))
    if default_port is None:
        raise ValueError(f"expected HOST:PORT (a port is required), got {text!r}")
    return HostPort(host, default_port)


def format_host_port(host: str, port: int) -> str:
    """Given a host and a port, return ``host:port``, bracketing an IPv6 host (``[::1]:161``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """Given a host name or address (IPv6 with or without brackets), return whether it is this machine's loopback."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
