"""Auditor questions: time ranges from the command line, Query objects, and the saved questions.

Times are ISO-8601 with a timezone (``2025-03-01T08:00:00+08:00``, ``2025-03-01T00:00Z``) or
relative to now (``15m``, ``24h``, ``7d``, ``2w``). A saved question is a Query plus, for counting
questions, the fields to count by; ``stale-backups`` compares the configured jobs with the store.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from citydc.seclog.event import KINDS, OUTCOMES
from citydc.seclog.store import FILTER_FIELDS, Query, Store

__all__ = ["SAVED", "QueryError", "SavedQuery", "build_query", "out_of_range", "parse_time", "stale_backups",
           "within_range"]

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# A letter or digit: what the stores' words are made of (FTS5 unicode61 tokens, mirrored by store_es_query).
_WORD_CHARACTER = re.compile(r"[^\W_]")
# A day inside datetime's range on each side: every time accepted can be shown in any zone (offsets < 1 day).
EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
# The largest LIMIT SQLite takes (a signed 64-bit integer); any larger one would mean "all" anyway.
MAX_LIMIT = 2**63 - 1
# Filters with ECS's fixed value sets (what event.py lets into the store): any other value matches nothing.
# Values are lowercase in ECS, so FAILURE is read as failure rather than refused.
ALLOWED_VALUES: dict[str, frozenset[str]] = {"outcome": OUTCOMES, "kind": KINDS}


class QueryError(ValueError):
    """A query option is wrong; the message names the option and what was expected."""


def parse_time(text: str, option: str = "--since", now: datetime | None = None) -> datetime:
    """Given ``7d`` or an ISO-8601 time with timezone, return an aware datetime. Raise QueryError if neither."""
    now = now or datetime.now(UTC)
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        try:
            value = now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:
            raise out_of_range(text, option) from None
    else:
        value = _iso_time(text, option)
    if not within_range(value):
        raise out_of_range(text, option)
    return value


def within_range(value: datetime) -> bool:
    """Given an aware datetime, return whether it lies from EARLIEST to LATEST."""
    try:
        return EARLIEST <= value <= LATEST
    except OverflowError:  # an offset that takes it past year 1 or 9999 in UTC
        return False


def out_of_range(text: str, option: str) -> QueryError:
    """Given the time as the user typed it and its option, return the error saying it is out of range."""
    return QueryError(f"{option}: {text!r} is out of range: times go from {EARLIEST.date()} to {LATEST.date()}")


def _iso_time(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        # Python's words when the shape is right and a field is not (month must be in 1..12): worth showing.
        why = "" if str(exc).startswith("Invalid isoformat") else f" ({exc})"
        raise QueryError(f"{option}: expected a relative time like 15m, 24h, 7d, 2w or an ISO-8601 time "
                         f"like 2025-03-01T08:00:00+08:00, got {text!r}{why}") from None
    if value.tzinfo is None:
        raise QueryError(f"{option}: {text!r} has no timezone; add Z (UTC) or an offset such as +08:00")
    return value


def build_query(*, since: str | None = None, until: str | None = None, text: str | None = None,
                limit: int | None = None, oldest_first: bool = False, now: datetime | None = None,
                show: Callable[[datetime], str] = datetime.isoformat, **options: str | None) -> Query:
    """Given CLI option values (``user=...``, ``source_ip=...``), return the Query.

    Raise QueryError naming the option if a value is wrong; ``show`` writes the times in its message
    (the CLI's: the display zone, to the second).
    """
    filters: dict[str, str | tuple[str, ...]] = {}
    for option, value in options.items():
        if option not in FILTER_FIELDS:
            raise QueryError(f"unknown filter --{option.replace('_', '-')}")
        if value is None:
            continue
        if value == "":  # an unset shell variable ("--user $SUSPECT"): never the whole log instead of one user's
            raise QueryError(f"--{option.replace('_', '-')}: empty value; give the value to match")
        if option == "source_ip":
            try:
                value = canonical_ip(value)
            except ValueError:
                raise QueryError(f"--source-ip: expected an IPv4 or IPv6 address, got {value!r}") from None
            if ipaddress.ip_address(value).version == 4:  # and the form events keep from a dual-stack log
                filters[FILTER_FIELDS[option]] = (value, str(ipaddress.IPv6Address(f"::ffff:{value}")))
                continue
        if option in ALLOWED_VALUES:
            value = _one_of(option, value, ALLOWED_VALUES[option])
        filters[FILTER_FIELDS[option]] = value
    start = parse_time(since, "--since", now) if since else None
    end = parse_time(until, "--until", now) if until else None
    if start and end and start >= end:
        raise QueryError(f"--since ({show(start)}) must be before --until ({show(end)})")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"--limit: expected a positive number up to {MAX_LIMIT}, got {limit}")
    if text and not _WORD_CHARACTER.search(text):  # it would match nothing, by construction
        raise QueryError(f"free text {text[:80]!r} has no words to search for: a word is letters or digits "
                         "(punctuation and * are not searched)")
    return Query(since=start, until=end, filters=filters, text=text or None, limit=limit,
                 newest_first=not oldest_first)


def canonical_ip(value: str) -> str:
    """Given an address, return its canonical text, an IPv4-mapped IPv6 address as its IPv4 address (events keep
    the mapped form as ``::ffff:a0a:106``; build_query matches both). Raise ValueError if it is no address."""
    address = ipaddress.ip_address(value)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _one_of(option: str, value: str, allowed: frozenset[str]) -> str:
    if value.lower() not in allowed:
        raise QueryError(f"--{option}: expected one of {', '.join(sorted(allowed))}, got {value!r}")
    return value.lower()


@dataclass(frozen=True)
class SavedQuery:
    """A named auditor question: a Query (built at run time from ``now``) and the fields to count by, if any."""

    name: str
    description: str
    make: Callable[[datetime], Query]
    by: tuple[str, ...] = ()


def _failed_logins(now: datetime) -> Query:
    return Query(since=now - timedelta(hours=24),
                 filters={"event.category": "authentication", "event.outcome": "failure", "event.kind": "event"})


# What changes who may do what: the iam events of Keycloak's admin events (citydc audit auth, sso/events.py).
PRIVILEGE_ACTIONS = ("iam-role-grant", "iam-role-revoke", "iam-group-join", "iam-group-leave")

SAVED: dict[str, SavedQuery] = {q.name: q for q in (
    SavedQuery("failed-logins", "Failed authentications per user in the last 24 hours.", _failed_logins,
               by=("user.name",)),
    SavedQuery("privileged-changes", "Role grants and revokes, group joins and leaves (who, to whom, when).",
               lambda now: Query(filters={"event.action": PRIVILEGE_ACTIONS})),
    SavedQuery("stale-backups", "Backup jobs without a successful backup-run in the last 26 hours.",
               lambda now: Query(since=now - timedelta(hours=26),
                                 filters={"event.action": "backup-run", "event.outcome": "success"}),
               by=("citydc.backup.job",)),
    SavedQuery("playbook-runs", "Who ran which playbook against which site.",
               lambda now: Query(filters={"event.action": "playbook-run"}),
               by=("user.name", "citydc.playbook.playbook", "labels.site")),
)}


def stale_backups(store: Store, configured_jobs: Iterable[str], now: datetime | None = None,
                  lookback: timedelta = timedelta(days=30)) -> list[dict]:
    """Given the store and the configured job names, return jobs without a successful run in 26 h.

    Jobs seen in backup-run events of the last ``lookback`` count too (a job removed from the
    config but still running elsewhere). Each row holds ``job`` and ``last_success`` (or None).
    """
    now = now or datetime.now(UTC)
    recent = {values[0] for values, _ in store.stats(SAVED["stale-backups"].make(now), ["citydc.backup.job"])}
    seen = {values[0] for values, _ in store.stats(
        Query(since=now - lookback, filters={"event.action": "backup-run"}), ["citydc.backup.job"])}
    rows = []
    for job in sorted((set(configured_jobs) | seen) - recent - {""}):
        last = next(iter(store.search(Query(filters={"event.action": "backup-run", "event.outcome": "success",
                                                      "citydc.backup.job": job}, limit=1))), None)
        rows.append({"job": job, "last_success": last["@timestamp"] if last else None})
    return rows


def describe(query: Query) -> Mapping[str, str]:
    """Given a Query, return its parts as strings (for the table title and --json output)."""
    out = {k: " or ".join(map(str, v)) if isinstance(v, tuple | list) else v for k, v in query.filters.items()}
    if query.since:
        out["since"] = query.since.isoformat()
    if query.until:
        out["until"] = query.until.isoformat()
    if query.text:
        out["text"] = query.text
    return out
