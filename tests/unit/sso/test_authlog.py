"""The stats-log parser and the resuming reader (lines from the lab's slapd 2.5 and a syslog sample)."""

from __future__ import annotations

import json
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
    (b,) = p.feed("6b12fd86.00000300 0x7f conn=9 op=0 RESULT tag=97 err=49 text=")
    assert b.source_ip is None and b.dn == "uid=a"


def test_unknown_lines_are_counted_not_fatal():
    p = StatsParser()
    for line in ("", "garbage", "Nov 26 03:50:06 vm slapd[1]: conn=1 op=0 BIND dn=\"x\" method=128",
                 "2026-13-45T99:00:00+00:00 vm slapd[1]: conn=1 op=0 RESULT tag=97 err=0"):
        assert p.feed(line) == []
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


# Recorded in the lab's slapd log under CI load: the listener thread wrote conn=1034's ACCEPT (its
# timestamp is the earliest) after the worker's BIND and RESULT.
OUT_OF_ORDER = DATA.with_name("slapd-accept-late.log").read_text()


def test_an_accept_written_after_the_bind_still_gives_the_address():
    p = StatsParser()
    out = [p.feed(line) for line in OUT_OF_ORDER.splitlines()]
    assert [len(o) for o in out] == [0, 0, 0, 1, 0, 0]  # released when the ACCEPT arrives, not before
    (b,) = out[3]
    assert (b.conn, b.source_ip, b.code) == (1034, "127.0.0.1", 49)


def test_a_bind_held_across_runs_is_saved_with_the_state(tmp_path):
    lines = OUT_OF_ORDER.splitlines(keepends=True)
    log = tmp_path / "stats.log"
    log.write_text("".join(lines[:3]))
    pos, parser = LogPosition(), StatsParser()
    assert list(read_binds(log, pos, parser)) == []
    pos2, parser2 = LogPosition(**pos.to_json()), StatsParser.from_json(json.loads(json.dumps(parser.to_json())))
    with log.open("a") as fh:
        fh.writelines(lines[3:])
    (b,) = read_binds(log, pos2, parser2)
    assert (b.conn, b.source_ip, b.dn.split(",")[0]) == (1034, "127.0.0.1", "uid=sw-u000040")


def test_a_connection_closed_without_its_accept_gives_its_binds_without_address():
    p = StatsParser()
    lines = [line for line in OUT_OF_ORDER.splitlines() if "ACCEPT" not in line]
    got = [b for line in lines for b in p.feed(line)]
    assert [(b.conn, b.source_ip) for b in got] == [(1034, None)]
    assert p.held == {}


def test_binds_held_for_an_accept_line_are_capped_oldest_released_first(monkeypatch):
    """Binds of connections whose ACCEPT line was never read wait for it; beyond MAX_CONNS connections the
    oldest give up waiting and come out without an address, in the order they came."""
    import citydc.sso.authlog as authlog

    monkeypatch.setattr(authlog, "MAX_CONNS", 3)
    parser, released = StatsParser(), []
    for conn in range(1, 8):
        for line in (f'6b12fd85.02b509b1 0x1 conn={conn} op=0 BIND dn="uid=u{conn},dc=x" method=128',
                     f"6b12fd85.02ba682f 0x1 conn={conn} op=0 RESULT tag=97 err=49 qtime=0.0 etime=0.0 text="):
            released += parser.feed(line)
        assert len(parser.held) <= 3
    assert [(b.conn, b.source_ip) for b in released] == [(1, None), (2, None), (3, None), (4, None)]
    assert list(parser.held) == [5, 6, 7]
    restored = StatsParser.from_json(json.loads(json.dumps(parser.to_json())))
    assert list(restored.held) == [5, 6, 7]  # the order survives a state save, so the oldest still go first
    restored.feed('6b12fd85.02b509b1 0x1 conn=8 op=0 BIND dn="uid=u8,dc=x" method=128')
    out = restored.feed("6b12fd85.02ba682f 0x1 conn=8 op=0 RESULT tag=97 err=49 qtime=0.0 etime=0.0 text=")
    assert [b.conn for b in out] == [5] and list(restored.held) == [6, 7, 8]


def hexline(sec: int, text: str) -> str:
    return f"{0x6b12fd85 + sec:08x}.02b509b1 0x1 {text}"


def test_a_bind_never_accepted_goes_on_without_an_address_after_the_hold():
    """A connection opened before the part of the log read never gets its ACCEPT line: its binds wait at
    most HOLD_SECONDS of log time, then reach the detector without an address (not when it closes)."""
    import citydc.sso.authlog as authlog

    parser = StatsParser()
    out = []
    for sec in range(0, 50, 10):  # a bind every 10 s on conn 9, opened before the log read
        out += parser.feed(hexline(sec, f'conn=9 op={sec} BIND dn="uid=victim,dc=x" method=128'))
        out += parser.feed(hexline(sec, f"conn=9 op={sec} RESULT tag=97 err=49 qtime=0.0 etime=0.0 text="))
    assert out == [] and len(parser.held[9]) == 5
    out += parser.feed(hexline(authlog.HOLD_SECONDS + 5, "conn=10 fd=15 ACCEPT from IP=10.0.0.5:1234 (IP=0.0.0.0:389)"))
    assert [(b.op, b.source_ip) for b in out] == [(0, None), (10, None), (20, None), (30, None), (40, None)]
    assert 9 not in parser.held


def test_binds_held_per_connection_are_capped(monkeypatch):
    import citydc.sso.authlog as authlog

    monkeypatch.setattr(authlog, "MAX_HELD_PER_CONN", 3)
    parser, out = StatsParser(), []
    for op in range(5):
        out += parser.feed(hexline(0, f'conn=9 op={op} BIND dn="uid=victim,dc=x" method=128'))
        out += parser.feed(hexline(0, f"conn=9 op={op} RESULT tag=97 err=49 qtime=0.0 etime=0.0 text="))
    assert [b.op for b in out] == [0, 1] and [b.op for b in parser.held[9]] == [2, 3, 4]
