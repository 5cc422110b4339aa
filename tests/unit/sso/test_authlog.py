"""The stats-log parser and the resuming reader (lines from the lab's slapd 2.5 and a syslog sample)."""

from __future__ import annotations

import shutil
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from citydc.sso.authlog import LogPosition, StatsParser, read_binds

DATA = Path(__file__).with_name("data") / "slapd-stats.log"
U1 = "uid=sw-u000001,ou=people,ou=siwei,dc=city,dc=example"


def binds_of(path: Path, pos: LogPosition | None = None, parser: StatsParser | None = None):
    return list(read_binds(path, pos or LogPosition(), parser or StatsParser()))


def test_binds_with_address_outcome_and_tls():
    got = [(b.conn, b.dn, b.source_ip, b.code, b.tls, b.method) for b in binds_of(DATA)]
    assert got == [
        (1003, U1, "127.0.0.1", 49, False, "simple"),
        (1004, U1, "127.0.0.1", 0, True, "simple"),
        (1005, "", "::1", 0, False, "simple"),
        (1006, "uid=fs-admin1,ou=people,ou=fengshan,dc=city,dc=example", "10.10.3.7", 49, False, "simple"),
        (1007, "cn=admin,dc=city,dc=example", None, 0, False, "simple"),
    ]
    # conn=1002's RESULT has no BIND line in the part read: not invented.
    first = binds_of(DATA)[0]
    assert first.when.isoformat().startswith("2026-12-04T")


def test_resume_reads_each_line_once_and_keeps_connection_context(tmp_path):
    log = tmp_path / "slapd.log"
    lines = DATA.read_text().splitlines(keepends=True)
    cut = next(i for i, ln in enumerate(lines) if "conn=1004 op=1 BIND" in ln)
    log.write_text("".join(lines[:cut]) + lines[cut][:20])  # a line still being written
    pos, parser = LogPosition(), StatsParser()
    assert [b.conn for b in read_binds(log, pos, parser)] == [1003]
    saved = (pos.to_json(), parser.to_json())
    log.write_text("".join(lines))
    pos2, parser2 = LogPosition(**saved[0]), StatsParser.from_json(saved[1])
    later = list(read_binds(log, pos2, parser2))
    assert [b.conn for b in later] == [1004, 1005, 1006, 1007]
    assert later[0].source_ip == "127.0.0.1" and later[0].tls  # from ACCEPT / TLS lines read in the first run
    assert list(read_binds(log, pos2, parser2)) == []


def test_rotation_and_truncation_start_over(tmp_path):
    log = tmp_path / "slapd.log"
    shutil.copy(DATA, log)
    pos, parser = LogPosition(), StatsParser()
    assert len(list(read_binds(log, pos, parser))) == 5
    log.rename(tmp_path / "slapd.log.1")
    shutil.copy(DATA, log)  # a new file (new inode)
    assert len(list(read_binds(log, pos, parser))) == 5 and pos.restarted
    log.write_text("".join(DATA.read_text().splitlines(keepends=True)[6:9]))  # truncated in place
    assert [b.conn for b in read_binds(log, pos, parser)] == [1003]


def test_a_damaged_address_is_dropped_not_passed_on():
    p = StatsParser()
    p.feed("6b12fd86.00000100 0x7f conn=9 fd=16 ACCEPT from IP=1.2.3:4 (IP=0.0.0.0:389)")
    p.feed('6b12fd86.00000200 0x7f conn=9 op=0 BIND dn="uid=a" method=128')
    b = p.feed("6b12fd86.00000300 0x7f conn=9 op=0 RESULT tag=97 err=49 text=")
    assert b is not None and b.source_ip is None and b.dn == "uid=a"


def test_unknown_lines_are_counted_not_fatal():
    p = StatsParser()
    for line in ("", "garbage", "Nov 26 03:50:06 vm slapd[1]: conn=1 op=0 BIND dn=\"x\" method=128",
                 "2026-13-45T99:00:00+00:00 vm slapd[1]: conn=1 op=0 RESULT tag=97 err=0"):
        assert p.feed(line) is None
    assert p.skipped == 4


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(DATA.read_text().splitlines()), max_size=40), st.data())
def test_mutated_lines_never_raise(lines, data):
    p = StatsParser()
    for line in lines:
        if line and data.draw(st.booleans()):
            i = data.draw(st.integers(0, len(line) - 1))
            line = line[:i] + data.draw(st.text(max_size=5)) + line[i + 1:]
        p.feed(line)
