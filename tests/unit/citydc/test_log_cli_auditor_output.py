"""What ``citydc log`` shows an auditor (exploratory test of the SQLite store, findings 3, 4, 6, 8, 9 and 10):
stored values escaped in every table and verify line, CSV that no spreadsheet runs, a misspelt --by field
and a query without words refused, "limit reached" only when events were left out, and accurate messages."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from citydc.cli.csvout import CsvWriter, csv_cell
from citydc.cli.main import cli
from citydc.seclog import emit, make_event

EVIL = "mallory\x1b[2J\x1b[H"
BIDI = "trudy\u202egnp.exe"
FORMULA = "=cmd|' /C calc'!A0"


def _login(i: int, user: str, message: str, when: datetime) -> dict:
    return make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                      type=["start"], outcome="failure", message=message, site="siwei", id_key=f"l{i}", user=user,
                      timestamp=when)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A shipped SQLite store: 4 recent failed logins (names that steer a terminal or a spreadsheet) and a
    playbook run whose user and playbook hold escapes; 6 events with the spool-created one."""
    tmp = tmp_path_factory.mktemp("store")
    cfg = tmp / "citydc.yaml"
    cfg.write_text("sites: [{id: siwei, name: Siwei}]\n"
                   "security_log: {spool_dir: spool, sink: {kind: sqlite, path: seclog.db}}\n", encoding="utf-8")
    now = datetime.now(UTC)
    events = [_login(i, user, message, now - timedelta(hours=1, minutes=i)) for i, (user, message) in enumerate(
        [(EVIL, "failed 0"), (BIDI, "failed 1"), (FORMULA, '=HYPERLINK("http://evil.example/x","details")'),
         ("ok", "evil \x1b]0;pwned\x07 message")])]
    events.append(make_event(action="playbook-run", dataset="citydc.playbook", kind="event", category=["process"],
                             type=["start"], outcome="success", message="playbook", site="siwei", id_key="p1",
                             user="op\x1b[5m", details={"playbook": "lb\x1b[31m.yml"}, timestamp=now))
    emit(events, spool_dir=tmp / "spool")
    assert CliRunner().invoke(cli, ["-c", str(cfg), "log", "ship"]).exit_code == 0
    return cfg


def run(cfg: Path, *args: str):
    return CliRunner().invoke(cli, ["-c", str(cfg), "log", *args], env={"COLUMNS": "250"})


def _copy(store: Path, tmp_path: Path) -> Path:
    for name in ("citydc.yaml", "seclog.db"):
        (tmp_path / name).write_bytes((store.parent / name).read_bytes())
    (tmp_path / "citydc.yaml").chmod(0o600)
    spool = tmp_path / "spool"
    spool.mkdir()
    for f in (store.parent / "spool").iterdir():
        if f.is_file() and f.suffix in (".json", ".jsonl"):
            (spool / f.name).write_bytes(f.read_bytes())
    return tmp_path / "citydc.yaml"


# -- findings 3 and 4: stored values are escaped wherever a person reads them ----------------------------


@pytest.mark.parametrize("args", [("stats", "--by", "user.name"), ("saved", "failed-logins"),
                                  ("saved", "playbook-runs")])
def test_count_tables_escape_control_characters_as_search_does(store, args):
    result = run(store, *args)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output
    if args[0] == "saved" and args[1] == "playbook-runs":
        assert "op\\x1b[5m" in result.output and "lb\\x1b[31m.yml" in result.output
    else:
        assert "mallory\\x1b[2J\\x1b[H" in result.output and "trudy\\u202egnp.exe" in result.output


def test_verify_escapes_a_writer_name_taken_from_the_store(store, tmp_path):
    cfg = _copy(store, tmp_path)
    conn = sqlite3.connect(tmp_path / "seclog.db")
    doc = json.loads(conn.execute("SELECT doc FROM events WHERE user_name = 'ok'").fetchone()[0])
    fake_ok = "\x1b[2K\r\x1b[32mOK: 6 event(s), every chain intact\x1b[8m"
    doc["citydc"]["chain"]["writer"], doc["event"]["id"] = fake_ok, "f" * 32
    conn.execute("INSERT INTO events (id, ts_ms, user_name, writer, seq, message, doc) VALUES (?,?,?,?,?,?,?)",
                 (doc["event"]["id"], 0, "ok", fake_ok, 2, doc["message"], json.dumps(doc)))
    conn.commit()
    conn.close()
    result = run(cfg, "verify")
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\\x1b[2K\\x0d\\x1b[32mOK: 6 event(s)" in result.output


# -- finding 5 through the command: the search index -----------------------------------------------------


def test_verify_reports_a_search_index_out_of_step(store, tmp_path):
    cfg = _copy(store, tmp_path)
    conn = sqlite3.connect(tmp_path / "seclog.db")
    conn.execute("INSERT INTO events_fts(events_fts, rowid, message) SELECT 'delete', rowid, message FROM events "
                 "WHERE user_name = 'ok'")
    conn.commit()
    conn.close()
    result = run(cfg, "verify", "--json")
    assert result.exit_code == 1
    [finding] = json.loads(result.output)["findings"]
    assert finding["problem"] == "search-index" and "disagrees with the events" in finding["reason"]


# -- finding 6: free text --------------------------------------------------------------------------------


def test_free_text_without_a_word_is_a_usage_error(store):
    result = run(store, "search", "*")
    assert result.exit_code == 2 and "has no words to search for" in result.output


def test_search_help_says_what_a_word_is():
    text = " ".join(CliRunner().invoke(cli, ["log", "search", "--help"]).output.split())
    assert "四維 does not find 四維分局" in text and "10.0.0.1" in text and "--source-ip" in text


# -- finding 8: --by a field no event has ----------------------------------------------------------------


def test_stats_by_a_field_no_event_has_is_a_usage_error(store):
    result = run(store, "stats", "--by", "user.nmae", "--by", "event.outcome")
    assert result.exit_code == 2
    assert "--by user.nmae: none of the 6 event(s) in the range has this field" in result.output


def test_stats_by_a_field_some_events_lack_still_counts(store):
    result = run(store, "stats", "--by", "user.name", "--json")
    assert result.exit_code == 0 and {"user.name": "", "count": 1} in json.loads(result.output)  # spool-created


# -- finding 9: CSV --------------------------------------------------------------------------------------


def test_search_csv_neutralises_formulas_and_escapes_control_characters(store):
    result = run(store, "search", "--csv", "--action", "sso-login")
    assert result.exit_code == 0 and "\x1b" not in result.output
    rows = list(csv.reader(io.StringIO(result.output)))
    assert rows[0][0] == "@timestamp"  # citydc's own header as it is
    cells = {c for row in rows[1:] for c in row}
    assert "'" + FORMULA in cells and "'=HYPERLINK(\"http://evil.example/x\",\"details\")" in cells
    assert "evil \\x1b]0;pwned\\x07 message" in cells and not any(c.startswith(("=", "+", "-", "@")) for c in cells)


@pytest.mark.parametrize(("value", "cell"), [("=1+2", "'=1+2"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
                                             ("\tx", "'\\x09x"), ("\rx", "'\\x0dx"), ("a=b", "a=b"), (-3, "-3"),
                                             (2.5, "2.5"), (None, ""), ("a\nb", "a\\x0ab")])
def test_csv_cell(value, cell):
    assert csv_cell(value) == cell


def test_the_csv_writer_applies_the_rule_to_rows_not_to_the_header():
    buf = io.StringIO()
    writer = CsvWriter(buf, lineterminator="\n")
    writer.writeheader(["@timestamp", "n"])
    writer.writerows([["=x", -1]])
    assert buf.getvalue() == "@timestamp,n\n'=x,-1\n"


# -- finding 10 ------------------------------------------------------------------------------------------


def test_limit_reached_only_when_more_events_match(store):
    assert "limit reached" not in run(store, "search", "--limit", "6").output
    assert "limit reached" not in run(store, "search", "--limit", "7").output
    result = run(store, "search", "--limit", "5")
    assert "5 event(s)" in result.output and "limit reached" in result.output


def test_verify_with_a_damaged_ack_says_what_it_means_for_verifying(store, tmp_path):
    cfg = _copy(store, tmp_path)
    (tmp_path / "spool" / "ack.json").write_text('{"segment":"seg-0000000001.jsonl"}')
    result = run(cfg, "verify")
    assert result.exit_code == 1
    assert "cannot verify: " in result.output and "ack.json is damaged" in result.output
    assert "cannot record events" not in result.output


def test_a_basic_iso_date_is_read_like_the_extended_one(store):
    basic = run(store, "search", "--csv", "--since", "20260301", "--until", "20260302T0000")
    extended = run(store, "search", "--csv", "--since", "2026-03-01", "--until", "2026-03-02T00:00")
    assert basic.exit_code == extended.exit_code == 0 and basic.output == extended.output


def test_an_out_of_range_date_is_shown_as_typed(store):
    result = run(store, "search", "--since", "0001-01-01")
    assert result.exit_code == 2 and "--since: '0001-01-01' is out of range" in result.output
    assert "+08:06" not in result.output and "T00:00" not in result.output


def test_an_event_the_store_refuses_is_not_blamed_on_the_store_being_down():
    from citydc.cli.log_cmd import _delivery_hint
    from citydc.seclog.store import DeliveryError

    for reason in ("bad_event", "invalid_event", "rejected"):
        assert "once the store is back" not in _delivery_hint(DeliveryError("x", reason))
    assert "once the store is back" in _delivery_hint(DeliveryError("x", "unavailable"))
