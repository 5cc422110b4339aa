"""Output a person reads at 2 a.m. (issue 16): tables that fit 80 and 120 columns without cutting a
status word, site or name; times in the config's zone with --utc; the reason beside every failure;
an example at the end of every --help.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from citydc.backup.jobs import StepResult, reason, restore_reason
from citydc.cli import backup_cmd, demo_cmd, lab_cmd, output, timefmt
from citydc.cli.main import PLANNED, cli
from citydc.cli.table import Column, print_table, status_style
from citydc.lab.registry import ServiceStatus
from citydc.seclog import emit, make_event

WIDTHS = (80, 120)
FIXTURES = Path(__file__).parents[1] / "backup" / "fixtures"
LONG_ERROR = ("restore failed: /srv/siwei/ldap/2026/12/04/slapcat-full-export.ldif: ciphertext verification failed"
              " (and 3 more file(s))")


@pytest.fixture(autouse=True)
def _taipei():
    timefmt.set_zone("Asia/Taipei")
    yield
    timefmt.set_zone(None)


def render(columns, rows, width: int, **kw) -> str:
    buf = io.StringIO()
    print_table(Console(width=width, file=buf, color_system=None, legacy_windows=False), columns, rows, **kw)
    return buf.getvalue()


def assert_fits_and_whole(text: str, width: int, whole: list[str]) -> None:
    """No line is wider than the console; every value that must never be cut is there in full."""
    lines = text.splitlines()
    assert lines, "nothing printed"
    assert max(len(line.rstrip()) for line in lines) <= width, text
    for value in whole:
        for part in value.split("\n"):
            assert re.search(rf"(^|\s){re.escape(part)}(\s|$)", text, re.M), f"{part!r} cut or missing in:\n{text}"


# -- the table helper ------------------------------------------------------------------------------------


def test_empty_columns_are_left_out_and_wide_keeps_them():
    cols = (Column("job"), Column("user"), Column("status", style=status_style), Column("message", text=True))
    rows = [["siwei-ldap", "", "success", "done"], ["fengshan-configs", "-", "failure", "no route"]]
    narrow = render(cols, rows, 80)
    assert "user" not in narrow and "job" in narrow
    assert "user" in render(cols, rows, 80, wide=True)


def test_free_text_goes_last_and_is_cut_with_an_ellipsis_on_one_line():
    cols = (Column("message", text=True), Column("site"), Column("status"))
    rows = [[LONG_ERROR * 2, "fengshan", "failure"], ["ok", "siwei", "success"]]
    text = render(cols, rows, 80)
    header = text.splitlines()[0]
    assert header.index("site") < header.index("status") < header.index("message")
    body = [line for line in text.splitlines()[2:] if line.strip()]
    assert len(body) == 2  # one line per row: never wrapped a word per line
    assert "…" in body[0] and LONG_ERROR not in text
    assert_fits_and_whole(text, 80, ["fengshan", "failure", "siwei", "success"])


def test_below_a_readable_width_every_row_is_a_block_of_key_value_lines():
    cols = (Column("device"), Column("site"), Column("address"), Column("reason", text=True))
    rows = [["core-sw-siwei-01.dc.example.gov.tw", "siwei", "[2001:db8:100:200::1]:161", "timeout after 3 retries"]]
    text = render(cols, rows, 60)
    assert "device: core-sw-siwei-01.dc.example.gov.tw" in text
    assert "address: [2001:db8:100:200::1]:161" in text and "reason: timeout after 3 retries" in text
    assert "…" not in text


def test_optional_columns_go_before_the_table_becomes_blocks():
    cols = (Column("job"), Column("extra", drop=1), Column("status"), Column("message", text=True))
    rows = [["siwei-ldap", "x" * 50, "success", "the message needs more than the 80 columns leave"]]
    text = render(cols, rows, 80)
    assert "extra" not in text and text.splitlines()[0].startswith("job")  # still a table
    assert "x" * 50 in render(cols, rows, 80, wide=True)


# -- every command that prints a table, at 80 and 120 columns ------------------------------------------------


def _steps() -> list[StepResult]:
    return [StepResult("backup", "local", "success", 12.3, 0, snapshot_id="4f3a2b1c",
                       details={"files_new": 12, "bytes_added": 123456}),
            StepResult("copy", "offsite", "failure", 3.1, 1, "repository unreachable: ssh: connect to host 127.0.0.1 "
                       "port 2222: Connection refused", details={"snapshots_copied": []}),
            StepResult("drill", "offsite", "partial", 40.0, 3, LONG_ERROR, details={})]


@pytest.mark.parametrize("width", WIDTHS)
def test_backup_run_table(width):
    rows = backup_cmd.run_rows(_steps())
    assert [r[2] for r in rows] == ["failure", "partial", "success"]  # failures first
    text = render(backup_cmd.RUN_COLUMNS, rows, width)
    assert_fits_and_whole(text, width, ["backup", "copy", "drill", "local", "offsite", "success", "failure",
                                        "partial", "4f3a2b1c"])
    assert "repository unreachable" in text  # the reason is on the failed row


def _status_rows() -> list[dict]:
    t = datetime(2026, 12, 4, 14, 11, 52, tzinfo=UTC).timestamp()
    drill_error = "restore failed: /srv/data/big0.bin: ciphertext verification failed"
    return [
        {"job": "siwei-ldap", "repo": "local", "status": "success", "last_success": t, "age_seconds": 3600,
         "snapshots": 14, "size_bytes": 10 ** 9, "latest_snapshot_bytes": 10 ** 7,
         "last_drill": {"status": "success", "time": t}, "last_check": None, "error": "", "reason": ""},
        {"job": "fengshan-device-configs", "repo": "offsite", "status": "success", "last_success": t,
         "age_seconds": 7200, "snapshots": 14, "size_bytes": 10 ** 9, "latest_snapshot_bytes": None,
         "last_drill": {"status": "failure", "time": t, "error": drill_error},
         "last_check": None, "error": "", "reason": reason({"status": "failure", "error": drill_error}, "drill")},
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_backup_status_table(width):
    rows = backup_cmd.status_rows(_status_rows())
    assert rows[0][:3] == ["fengshan-device-configs", "offsite", "failure"]  # the failed drill sorts first
    text = render(backup_cmd.STATUS_COLUMNS, rows, width)
    assert_fits_and_whole(text, width, ["siwei-ldap", "fengshan-device-configs", "local", "offsite", "success",
                                        "failure", "2026-12-04 22:11:52 +08:00"])


@pytest.mark.parametrize("width", WIDTHS)
def test_lab_status_table(width):
    statuses = [ServiceStatus("snmpd", "net-snmp", True, (4242,), {"snmp": "127.0.0.1:16161"}),
                ServiceStatus("elasticsearch", "search", False, (), {"https": "https://127.0.0.1:19200",
                                                                     "ca": "/tmp/citydc-lab/elasticsearch/ca.crt"})]
    rows = lab_cmd.status_rows(statuses)
    assert rows[0][1] == "stopped"
    text = render(lab_cmd.STATUS_COLUMNS, rows, width)
    assert_fits_and_whole(text, width, ["snmpd", "elasticsearch", "running", "stopped", "4242",
                                        "snmp: 127.0.0.1:16161", "ca: /tmp/citydc-lab/elasticsearch/ca.crt"])


@pytest.mark.parametrize("width", WIDTHS)
def test_demo_tables(width):
    summary = [["netflow", "FAILED", "v9 records differ from nfdump's: 181 vs 189 " * 3], ["snmp", "ok", "9 devices"]]
    text = render(demo_cmd.SUMMARY_COLUMNS, summary, width)
    assert_fits_and_whole(text, width, ["netflow", "FAILED", "snmp", "ok"])
    snmp = demo_cmd.snmp_rows([
        {"device": "siwei-core-01", "site": "siwei", "address": "127.0.0.1:16161", "up": True, "interfaces": 52,
         "varbinds": 1040, "reason": ""},
        {"device": "fengshan-edge-02", "site": "fengshan", "address": "127.0.0.1:16162", "up": False,
         "interfaces": 0, "varbinds": 0, "reason": "timeout: no answer within 2 s after 1 retry"}])
    assert snmp[0][0] == "fengshan-edge-02"  # the device that is down first
    assert_fits_and_whole(render(demo_cmd.SNMP_COLUMNS, snmp, width), width,
                          ["siwei-core-01", "fengshan-edge-02", "siwei", "fengshan", "127.0.0.1:16161"])
    flows = demo_cmd.netflow_rows([
        {"exporter": "127.0.0.2", "site": "fengshan", "version": "ipfix", "records": 189, "bytes": 1234567,
         "ok": True, "nfdump_records": 189, "nfdump_bytes": 1234567, "top_protocol": "tcp/443 https 812,345 B",
         "top_agency": "Kaohsiung City Government Bureau of Education 423,211 B"}])
    assert_fits_and_whole(render(demo_cmd.NETFLOW_COLUMNS, flows, width), width,
                          ["127.0.0.2", "fengshan", "ipfix", "189", "1,234,567"])


# -- the security log through the real command: table width, local time, --utc, --since ----------------------

T0 = datetime(2026, 12, 4, 14, 11, 52, tzinfo=UTC)  # 22:11:52 in Taipei


@pytest.fixture
def seclog(tmp_path: Path) -> Path:
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text("sites: [{id: siwei, name: Siwei}, {id: fengshan, name: Fengshan}]\n"
                   "security_log: {spool_dir: spool, sink: {kind: sqlite, path: seclog.db}}\n"
                   "backup: {jobs: [{name: fengshan-device-configs, site: fengshan, sources: [/srv/configs],\n"
                   "  local_repo: {url: /srv/restic, password: 'env:NO_SUCH_PW', site: fengshan}}]}\n",
                   encoding="utf-8")
    events = [make_event(action="restore-drill", dataset="citydc.backup", kind="event", category=["process"],
                         type=["end"], outcome="failure" if i % 2 else "success", site=("siwei", "fengshan")[i % 2],
                         message=f"drill {i} of fengshan-device-configs: " + "restore failed: pack damaged " * 4,
                         id_key=f"e{i}", timestamp=T0 + timedelta(minutes=20 * i)) for i in range(6)]
    emit(events, spool_dir=tmp_path / "spool")
    result = CliRunner().invoke(cli, ["-c", str(cfg), "log", "ship"])
    assert result.exit_code == 0, result.output
    assert "delivered 7 event(s)" in result.stderr and "━" not in result.stderr  # piped: no progress bar
    return cfg


def invoke(cfg: Path, *args: str, width: int = 120) -> str:
    old = output.out.width
    output.out.width = width
    try:
        result = CliRunner().invoke(cli, ["-c", str(cfg), *args])
    finally:
        output.out.width = old
    assert result.exit_code in (0, 1), result.output
    return result.stdout


@pytest.mark.parametrize("width", WIDTHS)
def test_log_search_table_fits(seclog, width):
    text = invoke(seclog, "log", "search", width=width)
    assert_fits_and_whole(text, width, ["siwei", "fengshan", "restore-drill", "success", "failure",
                                        "2026-12-04 22:11:52 +08:00"])
    assert "user" not in text.splitlines()[1] and "source" not in text  # empty in every row: left out
    stats = invoke(seclog, "log", "stats", "--by", "labels.site", "--by", "event.outcome", width=width)
    assert_fits_and_whole(stats, width, ["siwei", "fengshan", "success", "failure", "3"])


@pytest.mark.parametrize("width", WIDTHS)
def test_log_saved_and_config_check_tables_fit(seclog, width):
    listing = invoke(seclog, "log", "saved", width=width)
    assert_fits_and_whole(listing, width, ["stale-backups", "failed-logins", "privileged-changes"])
    stale = invoke(seclog, "log", "saved", "stale-backups", width=width)
    assert_fits_and_whole(stale, width, ["fengshan-device-configs", "never"])
    check = invoke(seclog, "config", "check", str(seclog), width=width)
    assert_fits_and_whole(check, width, ["siwei, fengshan", "sqlite", "Asia/Taipei"])


def _shown_times(text: str) -> list[datetime]:
    return [datetime.strptime(m, "%Y-%m-%d %H:%M:%S %z")
            for m in re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d", text)]


def test_the_same_event_shows_the_same_instant_in_local_time_and_in_utc(seclog):
    # The spool's own spool-created event (now) opens the chain; the test's events are the rest.
    local = invoke(seclog, "log", "search", "--oldest-first", "--dataset", "citydc.backup")
    utc = invoke(seclog, "log", "search", "--oldest-first", "--utc", "--dataset", "citydc.backup")
    assert "2026-12-04 22:11:52 +08:00" in local and "2026-12-04 14:11:52 +00:00" in utc
    expected = [T0 + timedelta(minutes=20 * i) for i in range(6)]
    assert _shown_times(local) == _shown_times(utc) == expected
    # machines keep UTC ISO 8601
    stored = json.loads(invoke(seclog, "log", "search", "--json", "--oldest-first"))
    assert stored[0]["@timestamp"].startswith("2026-12-04T14:11:52") and stored[0]["@timestamp"].endswith("Z")


def _ids(cfg: Path, *args: str) -> list[str]:
    return [json.loads(line)["event"]["id"] for line in invoke(cfg, "log", "search", "--ndjson", *args).splitlines()]


def test_since_in_local_time_selects_the_same_events_as_its_utc_equivalent(seclog):
    local = _ids(seclog, "--since", "2026-12-04 22:40", "--until", "2026-12-04 23:30")
    assert len(local) == 2  # 22:51:52 and 23:11:52 Taipei time
    assert local == _ids(seclog, "--since", "2026-12-04T14:40:00Z", "--until", "2026-12-04T15:30:00Z")
    assert local == _ids(seclog, "--utc", "--since", "2026-12-04 14:40", "--until", "2026-12-04 15:30")
    assert local != _ids(seclog, "--utc", "--since", "2026-12-04 22:40", "--until", "2026-12-04 23:30")


def test_the_table_says_which_zone_it_read_since_in(seclog):
    result = CliRunner().invoke(cli, ["-c", str(seclog), "log", "search", "--since", "2026-12-04 22:40"])
    assert "since 2026-12-04 22:40:00 +08:00 (Asia/Taipei)" in result.stderr


@pytest.mark.parametrize("zone", ["Asia/Taipie", "Asia", "/etc/localtime", "a" * 300, "../x", ""])
def test_timezone_is_checked_at_load(tmp_path, zone):
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text(f"sites: [{{id: siwei, name: Siwei}}]\ntimezone: '{zone}'\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["config", "check", str(cfg)])
    assert result.exit_code == 2 and "timezone" in result.stderr and "unknown time zone" in result.stderr, result.output


def test_show_formats_every_kind_of_time():
    assert timefmt.show("2026-12-04T14:11:52.123Z") == "2026-12-04 22:11:52 +08:00"
    assert timefmt.show(T0.timestamp()) == "2026-12-04 22:11:52 +08:00"
    assert timefmt.show(None) == "never"
    timefmt.set_zone("Asia/Taipei", utc=True)
    assert timefmt.show(T0) == "2026-12-04 14:11:52 +00:00"
    assert timefmt.local_option("7d") == "7d" and timefmt.local_option("2026-12-04T01:00Z") == "2026-12-04T01:00Z"


# -- the reason for every failure -----------------------------------------------------------------------------


def test_a_failed_restore_names_the_first_file_and_restics_message():
    stderr = json.loads((FIXTURES / "restore_corrupt.json").read_text())["stderr"]
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    assert restore_reason(lines, "failure") == "/work/data/big.bin: ciphertext verification failed"
    assert reason({"status": "failure", "error": "x"}, "drill") == "drill failure: x"
    assert reason({"status": "success", "error": ""}, "drill") == ""
    partial = {"status": "partial", "first_failure": "/a: not restored"}
    assert reason(partial, "drill") == "drill partial: /a: not restored"


# -- every command's help ends with a real example ----------------------------------------------------------


def _walk(group: click.Group, ctx: click.Context, path: list[str]):
    for name in group.list_commands(ctx):
        if not path and name in PLANNED:
            continue  # not built yet: nothing to show an example of
        command = group.get_command(ctx, name)
        yield [*path, name]
        if isinstance(command, click.Group):
            yield from _walk(command, click.Context(command, parent=ctx, info_name=name), [*path, name])


COMMANDS = [[], *_walk(cli, click.Context(cli, info_name="citydc"), [])]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "citydc")
def test_every_help_ends_with_an_example_of_that_command(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    tail = result.output.rsplit("Examples:", 1)
    assert len(tail) == 2, f"no examples in `citydc {' '.join(path)} --help`"
    examples = [line.strip() for line in tail[1].splitlines() if line.strip()]
    assert examples and all(e.startswith(" ".join(["citydc", *path])) for e in examples), examples
    for example in examples:
        _parses(example)


def _parses(example: str) -> None:
    """Parse an example's arguments down to its command (nothing is run): every option in it exists."""
    words = shlex.split(example.split(" > ")[0])[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # protected_args: how click 8 hands a group its rest
        _parse(words)


def _parse(words: list[str]) -> None:
    ctx = cli.make_context("citydc", words)
    command, args = cli, [*ctx.protected_args, *ctx.args]
    while isinstance(command, click.Group) and args:
        _, command, args = command.resolve_command(ctx, args)
        ctx = command.make_context(command.name, args, parent=ctx)
        args = [*getattr(ctx, "protected_args", []), *ctx.args] if isinstance(command, click.Group) else []


def test_the_netflow_summary_names_the_reasons_of_decode_errors():
    from collections import Counter

    from citydc.cli.collect_netflow import decode_error_reasons

    assert decode_error_reasons(Counter()) == ""
    errors = Counter({("siwei", "127.0.0.1", "short_header"): 3, ("fengshan", "127.0.0.2", "unknown_template"): 5})
    assert decode_error_reasons(errors) == ("unknown_template from 127.0.0.2 (fengshan): 5, "
                                            "short_header from 127.0.0.1 (siwei): 3")


def test_an_empty_result_says_none():
    assert render((Column("job"), Column("last success")), [], 80, title="stale backups").splitlines() == [
        "stale backups", "(none)"]


def test_lab_up_measures_what_a_download_added(tmp_path):
    from citydc.cli.lab_cmd import tree_bytes

    (tmp_path / "m2" / "org").mkdir(parents=True)
    assert tree_bytes([tmp_path / "m2", tmp_path / "missing"]) == 0
    (tmp_path / "m2" / "org" / "es.zip.part").write_bytes(b"x" * 3000)
    (tmp_path / "m2" / "pom").write_bytes(b"y" * 10)
    assert tree_bytes([tmp_path / "m2"]) == 3010
    assert tree_bytes([tmp_path / "m2"], budget_files=1) is None  # too many files to watch: no figure


def test_progress_is_off_unless_stderr_is_a_terminal(monkeypatch):
    assert output.progress().disable  # pytest's stderr is no terminal: as under cron or in a pipe
    monkeypatch.setattr(type(output.err), "is_terminal", property(lambda self: True))
    assert not output.progress().disable and output.progress(enabled=False).disable


# -- citydc audit (ldap, diff, auth) ------------------------------------------------------------------------

def _findings() -> list[dict]:
    return [
        {"severity": "critical", "rule": "LDAP-PWD-001", "subject": "uid=chen.wei,ou=people,ou=siwei,dc=city,dc=tw",
         "message": "userPassword is stored in cleartext; anyone who can read the attribute can log in as the user"},
        {"severity": "medium", "rule": "LDAP-ACC-001", "subject": "uid=lin.mei,ou=people,ou=fengshan,dc=city,dc=tw",
         "message": "enabled, last bind 412 days ago (limit 90 days)"},
        {"severity": "high", "rule": "LDAP-POL-002", "subject": "cn=default,ou=policies,dc=city,dc=tw",
         "message": "pwdLockout is FALSE: unlimited guesses"},
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_audit_findings_and_diff_tables(width):
    from citydc.cli import audit_cmd

    whole = ["critical", "medium", "high", "LDAP-PWD-001", "LDAP-ACC-001", "LDAP-POL-002",
             "uid=chen.wei,ou=people,ou=siwei,dc=city,dc=tw", "uid=lin.mei,ou=people,ou=fengshan,dc=city,dc=tw"]
    text = render(audit_cmd.FINDING_COLUMNS, audit_cmd.finding_rows(_findings()), width)
    assert_fits_and_whole(text, width, whole)
    assert "cleartext" in text  # the reason is shown, cut if it must be, never dropped
    text = render(audit_cmd.DIFF_COLUMNS, audit_cmd.diff_rows(_findings()[:2], _findings()[2:]), width)
    assert_fits_and_whole(text, width, [*whole, "new", "resolved"])


@pytest.mark.parametrize("width", WIDTHS)
def test_audit_detections_table_in_local_time(width):
    from citydc.cli import audit_cmd

    detections = [{"when": "2026-12-04T14:11:52+00:00", "action": "ldap-password-spraying", "source_ip": "10.20.30.40",
                   "message": "12 accounts failed from 10.20.30.40 within 600 s (threshold 10)"},
                  {"when": "2026-12-04T14:12:03+00:00", "action": "ldap-brute-force", "source_ip": None,
                   "message": "uid=chen.wei: 8 failures within 300 s"}]
    text = render(audit_cmd.DETECTION_COLUMNS, audit_cmd.detection_rows(detections), width)
    assert_fits_and_whole(text, width, ["2026-12-04 22:11:52 +08:00", "ldap-password-spraying",
                                        "ldap-brute-force", "10.20.30.40"])


_JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=6),
                         st.sampled_from(["四維", "\u2028\x7f\x01\"\\", "\ud800"]),
                         st.floats(allow_nan=True), st.datetimes(), st.tuples(st.integers()))
_JSON = st.recursive(_JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), inner, max_size=3)),
    max_leaves=12)


@settings(max_examples=500, deadline=None)
@given(_JSON)
def test_json_output_is_exactly_what_json_dumps_writes(data):
    # orjson encodes plain data (audit auth --json prints thousands of detections); the text must not change.
    assert output.json_text(data) == json.dumps(data, indent=2, ensure_ascii=False, default=str)


def test_json_output_of_a_report_takes_the_fast_path(monkeypatch):
    report = {"sources": [{"source": "g", "log": None, "detections": [
        {"action": "auth-spraying", "users": ["a", "b"], "details": {"accounts_by_origin": {"keycloak": 6}}}]}]}
    monkeypatch.setattr(json, "dumps", lambda *a, **k: pytest.fail("not the fast path"))
    assert output.json_text(report).startswith('{\n  "sources": [\n    {\n      "source": "g",')
