"""Time ranges and filters from the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from citydc.seclog.query import PRIVILEGE_ACTIONS, SAVED, QueryError, build_query, parse_time

NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "ago"), [("15m", timedelta(minutes=15)), ("24h", timedelta(hours=24)),
                                           ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)),
                                           ("30s", timedelta(seconds=30))])
def test_relative_times(text, ago):
    assert parse_time(text, now=NOW) == NOW - ago


def test_absolute_times_keep_their_offset():
    value = parse_time("2026-03-01T08:00:00+08:00", now=NOW)
    assert value == datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    assert value.utcoffset() == timedelta(hours=8)
    assert parse_time("2026-03-01T00:00Z") == datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(("text", "message"), [
    ("3x", "expected a relative time like 15m"),
    ("yesterday", "expected a relative time like 15m"),
    ("2026-03-01T08:00:00", "has no timezone; add Z"),
    ("2026-13-01T00:00Z", "ISO-8601"),
])
def test_bad_times_say_what_was_expected(text, message):
    with pytest.raises(QueryError) as err:
        parse_time(text, "--until", now=NOW)
    assert str(err.value).startswith("--until: ")
    assert message in str(err.value)


def test_build_query_maps_options_to_ecs_fields():
    q = build_query(since="24h", user="alice", source_ip="2001:DB8::1", outcome="failure", site=None,
                    text="denied vpn", limit=5, now=NOW)
    assert q.since == NOW - timedelta(hours=24)
    assert q.until is None
    assert q.filters == {"user.name": "alice", "source.ip": "2001:db8::1", "event.outcome": "failure"}
    assert q.text == "denied vpn"
    assert q.limit == 5
    assert q.newest_first is True


@pytest.mark.parametrize(("options", "message"), [
    ({"source_ip": "10.1"}, "--source-ip: expected an IPv4 or IPv6 address"),
    ({"since": "1d", "until": "2d"}, "--since (" ),
    ({"limit": 0}, "--limit: expected a positive number"),
    ({"colour": "red"}, "unknown filter --colour"),
])
def test_build_query_errors_name_the_option(options, message):
    with pytest.raises(QueryError) as err:
        build_query(now=NOW, **options)
    assert message in str(err.value)


def test_saved_questions():
    assert set(SAVED) == {"failed-logins", "privileged-changes", "stale-backups", "playbook-runs"}
    q = SAVED["failed-logins"].make(NOW)
    assert q.since == NOW - timedelta(hours=24)
    assert q.filters["event.category"] == "authentication" and q.filters["event.outcome"] == "failure"
    assert SAVED["failed-logins"].by == ("user.name",)
    assert SAVED["privileged-changes"].make(NOW).filters == {"event.action": PRIVILEGE_ACTIONS}
    assert SAVED["stale-backups"].make(NOW).since == NOW - timedelta(hours=26)
    assert SAVED["playbook-runs"].by == ("user.name", "citydc.playbook.playbook", "labels.site")


def test_naive_times_never_pass_silently():
    with pytest.raises(QueryError):
        parse_time("2026-03-01T00:00:00", now=NOW)
    assert parse_time("2026-03-01T00:00:00-03:00").tzinfo == timezone(timedelta(hours=-3))
