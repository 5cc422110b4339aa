"""The one host:port parser: every form it takes, everything it refuses, and who uses it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citydc.hostport import HostPort, format_host_port, parse_host_port


@pytest.mark.parametrize(("text", "default", "expected"), [
    ("10.0.0.1", 161, ("10.0.0.1", 161)),
    ("10.0.0.1:1161", 161, ("10.0.0.1", 1161)),
    (" sw1.example:65535 ", None, ("sw1.example", 65535)),
    ("[::1]:1161", None, ("::1", 1161)),
    ("[2001:db8::1]", 161, ("2001:db8::1", 161)),
    ("::1", 161, ("::1", 161)),
    ("fe80::1%eth0", 9116, ("fe80::1%eth0", 9116)),
])
def test_parses_every_form(text, default, expected):
    assert parse_host_port(text, default) == HostPort(*expected)


@pytest.mark.parametrize(("text", "default", "message"), [
    ("", 161, "expected HOST, HOST:PORT or [IPv6]:PORT"),
    (":161", 161, "expected HOST, HOST:PORT or [IPv6]:PORT"),
    ("h:0", 161, "port must be 1-65535, got '0'"),
    ("h:65536", 161, "port must be 1-65535"),
    ("h:x", 161, "port must be 1-65535"),
    ("h:١٦١", 161, "port must be 1-65535"),  # Arabic-Indic digits: isdigit() but not a port
    ("h:", 161, "port must be 1-65535, got ''"),
    ("h", None, "expected HOST:PORT (a port is required), got 'h'"),
    ("[::1]x", 161, "expected HOST, HOST:PORT or [IPv6]:PORT"),
    ("[::1", 161, "expected HOST, HOST:PORT or [IPv6]:PORT"),
    ("[h]:1", 161, "expected an IPv6 address inside [brackets]"),
    ("1:2:3", 161, "expected HOST, HOST:PORT or [IPv6]:PORT"),
    ("a b:1", 161, "expected HOST, HOST:PORT or [IPv6]:PORT"),
])
def test_refuses_with_what_was_expected(text, default, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        parse_host_port(text, default)


@given(st.one_of(st.ip_addresses().map(str), st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True)),
       st.integers(1, 65535))
def test_format_then_parse_round_trips(host, port):
    assert parse_host_port(format_host_port(host, port)) == (host, port)


@given(st.text(max_size=30))
def test_any_text_parses_or_raises_value_error(text):
    try:
        host, port = parse_host_port(text, 161)
    except ValueError:
        return
    assert host and 0 < port < 65536


def test_every_splitter_of_the_project_delegates_here():
    from citydc.cli.collect_netflow import parse_host_port as netflow_option
    from citydc.collectors.snmp.poller import parse_address

    assert parse_address("[::1]:1161") == ("::1", 1161) and parse_address("sw1") == ("sw1", 161)
    with pytest.raises(ValueError, match="expected an IPv6 address inside"):
        parse_address("[sw1]:161")  # only the shared parser says this
    import click

    with pytest.raises(click.BadParameter, match="expected an IPv6 address inside"):
        netflow_option("[sw1]:9310")
