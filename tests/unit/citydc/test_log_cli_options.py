"""Option values of ``citydc log search/stats/verify`` that cannot be right are usage errors naming the option
(exit 2), never a traceback and never "0 events" (findings 6, 16, 17 and 21 of the exploratory test)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.cli.main import cli
from citydc.seclog import emit, make_event

T0 = datetime(2026, 12, 4, 14, 11, 52, tzinfo=UTC)  # 22:11:52 in Taipei


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A SQLite store with 4 events: 2 failures, 2 successes."""
    tmp = tmp_path_factory.mktemp("store")
    cfg = tmp / "citydc.yaml"
    cfg.write_text("sites: [{id: siwei, name: Siwei}]\n"
                   "security_log: {spool_dir: spool, sink: {kind: sqlite, path: seclog.db}}\n", encoding="utf-8")
    emit([make_event(action="ldap-bind", dataset="citydc.ldap", kind="event", category=["authentication"],
                     type=["start"], outcome=("failure", "success")[i % 2], site="siwei", message=f"bind {i}",
                     id_key=f"b{i}", timestamp=T0 + timedelta(minutes=i)) for i in range(4)], spool_dir=tmp / "spool")
    assert CliRunner().invoke(cli, ["-c", str(cfg), "log", "ship"]).exit_code == 0
    return cfg


def run(cfg: Path, *args: str):
    return CliRunner().invoke(cli, ["-c", str(cfg), "log", *args])


def usage_error(cfg: Path, *args: str) -> str:
    """Run the command; assert it was refused as a usage error (exit 2, no traceback); return stderr."""
    result = run(cfg, *args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result.stderr


# -- finding 6: out-of-range times and limits ------------------------------------------------------------------

@pytest.mark.parametrize(("args", "option"), [
    (("search", "--since", "99999999d"), "--since"),
    (("search", "--until", "99999999d"), "--until"),
    (("search", "--since", "999999999999999999w"), "--since"),
    (("stats", "--by", "event.outcome", "--since", "99999999d"), "--since"),
    (("stats", "--by", "event.outcome", "--until", "99999999d"), "--until"),
    (("verify", "--since", "99999999d"), "--since"),
    (("search", "--since", "2026-13-45 25:00"), "--since"),
    (("search", "--until", "2026-02-30 10:00"), "--until"),
    (("stats", "--by", "event.outcome", "--since", "2026-02-30 10:00"), "--since"),
    (("verify", "--since", "2026-13-45 25:00"), "--since"),
    (("search", "--since", "9999-12-31 23:00"), "--since"),
    (("search", "--since", "0001-01-01T00:00:00+14:00"), "--since"),
    (("search", "--limit", "99999999999999999999"), "--limit"),
    (("search", "--limit", "0"), "--limit"),
])
def test_out_of_range_values_are_usage_errors_naming_the_option(store, args, option):
    stderr = usage_error(store, *args)
    assert stderr.startswith(f"error: {option}: "), stderr
    assert stderr.count("\n") == 1, stderr


def test_a_date_that_does_not_exist_says_why(store):
    assert "(day is out of range for month)" in usage_error(store, "search", "--since", "2026-02-30 10:00")
    assert "'99999999d' is out of range" in usage_error(store, "search", "--since", "99999999d")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(["--since", "--until"]),
       value=st.one_of(st.from_regex(r"\A[0-9]{1,25}[smhdw]\Z"),
                       st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}(:[0-9]{2})?)?\Z"),
                       st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})\Z"),
                       st.text(max_size=30).filter(lambda t: not t.startswith("-"))),
       limit=st.one_of(st.none(), st.integers(min_value=-(2**70), max_value=2**70)))
def test_no_time_or_limit_ever_gives_a_traceback(store, option, value, limit):
    args = ["search", option, value, *(["--limit", str(limit)] if limit is not None else [])]
    result = run(store, *args)
    assert result.exit_code in (0, 2), (args, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)


# -- finding 16: --outcome and --kind take ECS's values ------------------------------------------------------

@pytest.mark.parametrize(("option", "allowed"), [
    ("--outcome", "failure, success, unknown"),
    ("--kind", "alert, asset, enrichment, event, metric, pipeline_error, signal, state"),
])
@pytest.mark.parametrize("command", [("search",), ("stats", "--by", "event.outcome")])
def test_a_value_outside_ecs_is_refused_with_the_allowed_ones(store, option, allowed, command):
    stderr = usage_error(store, *command, option, "bogus")
    assert stderr == f"error: {option}: expected one of {allowed}, got 'bogus'\n"


def test_outcome_is_read_in_any_case(store):
    lower = run(store, "stats", "--by", "event.outcome", "--outcome", "failure", "--json")
    upper = run(store, "stats", "--by", "event.outcome", "--outcome", "FAILURE", "--json")
    assert lower.exit_code == upper.exit_code == 0
    assert lower.stdout == upper.stdout
    assert '"count": 2' in upper.stdout


def test_help_lists_the_allowed_values(store):
    text = CliRunner().invoke(cli, ["log", "search", "--help"], terminal_width=200).output
    assert "(one of failure, success, unknown)" in text


# -- finding 17: one output format ---------------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "message"), [
    (("--json", "--csv"), "--json and --csv exclude each other"),
    (("--json", "--ndjson"), "--json and --ndjson exclude each other"),
    (("--ndjson", "--csv", "--json"), "--json, --csv and --ndjson exclude each other"),
])
def test_output_formats_exclude_each_other(store, flags, message):
    assert usage_error(store, "search", *flags).startswith(f"error: {message}: give one output format")


@pytest.mark.parametrize(("flag", "first"), [("--json", "["), ("--csv", "@timestamp,"), ("--ndjson", "{")])
def test_each_output_format_alone_still_works(store, flag, first):
    result = run(store, "search", flag)
    assert result.exit_code == 0 and result.stdout.startswith(first), result.output


# -- finding 21: --since after --until in the zone and format of every time shown ----------------------------

def test_since_after_until_shows_both_times_as_a_person_reads_them(store):
    stderr = usage_error(store, "search", "--since", "2026-12-07 13:00", "--until", "2026-12-07 12:00:30")
    assert stderr == ("error: --since (2026-12-07 13:00:00 +08:00) must be before "
                      "--until (2026-12-07 12:00:30 +08:00)\n")


def test_since_after_until_relative_and_in_utc(store):
    shown = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert re.fullmatch(rf"error: --since \({shown} \+08:00\) must be before --until \({shown} \+08:00\)\n",
                        usage_error(store, "stats", "--by", "event.outcome", "--since", "1h", "--until", "2h"))
    assert re.fullmatch(rf"error: --since \({shown} \+00:00\) must be before --until \({shown} \+00:00\)\n",
                        usage_error(store, "search", "--utc", "--since", "1h", "--until", "2h"))


def test_the_table_shows_control_characters_of_a_stored_message_escaped(tmp_path):
    # A bind DN from slapd's log (anyone may try a bind) reaches the auditor's terminal through log search.
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text("sites: [{id: siwei, name: Siwei}]\n"
                   "security_log: {spool_dir: spool, sink: {kind: sqlite, path: seclog.db}}\n", encoding="utf-8")
    emit([make_event(action="ldap-bind", dataset="citydc.ldap", kind="event", category=["authentication"],
                     type=["start"], outcome="failure", site="siwei", id_key="esc",
                     message="bind of uid=\x1b]0;PWNED\x07x failed", timestamp=T0)], spool_dir=tmp_path / "spool")
    assert run(cfg, "ship").exit_code == 0
    result = run(cfg, "search", "--wide")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "uid=\\x1b]0;PWNED\\x07x" in result.output
