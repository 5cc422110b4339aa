"""Pure argv builders and the nfdump statistics parser of the NetFlow lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from citydc.lab import nfdump, ports
from citydc.lab.softflowd import expire_all_argv, softflowd_argv


def test_softflowd_argv() -> None:
    argv = softflowd_argv(9, 12066, Path("/x/ctl"), Path("/x/pid"))
    assert argv[:5] == ("ip", "netns", "exec", "citydc-nf", "softflowd")
    assert argv[argv.index("-n"):argv.index("-n") + 2] == ("-n", "10.99.78.1:12066")
    assert argv[argv.index("-v"):argv.index("-v") + 2] == ("-v", "9")
    assert "-6" in argv and "-d" in argv
    assert argv[-1] == f"not (udp and portrange {ports.NETFLOW_V5}-{ports.NETFLOW_IPFIX})"
    assert "-6" not in softflowd_argv(5, 12065, Path("/x/ctl"), Path("/x/pid"))
    assert expire_all_argv(Path("/x/ctl")) == ("ip", "netns", "exec", "citydc-nf", "softflowctl", "-c", "/x/ctl",
                                               "expire-all")


def test_nfcapd_argv() -> None:
    assert nfdump.nfcapd_argv("127.0.0.1", 12070, Path("/f")) == (
        "nfcapd", "-b", "127.0.0.1", "-p", "12070", "-w", "/f", "-t", "3600")
    assert nfdump.nfdump_stats_argv(Path("/f")) == ("nfdump", "-R", "/f", "-I")


def test_parse_nfdump_stats() -> None:
    text = "Ident: none\nFlows: 189\nFlows_tcp: 42\nPackets: 1655\nBytes: 8484681\nBytes_tcp: 1\n"
    assert nfdump.parse_nfdump_stats(text) == {"flows": 189, "packets": 1655, "bytes": 8484681}
    with pytest.raises(ValueError, match="Bytes"):
        nfdump.parse_nfdump_stats("Flows: 1\nPackets: 2\n")
