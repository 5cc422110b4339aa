"""Times for people: the data centre's zone (config ``timezone``), to the second, with the offset.

What machines read (stored events, ``--json``, CSV, NDJSON) stays UTC ISO 8601; only what a
person reads goes through here. ``--utc`` shows the same instants in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import click

__all__ = ["DEFAULT_ZONE", "display_zone", "local_option", "set_zone", "show", "utc_option", "utc_show_option",
           "zone_name"]

DEFAULT_ZONE = "Asia/Taipei"
_zone: tzinfo = ZoneInfo(DEFAULT_ZONE)


def set_zone(name: str | None, utc: bool = False) -> None:
    """Given the config's timezone name (None: the default) and --utc, set the zone of every shown time."""
    global _zone
    _zone = UTC if utc else ZoneInfo(name or DEFAULT_ZONE)


def display_zone() -> tzinfo:
    return _zone


def zone_name() -> str:
    return "UTC" if _zone is UTC else str(_zone)


def show(value: float | int | str | datetime | None, missing: str = "never") -> str:
    """Given epoch seconds, an ISO 8601 string or an aware datetime, return ``2026-12-04 22:11:52 +08:00``
    in the display zone; ``missing`` for None or ''. A string that is not a time is returned unchanged.
    """
    if value is None or value == "":
        return missing
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, int | float):
        when = datetime.fromtimestamp(value, UTC)
    else:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # stored times without a zone are UTC by the project's rule
    local = when.astimezone(_zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"


def local_option(text: str | None, option: str = "--since") -> str | None:
    """Given a --since/--until value and its option, return it with the display zone's offset added when it
    is a date or date-time without a zone (``2026-12-04 22:00``, ``20261204``); relative times and zoned
    times pass as they are. Raise QueryError (citydc.seclog.query) naming the option and the text as typed
    when such a time is out of range.
    """
    from citydc.seclog.query import out_of_range, within_range

    if text is None:
        return text
    try:
        # Any zone-less form Python's ISO 8601 parser reads (2026-12-02T00, 2026-W49-3, 20261202T0800), not only
        # the common shapes: each is read in the display zone, as the docs say.
        value = datetime.fromisoformat(text.strip())
    except ValueError:  # a relative time, or not a time (month 13, 30 February): the parser says which
        return text
    if value.tzinfo is not None:
        return text
    local = value.replace(tzinfo=_zone)
    if not within_range(local):  # said here, with what was typed: not the offset-laden text made of it
        raise out_of_range(text.strip(), option)
    return local.isoformat()


def time_help(what: str) -> str:
    return (f"{what}: a local time such as '2026-12-04 22:00' (read in config timezone, default "
            f"{DEFAULT_ZONE}; UTC with --utc), an ISO 8601 time with Z or an offset, or 15m/24h/7d ago.")


def utc_option(fn):
    """The --utc flag of a command that shows times to a person and reads --since/--until."""
    return click.option("--utc", is_flag=True, help="Show times (and read zone-less --since/--until) in UTC "
                                                    "instead of the config's timezone.")(fn)


def utc_show_option(fn):
    """The --utc flag of a command that shows times to a person and reads none."""
    return click.option("--utc", is_flag=True, help="Show times in UTC instead of the config's timezone.")(fn)
