"""build_query and parse_time take any text and any integer: a Query or a QueryError naming the option,
never another exception (finding 6), and the filters with ECS's fixed values check them (finding 16)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citydc.seclog.event import KINDS, OUTCOMES
from citydc.seclog.query import EARLIEST, LATEST, MAX_LIMIT, QueryError, build_query, parse_time

NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
TIMES = st.one_of(st.from_regex(r"\A[0-9]{1,25}[smhdw]\Z"),
                  st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?(Z|[+-][0-9]{2}:[0-9]{2})\Z"),
                  st.text(max_size=40))


@given(text=TIMES, option=st.sampled_from(["--since", "--until"]))
def test_parse_time_returns_a_time_every_zone_can_show_or_names_the_option(text, option):
    try:
        value = parse_time(text, option, now=NOW)
    except QueryError as exc:
        assert str(exc).startswith(f"{option}: ")
        return
    assert EARLIEST <= value <= LATEST
    value.astimezone(UTC).astimezone(datetime.now().astimezone().tzinfo)  # shown in any zone: no OverflowError


@given(since=st.one_of(st.none(), TIMES), until=st.one_of(st.none(), TIMES),
       limit=st.one_of(st.none(), st.integers(min_value=-(2**80), max_value=2**80)),
       outcome=st.one_of(st.none(), st.text(max_size=12)), kind=st.one_of(st.none(), st.text(max_size=12)))
def test_build_query_returns_a_query_or_a_query_error(since, until, limit, outcome, kind):
    try:
        query = build_query(since=since, until=until, limit=limit, outcome=outcome, kind=kind, now=NOW)
    except QueryError as exc:
        assert str(exc).startswith("--")
        return
    assert query.limit is None or 1 <= query.limit <= MAX_LIMIT
    assert query.filters.get("event.outcome", "failure") in OUTCOMES
    assert query.filters.get("event.kind", "event") in KINDS


@pytest.mark.parametrize(("text", "message"), [
    ("99999999d", "--since: '99999999d' is out of range: times go from 0001-01-02 to 9999-12-30"),
    ("9999999999999999999999w", "is out of range"),
    ("0001-01-01T00:00Z", "is out of range"),
    ("9999-12-31T20:00-08:00", "is out of range"),  # valid as written, past year 9999 in UTC
    ("2026-02-30T10:00+08:00", "got '2026-02-30T10:00+08:00' (day is out of range for month)"),
])
def test_times_out_of_range_are_query_errors(text, message):
    with pytest.raises(QueryError) as exc:
        parse_time(text, "--since", now=NOW)
    assert message in str(exc.value)


def test_the_limit_stops_at_what_sqlite_takes():
    assert build_query(limit=MAX_LIMIT).limit == MAX_LIMIT
    with pytest.raises(QueryError, match=r"^--limit: expected a positive number up to 9223372036854775807, got "):
        build_query(limit=MAX_LIMIT + 1)


def test_outcome_and_kind_are_ecs_values_in_any_case():
    assert build_query(outcome="Failure", kind="EVENT").filters == {"event.outcome": "failure", "event.kind": "event"}
    with pytest.raises(QueryError, match=r"^--outcome: expected one of failure, success, unknown, got 'failed'$"):
        build_query(outcome="failed")


def test_since_after_until_uses_the_callers_format():
    with pytest.raises(QueryError) as exc:
        build_query(since="1h", until="2h", now=NOW, show=lambda t: f"<{t:%H:%M}>")
    assert str(exc.value) == "--since (<11:00>) must be before --until (<10:00>)"
    assert build_query(since="2h", until="1h", now=NOW).until == NOW - timedelta(hours=1)
