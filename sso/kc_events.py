"""Keycloak's stored user events (logins…) and admin events, read through the admin API, resumably.

Per realm and per stream (``events``, ``admin-events``) the cursor is the time (ms) of the newest event
processed and the ids processed at that millisecond. A run asks for ``dateFrom=<cursor time>`` in
ascending order (``direction=asc``), page by page: events that arrive while it reads are appended after
what it has paged through, so a burst larger than a page leaves no gap, and the ids already processed
at the cursor's millisecond are skipped, so a restart reads nothing twice. The pages are fetched one after
the other in a background thread, up to ``AHEAD`` pages ahead of the mapping, so Keycloak is kept busy.

Each event becomes an ECS event (``events.sso_user_event`` / ``events.iam_event``); a login (``LOGIN``,
``LOGIN_ERROR``) with a username is also an ``Attempt`` for the detections. Admin events name users by
id: the acting and the target user are looked up once per run (a user the audit client may not read,
e.g. an administrator of ``master`` without ``view-users`` there, stays an id with its realm).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import queue
import re
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import quote

from citydc.seclog.event import Encoded, datetime_of_ms
from citydc.sso import events
from citydc.sso.detect import Attempt
from citydc.sso.keycloak import ApiShapeError, Keycloak, KeycloakError, need_list, need_map
from citydc.sso.keycloak import field as api_field

__all__ = ["STREAMS", "Cursor", "KcItem", "UserNames", "read_stream"]

STREAMS = ("events", "admin-events")
LOGIN_TYPES = frozenset({"LOGIN", "LOGIN_ERROR"})
MAX_IDS = 10_000  # ids kept at the cursor's millisecond (more events in one ms than this: a flood)
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last instant a datetime holds
_EXACT_MS = 2**32 * 1000  # below: datetime.fromtimestamp(ms / 1000) is that millisecond (event.format_timestamp_ms)
_USER_PATH = re.compile(r"^users/([0-9A-Za-z-]+)(?:/|$)")
_DETAIL_KEYS = ("auth_method", "grant_type", "auth_type", "redirect_uri", "code_id", "identity_provider")
_DETAIL_KEY_SET = frozenset(_DETAIL_KEYS)


@dataclass
class Cursor:
    time_ms: int = 0
    ids: list[str] = field(default_factory=list)  # processed at time_ms

    @classmethod
    def from_json(cls, data: Any) -> Cursor:
        if not isinstance(data, Mapping):
            return cls()
        t, ids = data.get("time_ms"), data.get("ids")
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            return cls()
        return cls(t, [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else [])

    def to_json(self) -> dict[str, Any]:
        return {"time_ms": self.time_ms, "ids": list(self.ids)}

    def advance(self, t: int, event_id: str) -> None:
        if t > self.time_ms:
            self.time_ms, self.ids = t, [event_id]
        elif len(self.ids) < MAX_IDS:
            self.ids.append(event_id)


class KcItem(NamedTuple):
    """One event read: its time (``key``: seconds, ``when.timestamp()``, the merge's order; ``time_ms``), where it
    came from, its ECS event (``Encoded``: validated and encoded once) and (logins) the detector's view.
    A named tuple: one is made per event."""

    key: float
    realm: str
    stream: str
    time_ms: int
    event_id: str
    event: Encoded
    attempt: Attempt | None

    @property
    def when(self) -> datetime:
        return datetime_of_ms(self.time_ms)

    @property
    def doc(self) -> dict:
        """The ECS document, as a new dict (decoded from the bytes that are spooled)."""
        return self.event.doc


def _key(time_ms: int) -> float:
    """Given epoch ms, return ``datetime_of_ms(time_ms).timestamp()``, the merge's key (``time_ms / 1000`` while
    that is the same float: event.format_timestamp_ms)."""
    return time_ms / 1000 if time_ms < _EXACT_MS else datetime_of_ms(time_ms).timestamp()


class UserNames:
    """User id -> username, looked up through the admin API once per run; unknown ids stay ids."""

    def __init__(self, kc: Keycloak) -> None:
        self.kc = kc
        self.realm_names: dict[str, str] | None = None
        # Realms listed without their id: an audit client with only view-users of master sees master so.
        self.unnamed: list[str] = []
        self.cache: dict[tuple[str, str], str | None] = {}
        # Per realm, e-mail logins whose account turned out to have that very address as its username: a realm
        # with e-mail addresses as usernames would otherwise cost one look-up per user (_account_of).
        self.typed_is_account: dict[str, int] = {}

    def realm_of(self, realm_id: str) -> str | None:
        if self.realm_names is None:
            self.realm_names = {}
            try:
                for r in need_list(self.kc.get(""), "realms"):
                    if isinstance(r, Mapping) and isinstance(r.get("realm"), str):
                        if isinstance(r.get("id"), str):
                            self.realm_names[r["id"]] = r["realm"]
                        else:
                            self.unnamed.append(r["realm"])
            except KeycloakError:
                pass
        return self.realm_names.get(realm_id)

    def actor(self, realm_id: str, user_id: str) -> tuple[str | None, str | None]:
        """Given an admin event's acting realm id and user id, return (realm name, username), each None
        when it cannot be read."""
        realm = self.realm_of(realm_id)
        if realm is not None:
            return realm, self.name(realm, user_id)
        for candidate in self.unnamed:
            if (found := self.name(candidate, user_id)) is not None:
                return candidate, found
        return None, None

    def name(self, realm: str | None, user_id: str) -> str | None:
        if realm is None:
            return None
        key = (realm, user_id)
        if key not in self.cache:
            try:
                rep = need_map(self.kc.get(f"{quote(realm, safe='')}/users/{quote(user_id, safe='')}"), "user")
                name = rep.get("username")
                self.cache[key] = name if isinstance(name, str) and name else None
            except KeycloakError:  # deleted since, or not readable by the audit client
                self.cache[key] = None
        return self.cache[key]


def _ip(value: Any) -> str | None:
    return _canonical_ip(value) if isinstance(value, str) else None


@functools.lru_cache(maxsize=4096)
def _canonical_ip(value: str) -> str | None:
    # Logins come from few addresses and parsing one costs about 10 us (bench/sso_events.py: 0.19 s of 20,000
    # events), so the answers are remembered; a malformed one is None.
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _time_ms(obj: Mapping[str, Any], where: str) -> int:
    t = obj.get("time")
    if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t <= _MAX_MS:
        raise ApiShapeError(f"{where}.time: expected epoch milliseconds, got {t!r}")
    return t


def _event_id(obj: Mapping[str, Any], where: str) -> str:
    value = api_field(obj, "id", str, where, None)
    if value:
        return value
    # Keycloak before 23 has no event id: the event's own content identifies it.
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def map_user_event(obj: Mapping[str, Any], *, realm: str, where: str, source: str, site: str,
                   names: UserNames | None) -> tuple[Encoded, Attempt | None, int, str]:
    """Given one stored user event, return its ECS event, its detector attempt (logins), time and id."""
    t, eid = _time_ms(obj, where), _event_id(obj, where)
    event, attempt = _user_event(obj, t, eid, where, names, events.SsoUserEvents(site, source, realm),
                                 f"{source}:{realm}:events:")
    return event, attempt, t, eid


def _user_event(obj: Mapping[str, Any], t: int, eid: str, where: str, names: UserNames | None,
                build: events.SsoUserEvents, id_prefix: str) -> tuple[Encoded, Attempt | None]:
    get = obj.get
    kc_type, user_id, error = get("type"), get("userId"), get("error")
    raw_ip, sid, client, details = get("ipAddress"), get("sessionId"), get("clientId"), get("details")
    # Each field is read once and checked by its exact type (what JSON gives); any other shape goes the careful
    # way (_checked_user_fields), which accepts a subclass and names the field of a wrong type, in the order
    # the fields were always checked.
    if ((kc_type is None or type(kc_type) is str) and (user_id is None or type(user_id) is str)
            and (error is None or type(error) is str) and (raw_ip is None or type(raw_ip) is str)
            and (sid is None or type(sid) is str) and (client is None or type(client) is str)
            and (details is None or type(details) is dict)):
        if details is None:
            details = {}
        username = details.get("username")
        if type(username) is not str and not isinstance(username, str):
            username = None
        if not username and user_id and names is not None:
            username = names.name(build.realm, user_id)
    else:
        kc_type, details, user_id, username, error, raw_ip, sid, client = _checked_user_fields(
            obj, where, build.realm, names)
    kc_type = kc_type or "UNKNOWN"
    ip = _ip(raw_ip)
    extra: dict[str, Any] = {k: v for k, v in details.items() if k in _DETAIL_KEY_SET and isinstance(v, str)}
    if username and user_id and names is not None and "@" in username:
        username = _account_of(username, user_id, names, build.realm, extra)
    if user_id:
        extra["user_id"] = user_id
    if sid:
        extra["session_id"] = sid
    if raw_ip and not ip:
        extra["ip_address"] = raw_ip[:100]
    success = error is None and not kc_type.endswith("_ERROR")
    event = build.make(kc_type[:64], success, username or None, client, ip, t, id_prefix + eid,
                       error[:200] if error else None, extra)
    attempt = None
    if username and kc_type in LOGIN_TYPES:
        attempt = Attempt(datetime_of_ms(t), username, ip, success, "keycloak")
    return event, attempt


def _account_of(typed: str, user_id: str, names: UserNames, realm: str, extra: dict[str, Any]) -> str:
    """Given the name a user typed (an e-mail address: Keycloak lets users log in with it by default), the user's
    id, the name look-up and the event's details, return the account's username (the typed name goes into the
    details as ``login_name``). Else failures by e-mail and by username would be two accounts to the detector
    (Keycloak 26.5.6 records ``details.username`` as typed, ``plain@city.example`` for the user ``plain``)."""
    seen_same = names.typed_is_account.get(realm, 0)
    if seen_same >= SAME_ACCOUNT_LOOKUPS:
        return typed  # this realm's usernames are the e-mail addresses: no more look-ups
    account = names.name(realm, user_id)
    if not account or account.lower() == typed.lower():
        if account and seen_same >= 0:
            names.typed_is_account[realm] = seen_same + 1
        return typed
    names.typed_is_account[realm] = -1  # e-mail logins to accounts named otherwise: always look them up
    extra["login_name"] = typed[:200]
    return account


def _checked_user_fields(obj: Mapping[str, Any], where: str, realm: str, names: UserNames | None) -> tuple:
    """Given a user event of an unusual shape, return (type, details, userId, username, error, ipAddress,
    sessionId, clientId), each read through keycloak.field: an ApiShapeError names the first field of a wrong
    type, in this order (and the username is looked up by id before the error field is read, as always)."""
    kc_type = api_field(obj, "type", str, where, None)
    details = obj.get("details") or {}
    if not isinstance(details, Mapping):
        raise ApiShapeError(f"{where}.details: expected a JSON object, got {type(details).__name__}")
    username = details.get("username") if isinstance(details.get("username"), str) else None
    user_id = api_field(obj, "userId", str, where, None)
    if not username and user_id and names is not None:
        username = names.name(realm, user_id)
    error = api_field(obj, "error", str, where, None)
    raw_ip = api_field(obj, "ipAddress", str, where, None)
    sid = api_field(obj, "sessionId", str, where, None)
    client = api_field(obj, "clientId", str, where, None)
    return kc_type, details, user_id, username, error, raw_ip, sid, client


def map_admin_event(obj: Mapping[str, Any], *, realm: str, where: str, source: str, site: str,
                    names: UserNames | None) -> tuple[Encoded, int, str]:
    """Given one stored admin event, return its ``iam-*`` ECS event, time and id."""
    t, eid = _time_ms(obj, where), _event_id(obj, where)
    auth = obj.get("authDetails") or {}
    if not isinstance(auth, Mapping):
        raise ApiShapeError(f"{where}.authDetails: expected a JSON object, got {type(auth).__name__}")
    resource_type = api_field(obj, "resourceType", str, where, None) or "UNKNOWN"
    operation = api_field(obj, "operationType", str, where, None) or "UNKNOWN"
    path = api_field(obj, "resourcePath", str, where, None) or ""
    actor_id = api_field(auth, "userId", str, f"{where}.authDetails", None)
    actor_realm_id = api_field(auth, "realmId", str, f"{where}.authDetails", None)
    actor_realm, actor = (names.actor(actor_realm_id, actor_id) if names is not None and actor_realm_id and actor_id
                          else (None, None))
    actor = actor or actor_id
    target_id = m.group(1) if (m := _USER_PATH.match(path)) else None
    target = (names.name(realm, target_id) if names is not None and target_id else None) or target_id
    extra: dict[str, Any] = {"resource_path": path[:300]}
    if actor_id:
        extra["actor_id"] = actor_id
        extra["actor_realm"] = actor_realm or actor_realm_id
    if target_id:
        extra["target_id"] = target_id
    roles = _role_names(obj.get("representation")) if "ROLE_MAPPING" in resource_type else []
    if roles:
        extra["roles"] = roles
    error = api_field(obj, "error", str, where, None)
    doc = events.iam_event(
        resource_type=resource_type[:64], operation=operation[:32], actor=actor, target=target,
        source_ip=_ip(auth.get("ipAddress")), when=datetime_of_ms(t), site=site, source=source,
        realm=realm, id_key=f"{source}:{realm}:admin-events:{eid}", error=error[:200] if error else None,
        details=extra)
    return doc, t, eid


def _role_names(representation: Any) -> list[str]:
    # Only the role names: the representation of other resources can hold credentials (SSO-ADM-002).
    if not isinstance(representation, str):
        return []
    try:
        reps = json.loads(representation)
    except ValueError:
        return []
    if not isinstance(reps, list):
        return []
    return [r["name"][:100] for r in reps if isinstance(r, dict) and isinstance(r.get("name"), str)][:50]


# E-mail logins looked up in a realm before it is taken for one whose usernames are e-mail addresses (every look-up
# gave back the typed address), unless one of them named another account.
SAME_ACCOUNT_LOOKUPS = 20

AHEAD = 2  # pages fetched and waiting at most, besides the one being mapped


class _Pager:
    """Where the next page starts, and which events of a page were read before.

    Once a page has shown the server's times rising (``__init__``), each page is asked from the newest
    millisecond read so far (``dateFrom``, inclusive) with ``first=0``, so
    Keycloak's work per page stays the same however far the read has gone: with a fixed ``dateFrom`` and a
    growing ``first`` it skips every row returned before, again on each page (a backlog of N events cost it
    O(N²/page)). The events at that millisecond come again at the top of the next page and are dropped here by
    id, whatever order Keycloak gives events of one millisecond. Only a page wholly of one millisecond
    moves ``first`` on (by the page's length), so the read always makes progress; those offsets within one
    millisecond assume Keycloak's order of its events holds from one request to the next, as paging with
    ``first`` always did."""

    def __init__(self, cursor: Cursor) -> None:
        self.date_from = cursor.time_ms
        self.seen = set(cursor.ids)  # the ids read at date_from
        self.first = 0
        # dateFrom moves only once a page has shown the server keeps direction=asc (times rising in it): one
        # that ignores it answers newest first, and a dateFrom moved to the newest millisecond would never
        # reach the older events. Until then pages are stepped over with first, and the mapping refuses a
        # page whose times go down.
        self.ascending = False
        self.previous: int | None = None  # the time of the last event of the page before

    def params(self, page: int) -> dict[str, Any]:
        return {"dateFrom": str(self.date_from), "direction": "asc", "first": self.first, "max": page}

    def take(self, items: list[Any]) -> list[Any]:
        """Given a page as answered, return what was not read before (in order, malformed events included:
        the mapping names them) and move past the page."""
        date_from, seen = self.date_from, self.seen
        new: list[Any] = []
        newest: int | None = None
        at_newest: list[str] = []
        previous = self.previous
        rising, ordered = False, True
        for obj in items:
            key = _identity(obj)
            if key is not None:
                t, eid = key
                if previous is not None:
                    rising = rising or t > previous
                    ordered = ordered and t >= previous
                previous = t
                if t < date_from or (t == date_from and eid in seen):
                    continue  # before the cursor, or read already
                if newest is None or t > newest:
                    newest, at_newest = t, [eid]
                elif t == newest:
                    at_newest.append(eid)
            new.append(obj)
        self.previous = previous
        self.ascending = self.ascending or (rising and ordered)
        if self.ascending and ordered and newest is not None and newest > date_from:
            # a page wholly of its newest millisecond is stepped over at once (it would come again whole)
            self.date_from, self.seen = newest, set(at_newest)
            self.first = len(items) if len(at_newest) == len(items) else 0
        else:  # the whole page at date_from, nothing readable in it, or the order not shown yet: step over it
            if newest == date_from:
                seen.update(at_newest)
            self.first += len(items)
        return new


def _identity(obj: Any) -> tuple[int, str] | None:
    """Given a raw event, return its (time, id), or None when it is malformed (the mapping then names it)."""
    if type(obj) is not dict:
        return None
    t, eid = obj.get("time"), obj.get("id")
    if type(t) is not int or not 0 <= t <= _MAX_MS:
        return None
    if type(eid) is not str or not eid:
        try:
            eid = _event_id(obj, "")
        except KeycloakError:
            return None
    return t, eid


def _pages(kc: Keycloak, realm: str, stream: str, cursor: Cursor, page: int) -> Iterator[list[Any]]:
    """Yield the raw events from the cursor on not read before, a page at a time, fetched one after the other
    in a background thread while the caller maps the earlier ones (at most ``AHEAD`` pages waiting): Keycloak
    is never idle for the mapping."""
    path = f"{quote(realm, safe='')}/{stream}"
    where = f"realm {realm} {stream}"
    ready: queue.Queue[tuple[list[Any] | None, bool, BaseException | None]] = queue.Queue(AHEAD)
    stop = threading.Event()

    def put(entry: tuple[list[Any] | None, bool, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False  # the caller stopped reading

    def fetch_all() -> None:
        pager = _Pager(cursor)
        try:
            while not stop.is_set():
                items = need_list(kc.get(path, pager.params(page)), where)
                last = len(items) < page
                if not put((pager.take(items), last, None)) or last:
                    return
        except BaseException as exc:  # handed to the caller, raised where it reads this page
            put((None, True, exc))

    with ThreadPoolExecutor(1, thread_name_prefix="kc-events") as pool:
        pool.submit(fetch_all)
        try:
            while True:
                items, last, error = ready.get()
                if error is not None:
                    raise error
                assert items is not None
                yield items
                if last:
                    return
        finally:
            stop.set()  # a caller that stops early (an error, a closed generator) ends the fetching too


def read_stream(kc: Keycloak, realm: str, stream: str, cursor: Cursor, *, page: int, source: str, site: str,
                names: UserNames | None) -> Iterator[KcItem]:
    """Given a realm's stream and its cursor, yield the events not processed yet, oldest first.

    The caller advances the cursor (``cursor.advance``) once an item is processed, so an item read but
    not processed is read again next time. Raise KeycloakError (ApiShapeError for a malformed answer)."""
    start = Cursor(cursor.time_ms, list(cursor.ids))  # what the cursor covers is left out by _pages
    offset, last = 0, start.time_ms
    id_prefix = f"{source}:{realm}:{stream}:"
    build = events.SsoUserEvents(site, source, realm)
    for items in _pages(kc, realm, stream, start, page):
        for i, obj in enumerate(items):
            where = f"realm {realm} {stream}[{offset + i}]"
            if type(obj) is not dict:
                obj = need_map(obj, where)
            t = obj.get("time")
            if type(t) is not int or not 0 <= t <= _MAX_MS:
                t = _time_ms(obj, where)  # a subclass of int, or the named error
            eid = obj.get("id")
            if type(eid) is not str or not eid:
                eid = _event_id(obj, where)
            if t < last:  # a server that ignores direction=asc would page through a moving list
                raise KeycloakError(f"{where}: events not in ascending time order; citydc reads events with "
                                    "direction=asc (Keycloak 26 or later)")
            last = t
            if stream == "events":
                event, attempt = _user_event(obj, t, eid, where, names, build, id_prefix)
            else:
                event, t, eid = map_admin_event(obj, realm=realm, where=where, source=source, site=site, names=names)
                attempt = None
            yield KcItem(t / 1000 if t < _EXACT_MS else _key(t), realm, stream, t, eid, event, attempt)
        offset += len(items)
