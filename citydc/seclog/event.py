"""Security events as ECS 9.x documents: build them, give them deterministic ids, validate them.

An event is a plain dict shaped as Elastic Common Schema (``event.*``, ``user.name``, ...),
so it can be written to the spool and to either store without conversion. Component details
live under ``citydc.<component>`` where the component is the dataset without ``citydc.``.
The chain fields (``event.hash``, ``citydc.chain.*``) are added later by the spool.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import math
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from citydc.seclog import chain, validated

__all__ = ["ECS_VERSION", "Encoded", "EventInvalid", "EventTemplate", "encode_event", "event_id", "format_timestamp",
           "format_timestamp_ms", "make_event", "parse_timestamp", "validate_event"]

ECS_VERSION = "9.0.0"

# ECS 9.x allowed values (https://www.elastic.co/docs/reference/ecs/ecs-allowed-values-event-*).
KINDS = frozenset({"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"})
CATEGORIES = frozenset({"api", "authentication", "configuration", "database", "driver", "email", "file", "host",
                        "iam", "intrusion_detection", "library", "malware", "network", "package", "process",
                        "registry", "session", "threat", "vulnerability", "web"})
TYPES = frozenset({"access", "admin", "allowed", "change", "connection", "creation", "deletion", "denied", "end",
                   "error", "group", "indicator", "info", "installation", "protocol", "start", "user"})
OUTCOMES = frozenset({"failure", "success", "unknown"})

_DATASET = re.compile(r"^citydc\.[a-z][a-z0-9_]*$")
_ACTION = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_SITE = re.compile(r"^[a-z][a-z0-9_-]*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[0-9a-f]{32}$")
_INCARNATION = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")  # as citydc.seclog.chain.INCARNATION

# Allowed keys per object; anything else is refused so both stores map the same fields.
_TOP = frozenset({"@timestamp", "ecs", "event", "user", "source", "host", "labels", "message", "rule", "related",
                  "error", "citydc"})
_EVENT = frozenset({"id", "kind", "category", "type", "action", "outcome", "dataset", "severity", "duration",
                    "hash"})
_REQUIRED_EVENT = ("id", "kind", "category", "type", "action", "outcome", "dataset")
_ECS, _LABELS, _NAME, _IP, _ERROR = (frozenset({k}) for k in ("version", "site", "name", "ip", "message"))
_USER = frozenset({"name", "target"})
_RULE = frozenset({"id", "name", "description"})
_RELATED = frozenset({"user", "ip", "hosts"})
_COMMON = frozenset({"@timestamp", "message", "event", "labels", "ecs", "user", "source", "host"})


class EventInvalid(ValueError):
    """An event does not match the model. ``field`` is the dotted ECS path that is wrong."""

    def __init__(self, field: str, expected: str, index: int | None = None):
        self.field = field
        self.expected = expected
        self.index = index
        where = f"event #{index}: " if index is not None else ""
        super().__init__(f"{where}{field}: {expected}")


def event_id(dataset: str, id_key: str) -> str:
    """Given the dataset and the source's own identity (snapshot id, run id + task, ...), return the event id.

    The same source identity always gives the same id, so a retried emit is stored once.
    """
    return hashlib.sha256(f"{dataset}\x1f{id_key}".encode()).hexdigest()[:32]


def format_timestamp(when: datetime) -> str:
    """Given an aware datetime, return it as ECS ``@timestamp`` text in UTC with milliseconds.

    Milliseconds, because Elasticsearch's ``date`` type keeps milliseconds: both stores then sort
    and filter on exactly the same instant.
    """
    if when.tzinfo is None:
        raise EventInvalid("@timestamp", "expected a timezone-aware datetime")
    # isoformat, not strftime: a third of the time, and a four-digit year always ("0999", as ISO 8601 wants).
    return when.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


_FAST_MS = 2**32 * 1000  # below: ms / 1000 as a float is within 0.48 us of the exact time (format_timestamp_ms)
_SECONDS: dict[int, str] = {}  # epoch second -> "YYYY-MM-DDTHH:MM:SS", the few seconds a batch of events spans
_MILLIS = tuple(f".{milli:03d}Z" for milli in range(1000))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def datetime_of_ms(ms: int) -> datetime:
    """Given epoch milliseconds, return that instant exactly (``fromtimestamp(ms / 1000)`` is a millisecond early
    at some times beyond the year 2106: a float holds them to a microsecond or worse)."""
    return _EPOCH + timedelta(milliseconds=ms)


def format_timestamp_ms(ms: int) -> str:
    """Given epoch milliseconds, return ``@timestamp`` text of exactly that millisecond.

    Below 2**32 s (the year 2106), without a datetime and isoformat per event (4 us of an event's 30):
    events of one second share its text up to the seconds. Beyond, the second and the millisecond are
    put together without a float: ``ms / 1000`` there is a microsecond or more off, and a time of the
    year 9999 came out a millisecond early (a unit test compares with the exact text).
    """
    if not 0 <= ms < _FAST_MS:
        return format_timestamp(datetime_of_ms(ms))
    second = ms // 1000
    prefix = _SECONDS.get(second)
    if prefix is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        prefix = _SECONDS[second] = datetime.fromtimestamp(second, UTC).isoformat()[:19]
    return prefix + _MILLIS[ms - second * 1000]


def parse_timestamp(text: str) -> datetime:
    """Given ``@timestamp`` text, return the aware datetime. Raise EventInvalid if malformed or naive."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise EventInvalid("@timestamp", f"expected ISO-8601 date-time, got {text!r}") from None
    if value.tzinfo is None:
        raise EventInvalid("@timestamp", "expected a timezone (Z or +08:00)")
    return value


def make_event(*, action: str, dataset: str, kind: str, category: Sequence[str], type: Sequence[str],
               outcome: str, message: str, site: str, id_key: str, user: str | None = None,
               user_target: str | None = None, source_ip: str | None = None, host: str | None = None,
               rule: Mapping[str, str] | None = None, error: str | None = None, severity: int | None = None,
               duration_ns: int | None = None, related: Mapping[str, Sequence[str]] | None = None,
               details: Mapping[str, Any] | None = None, timestamp: datetime | None = None) -> dict:
    """Given the facts of one security event, return the validated ECS document.

    ``details`` go under ``citydc.<component>`` (component = dataset without ``citydc.``).
    Raise EventInvalid naming the field if anything does not match the model.
    """
    doc = _document(action=action, dataset=dataset, kind=kind, category=category, type=type, outcome=outcome,
                    message=message, site=site, id_key=id_key, user=user, user_target=user_target,
                    source_ip=source_ip, host=host, rule=rule, error=error, severity=severity,
                    duration_ns=duration_ns, related=related, details=details, timestamp=timestamp)
    validate_event(doc)
    validated.remember(doc)  # emit() then need not validate it again, unless it is changed meanwhile
    return doc


def _document(*, action: str, dataset: str, kind: str, category: Sequence[str], type: Sequence[str],
              outcome: str, message: str, site: str, id_key: str, user: str | None, user_target: str | None,
              source_ip: str | None, host: str | None, rule: Mapping[str, str] | None, error: str | None,
              severity: int | None, duration_ns: int | None, related: Mapping[str, Sequence[str]] | None,
              details: Mapping[str, Any] | None, timestamp: datetime | None) -> dict:
    """make_event's document, not validated yet (raises EventInvalid only for what it cannot even build)."""
    if not isinstance(dataset, str) or not _DATASET.match(dataset):
        raise EventInvalid("event.dataset", f"expected 'citydc.<component>' in lowercase, got {dataset!r}")
    if not isinstance(id_key, str) or not id_key:
        raise EventInvalid("event.id", "expected a non-empty id_key (the source's own identity)")
    timestamp_text = format_timestamp(timestamp or datetime.now(UTC))  # first, as before: it names a naive time
    event: dict[str, Any] = {"id": event_id(dataset, id_key), "kind": kind, "category": list(category),
                             "type": list(type), "action": action, "outcome": outcome, "dataset": dataset}
    if severity is not None:
        event["severity"] = severity
    if duration_ns is not None:
        event["duration"] = duration_ns
    return _fill(timestamp_text, event, {"site": site}, message, user,
                 user_target, source_ip, host, rule, error, related, details, dataset.removeprefix("citydc."))


def _fill(timestamp: str, event: dict, labels: dict, message: str, user: str | None, user_target: str | None,
          source_ip: str | None, host: str | None, rule: Mapping[str, str] | None, error: str | None,
          related: Mapping[str, Sequence[str]] | None, details: Mapping[str, Any] | None, component: str) -> dict:
    """Given the parts of an event, return its document: the one shape make_event and EventTemplate both build."""
    doc: dict[str, Any] = {"@timestamp": timestamp, "ecs": {"version": ECS_VERSION}, "event": event,
                           "labels": labels, "message": message}
    if user is not None or user_target is not None:
        doc["user"] = {k: v for k, v in (("name", user), ("target", {"name": user_target} if user_target else None))
                       if v is not None}
    if source_ip is not None:
        doc["source"] = {"ip": _normal_ip(source_ip, "source.ip")}
    if host is not None:
        doc["host"] = {"name": host}
    if rule is not None:
        doc["rule"] = dict(rule)
    if error is not None:
        doc["error"] = {"message": error}
    if related is not None:
        doc["related"] = {k: list(v) for k, v in related.items()}
    if details:
        doc["citydc"] = {component: dict(details)}
    return doc


class Encoded(Mapping):
    """An event validated and encoded once: ``body`` is its canonical JSON (``chain.canonical``: sorted keys, no
    whitespace, no chain fields), the very bytes the spool hashes and writes; ``id``, ``site`` and ``dataset``
    are its ``event.id``, ``labels.site`` and ``event.dataset``, so the spool reads them without decoding.

    Made only by ``encode_event`` and ``EventTemplate.make``, after validation, and immutable: what is spooled
    is what was validated, whatever happens to the dicts it was built from. A ``make_event`` dict is
    validated again in ``emit`` if its bytes changed; an Encoded cannot change. Read as a mapping (tests,
    metrics), it decodes ``body`` afresh each time: ``doc`` is a new plain dict of it.
    """

    __slots__ = ("body", "dataset", "id", "site")

    body: bytes
    id: str
    site: str
    dataset: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("an Encoded event is made by encode_event() or EventTemplate.make(), which validate it")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("an Encoded event is immutable")

    @property
    def doc(self) -> dict:
        """Return the event as a new plain dict (decoded from ``body``: exact, integers of any size included)."""
        return json.loads(self.body)

    def __getitem__(self, key: str) -> Any:
        return self.doc[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.doc)

    def __len__(self) -> int:
        return len(self.doc)

    def __repr__(self) -> str:
        return f"Encoded({self.body.decode('utf-8', 'replace')})"


_new = object.__new__
# The slots' own setters: Encoded.__setattr__ refuses every assignment, these make one.
_set_body, _set_id, _set_site, _set_dataset = (Encoded.__dict__[k].__set__ for k in ("body", "id", "site", "dataset"))


def _encoded(body: bytes, ident: str, site: str, dataset: str) -> Encoded:
    enc = _new(Encoded)
    _set_body(enc, body)
    _set_id(enc, ident)
    _set_site(enc, site)
    _set_dataset(enc, dataset)
    return enc


def encode_event(**facts: Any) -> Encoded:
    """Given the facts of one security event (as ``make_event``'s arguments), return it validated and encoded once.

    Raise EventInvalid naming the field if anything does not match the model."""
    doc = _document(**{**_NO_FACTS, **facts})
    validate_event(doc)
    return _encoded(chain.canonical(doc), doc["event"]["id"], doc["labels"]["site"], doc["event"]["dataset"])


_NO_FACTS: dict[str, Any] = dict.fromkeys(("user", "user_target", "source_ip", "host", "rule", "error", "severity",
                                           "duration_ns", "related", "details", "timestamp"))
_SORTED = orjson.OPT_SORT_KEYS


class EventTemplate:
    """One kind of event of one producer: the facts all its events share (action, dataset, kind, category, type,
    outcome, site, and optionally severity, host, rule), validated once; ``make`` adds one event's own facts,
    checks only those, and encodes the event once.

    ``make(...)`` returns exactly ``encode_event(**shared, ...)``: the same document, event id and bytes, and an
    invalid event is refused with the same EventInvalid naming the same field. Its own facts get a quick check
    that never accepts what ``validate_event`` refuses; whatever it is unsure of, ``validate_event`` decides on
    the whole document. Shared facts that are invalid themselves are not refused when the template is made:
    each ``make`` then goes the whole way (``encode_event``) and is refused as make_event would refuse it. A
    unit test compares both on many variants.
    """

    __slots__ = ("_component", "_event", "_host", "_id_prefix", "_labels", "_rule", "_shared", "dataset", "site")

    def __init__(self, *, action: str, dataset: str, kind: str, category: Sequence[str], type: Sequence[str],
                 outcome: str, site: str, severity: int | None = None, host: str | None = None,
                 rule: Mapping[str, str] | None = None) -> None:
        self.dataset, self.site = dataset, site
        self._shared: dict[str, Any] | None = {
            "action": action, "dataset": dataset, "kind": kind, "category": list(category), "type": list(type),
            "outcome": outcome, "site": site, "severity": severity, "host": host, "rule": rule}
        try:  # a whole event with these shared facts and plain own facts
            probe = _document(**{**_NO_FACTS, **self._shared, "message": "-", "id_key": "-",
                                 "timestamp": datetime(2000, 1, 1, tzinfo=UTC)})
            validate_event(probe)
        except EventInvalid:
            return  # each make() goes the whole way, and is refused naming the field, as make_event would
        self._shared = None
        self._event = {k: v for k, v in probe["event"].items() if k != "id"}  # kind, category, type, action, ...
        self._labels = probe["labels"]
        self._host, self._rule = host, probe.get("rule")
        self._component = dataset.removeprefix("citydc.")
        self._id_prefix = f"{dataset}\x1f".encode()

    def make(self, *, message: str, id_key: str, timestamp: datetime | None = None, timestamp_ms: int | None = None,
             user: str | None = None, user_target: str | None = None, source_ip: str | None = None,
             error: str | None = None, duration_ns: int | None = None,
             related: Mapping[str, Sequence[str]] | None = None, details: Mapping[str, Any] | None = None) -> Encoded:
        """Given one event's own facts (its time as a datetime, or as epoch ms in ``timestamp_ms``), return it
        validated and encoded. Raise EventInvalid naming the field if anything does not match the model."""
        if self._shared is not None:
            if timestamp_ms is not None:
                timestamp = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
            return encode_event(**self._shared, message=message, id_key=id_key,
                                timestamp=timestamp, user=user, user_target=user_target, source_ip=source_ip,
                                error=error, duration_ns=duration_ns, related=related, details=details)
        if not isinstance(id_key, str) or not id_key:
            raise EventInvalid("event.id", "expected a non-empty id_key (the source's own identity)")
        when = (format_timestamp_ms(timestamp_ms) if timestamp_ms is not None
                else format_timestamp(timestamp or datetime.now(UTC)))
        ident = hashlib.sha256(self._id_prefix + id_key.encode()).hexdigest()[:32]  # event_id(), byte for byte
        event = self._event.copy()
        event["id"] = ident
        # The document _fill builds, written out here (this runs for every event): it is only encoded, never
        # handed out, so the shared parts are the template's own objects.
        doc = {"@timestamp": when, "ecs": _ECS_OBJECT, "event": event, "labels": self._labels, "message": message}
        plain = type(message) is str and message != ""
        if user_target:
            doc["user"] = {"target": {"name": user_target}} if user is None else \
                {"name": user, "target": {"name": user_target}}
            plain = plain and type(user_target) is str and (user is None or (type(user) is str and user != ""))
        elif user is not None:
            doc["user"] = {"name": user}
            plain = plain and type(user) is str and user != ""
        elif user_target is not None:
            doc["user"] = {}
        if source_ip is not None:
            doc["source"] = {"ip": _normal_ip(source_ip, "source.ip")}
        if self._host is not None:
            doc["host"] = {"name": self._host}
        if self._rule is not None:
            doc["rule"] = self._rule
        if error is not None:
            doc["error"] = {"message": error}
            plain = plain and type(error) is str and error != ""
        if duration_ns is not None:
            event["duration"] = duration_ns
            plain = plain and type(duration_ns) is int and duration_ns >= 0
        if related is not None:
            doc["related"] = rel = {k: list(v) for k, v in related.items()}
            plain = plain and _related_plain(rel)
        if details:
            if type(details) is not dict:
                details = dict(details)
            doc["citydc"] = {self._component: details}
            plain = plain and _flat_plain(details)
        if plain:
            # The shared facts were validated, the rest was just checked, and nothing is a float: what
            # chain.canonical gives, without looking for floats again (it falls back for a huge integer).
            try:
                body = orjson.dumps(doc, option=_SORTED)
            except (orjson.JSONEncodeError, TypeError):  # a huge integer, a key that is not a string
                validate_event(doc)
                body = chain.canonical(doc)
        else:
            validate_event(doc)  # the whole check decides, and names the field if it refuses
            body = chain.canonical(doc)
        return _encoded(body, ident, self.site, self.dataset)


_ECS_OBJECT = {"version": ECS_VERSION}


_FLAT = frozenset({str, int, bool, type(None)})


def _flat_plain(details: dict) -> bool:
    """Given component details, return True if their values are flat (str, int, bool or null: plain JSON without a
    float, so orjson's bytes are the canonical ones). A key that is not a string makes orjson refuse the event,
    which then goes to validate_event, and is refused naming it."""
    return _FLAT.issuperset(map(type, details.values()))


def _related_plain(related: dict) -> bool:
    """Given ``related``, return True if it certainly matches the model (the related part of _plainly_valid_rest)."""
    if not _RELATED.issuperset(related):
        return False
    for key, values in related.items():
        if not all(type(v) is str for v in values):
            return False
        if key == "ip":
            try:
                if not all(_canonical_ip(v) == v for v in values):
                    return False
            except ValueError:  # not an address: validate_event names it
                return False
    return True


def _normal_ip(value: Any, field: str) -> str:
    try:
        return _canonical_ip(value)
    except (ValueError, TypeError):
        raise EventInvalid(field, f"expected an IPv4 or IPv6 address, got {value!r}") from None


@functools.lru_cache(maxsize=4096)
def _canonical_ip(value: str) -> str:
    # Addresses repeat a lot within a batch (a brute force comes from few sources); parsing is costly, so the
    # answers are remembered (a bad address raises ValueError every time: exceptions are not cached).
    return str(ipaddress.ip_address(value))


def _str(doc: dict, key: str, field: str, pattern: re.Pattern | None = None, what: str = "") -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise EventInvalid(field, f"expected a non-empty string{what}, got {value!r}")
    if pattern is not None and not pattern.match(value):
        raise EventInvalid(field, f"expected {what.strip(' ,') or pattern.pattern}, got {value!r}")
    return value


def _obj(doc: dict, key: str, field: str, allowed: frozenset[str]) -> dict | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):  # plain dicts only: what JSON gives, and much cheaper than an ABC check
        raise EventInvalid(field, f"expected an object, got {type(value).__name__}")
    for sub in value:
        if sub not in allowed:
            raise EventInvalid(f"{field}.{sub}", f"unknown field (expected one of {', '.join(sorted(allowed))})")
    return value


def _str_list(value: Any, field: str, allowed: frozenset[str] | None = None, empty_ok: bool = True) -> None:
    if not isinstance(value, list) or (not empty_ok and not value):
        raise EventInvalid(field, f"expected a {'non-empty ' if not empty_ok else ''}list of strings, got {value!r}")
    for item in value:
        if not isinstance(item, str) or (allowed is not None and item not in allowed):
            expected = f"one of {', '.join(sorted(allowed))}" if allowed else "a string"
            raise EventInvalid(field, f"expected {expected}, got {item!r}")


def _int(value: Any, field: str, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise EventInvalid(field, f"expected an integer >= {minimum}, got {value!r}")


def _json_value(value: Any, field: str, depth: int = 0) -> None:
    """Refuse anything that is not plain JSON (a SecretRef, bytes, a datetime, NaN...)."""
    if depth > 16:
        raise EventInvalid(field, "expected at most 16 levels of nesting")
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EventInvalid(field, "expected a finite number")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise EventInvalid(field, f"expected string keys, got {k!r}")
            _json_value(v, f"{field}.{k}", depth + 1)
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _json_value(v, f"{field}[{i}]", depth + 1)
        return
    if type(value).__name__ == "SecretRef":
        raise EventInvalid(field, "a secret reference never goes into an event; record its name, not the secret")
    raise EventInvalid(field, f"expected a JSON value (string, number, bool, null, list, object), "
                              f"got {type(value).__name__}")


def validate_event(doc: Any, *, chained: bool = False) -> None:
    """Given an event document, return None if it matches the model. Raise EventInvalid naming the field.

    With ``chained``, the chain fields (``event.hash``, ``citydc.chain``) are required too.
    """
    if type(doc) is Encoded:
        doc = doc.doc  # made valid; checked again as any other event
    # Every emitted event is validated, so the common case gets a straight-line check; anything it
    # is unsure about goes through the full walk below, which also names the wrong field.
    try:
        if _plainly_valid(doc, chained):
            return
    except (ValueError, TypeError, AttributeError, KeyError):  # EventInvalid is a ValueError
        pass
    _validate_fully(doc, chained)


def _keys_within(value: Any, allowed: frozenset[str]) -> bool:
    return type(value) is dict and allowed.issuperset(value)


def _text(value: Any) -> bool:
    return type(value) is str and value != ""


def _plain_json(value: Any, depth: int = 0) -> bool:
    """Given component details, return True if they are certainly plain JSON (the fast twin of _json_value)."""
    if depth > 16:
        return False
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        return all(type(k) is str and _plain_json(v, depth + 1) for k, v in value.items())
    if kind is list:
        return all(_plain_json(v, depth + 1) for v in value)
    return False


_REQUIRED = operator.itemgetter(*_REQUIRED_EVENT)


def _plainly_valid(doc: Any, chained: bool) -> bool:
    """Given an event, return True if it certainly matches the model, False if the full walk must decide.

    Stricter than the model (exact types only), never laxer: a test compares both on many variants.
    Written out flat, with set operations instead of loops, because every emitted event comes here.
    """
    if type(doc) is not dict or not _TOP.issuperset(doc):
        return False
    timestamp, message, event, labels = doc.get("@timestamp"), doc.get("message"), doc.get("event"), doc.get("labels")
    if not (type(timestamp) is str and type(message) is str and message and type(event) is dict
            and _EVENT.issuperset(event) and type(labels) is dict and _LABELS.issuperset(labels)):
        return False
    parse_timestamp(timestamp)
    ident, kind, category, types, action, outcome, dataset = _REQUIRED(event)  # KeyError: the full walk names it
    site = labels.get("site")
    # issuperset: a list element that is not a string (or unhashable) is not in the set (or raises TypeError).
    if not (type(ident) is str and _ID.match(ident) and type(kind) is str and kind in KINDS
            and type(category) is list and CATEGORIES.issuperset(category)
            and type(types) is list and types and TYPES.issuperset(types)
            and type(action) is str and _ACTION.match(action) and type(outcome) is str and outcome in OUTCOMES
            and type(dataset) is str and _DATASET.match(dataset) and type(site) is str and _SITE.match(site)):
        return False
    if ("severity" in event and not (type(event["severity"]) is int and event["severity"] >= 0)) or (
            "duration" in event and not (type(event["duration"]) is int and event["duration"] >= 0)):
        return False
    ecs, user, source, host = doc.get("ecs"), doc.get("user"), doc.get("source"), doc.get("host")
    if ecs is not None and not (_keys_within(ecs, _ECS) and _text(ecs.get("version"))):
        return False
    if user is not None:
        if not _keys_within(user, _USER) or ("name" in user and not _text(user["name"])):
            return False
        target = user.get("target")
        if target is not None and not (_keys_within(target, _NAME) and _text(target.get("name"))):
            return False
    if source is not None and not (_keys_within(source, _IP) and _text(source.get("ip"))
                                   and _canonical_ip(source["ip"]) == source["ip"]):
        return False
    if host is not None and not (_keys_within(host, _NAME) and _text(host.get("name"))):
        return False
    if not _COMMON.issuperset(doc) and not _plainly_valid_rest(doc):  # rule, error, related, citydc are rarer
        return False
    citydc = doc.get("citydc")
    chain = citydc.get("chain") if type(citydc) is dict else None
    if chained or chain is not None or "hash" in event:
        _validate_chain(event, chain)
    return True


def _plainly_valid_rest(doc: dict) -> bool:
    rule, error, related, citydc = doc.get("rule"), doc.get("error"), doc.get("related"), doc.get("citydc")
    if rule is not None and not (_keys_within(rule, _RULE) and all(_text(v) for v in rule.values())):
        return False
    if error is not None and not (_keys_within(error, _ERROR) and _text(error.get("message"))):
        return False
    if related is not None:
        if not _keys_within(related, _RELATED):
            return False
        for key, values in related.items():
            if type(values) is not list or not all(type(v) is str for v in values):
                return False
            if key == "ip":
                for ip in values:
                    _canonical_ip(ip)  # raises ValueError on a bad address: then the full walk names it
    if citydc is not None:
        component = doc["event"]["dataset"][7:]  # without "citydc."
        if type(citydc) is not dict or not all(k == component or k == "chain" for k in citydc):
            return False
        if component in citydc and not (type(citydc[component]) is dict and _plain_json(citydc[component])):
            return False
    return True


def _validate_fully(doc: Any, chained: bool) -> None:
    if not isinstance(doc, dict):
        raise EventInvalid("<event>", f"expected an object, got {type(doc).__name__}")
    for key in doc:
        if key not in _TOP:
            raise EventInvalid(str(key), f"unknown field (expected one of {', '.join(sorted(_TOP))})")
    parse_timestamp(_str(doc, "@timestamp", "@timestamp"))
    _str(doc, "message", "message")
    event = _obj(doc, "event", "event", _EVENT)
    if event is None:
        raise EventInvalid("event", "expected an object with id, kind, category, type, action, outcome, dataset")
    for key in _REQUIRED_EVENT:
        if key not in event:
            raise EventInvalid(f"event.{key}", "required field is missing")
    _str(event, "id", "event.id", _ID, " (32 lowercase hex digits from event_id())")
    if not isinstance(event["kind"], str) or event["kind"] not in KINDS:
        raise EventInvalid("event.kind", f"expected one of {', '.join(sorted(KINDS))}, got {event['kind']!r}")
    _str_list(event["category"], "event.category", CATEGORIES)
    _str_list(event["type"], "event.type", TYPES, empty_ok=False)
    _str(event, "action", "event.action", _ACTION, " (lowercase words joined by '-')")
    if not isinstance(event["outcome"], str) or event["outcome"] not in OUTCOMES:
        raise EventInvalid("event.outcome", f"expected one of failure, success, unknown, got {event['outcome']!r}")
    dataset = _str(event, "dataset", "event.dataset", _DATASET, " ('citydc.<component>')")
    if "severity" in event:
        _int(event["severity"], "event.severity")
    if "duration" in event:
        _int(event["duration"], "event.duration")
    ecs = _obj(doc, "ecs", "ecs", frozenset({"version"}))
    if ecs is not None:
        _str(ecs, "version", "ecs.version")
    labels = _obj(doc, "labels", "labels", frozenset({"site"}))
    if labels is None:
        raise EventInvalid("labels.site", "required field is missing")
    _str(labels, "site", "labels.site", _SITE, " (a site id such as siwei or fengshan)")
    user = _obj(doc, "user", "user", frozenset({"name", "target"}))
    if user is not None:
        if "name" in user:
            _str(user, "name", "user.name")
        target = _obj(user, "target", "user.target", frozenset({"name"}))
        if target is not None:
            _str(target, "name", "user.target.name")
    source = _obj(doc, "source", "source", frozenset({"ip"}))
    if source is not None:
        ip = _str(source, "ip", "source.ip")
        if _normal_ip(ip, "source.ip") != ip:
            raise EventInvalid("source.ip", f"expected the canonical form {_normal_ip(ip, 'source.ip')!r}, got {ip!r}")
    host = _obj(doc, "host", "host", frozenset({"name"}))
    if host is not None:
        _str(host, "name", "host.name")
    rule = _obj(doc, "rule", "rule", frozenset({"id", "name", "description"}))
    if rule is not None:
        for key in rule:
            _str(rule, key, f"rule.{key}")
    error = _obj(doc, "error", "error", frozenset({"message"}))
    if error is not None:
        _str(error, "message", "error.message")
    related = _obj(doc, "related", "related", frozenset({"user", "ip", "hosts"}))
    if related is not None:
        for key, value in related.items():
            _str_list(value, f"related.{key}")
            if key == "ip":
                for i, ip in enumerate(value):
                    _normal_ip(ip, f"related.ip[{i}]")
    component = dataset.removeprefix("citydc.")
    citydc = _obj(doc, "citydc", "citydc", frozenset({component, "chain"}))
    if citydc is not None and component in citydc:
        if not isinstance(citydc[component], dict):
            raise EventInvalid(f"citydc.{component}", "expected an object of component details")
        _json_value(citydc[component], f"citydc.{component}")
    chain = citydc.get("chain") if citydc is not None else None
    if chained or chain is not None or "hash" in event:
        _validate_chain(event, chain)


def _validate_chain(event: dict, chain: Any) -> None:
    if not isinstance(chain, dict):
        raise EventInvalid("citydc.chain", "expected an object with writer, seq, prev")
    for key in chain:
        if key not in ("writer", "incarnation", "seq", "prev"):
            raise EventInvalid(f"citydc.chain.{key}", "unknown field (expected writer, incarnation, seq, prev)")
    _str(chain, "writer", "citydc.chain.writer")
    if "incarnation" in chain:
        _str(chain, "incarnation", "citydc.chain.incarnation", _INCARNATION, " (YYYYMMDDTHHMMSSZ-8 hex digits)")
    if "seq" not in chain:
        raise EventInvalid("citydc.chain.seq", "required field is missing")
    _int(chain["seq"], "citydc.chain.seq", 1)
    _str(chain, "prev", "citydc.chain.prev", _HEX64, " (64 lowercase hex digits)")
    _str(event, "hash", "event.hash", _HEX64, " (64 lowercase hex digits)")
