"""validate_event's straight-line check never accepts what the full walk refuses, and errors still name the field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from citydc.seclog.chain import GENESIS, link
from citydc.seclog.event import EventInvalid, _validate_fully, make_event, validate_event

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FULL = make_event(action="backup-run", dataset="citydc.backup", kind="alert", category=["process", "iam"],
                  type=["end"], outcome="failure", message="m", site="fengshan", id_key="k", user="ops",
                  user_target="bob", source_ip="10.0.0.1", host="h", rule={"id": "r", "name": "n"}, error="e",
                  severity=2, duration_ns=5, related={"user": ["ops"], "ip": ["::1"], "hosts": ["h"]},
                  details={"job": "j", "n": [1, 2.5, {"x": None}]}, timestamp=T0)
MINIMAL = make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=[], type=["start"],
                     outcome="success", message="m", site="siwei", id_key="k2", timestamp=T0)
BASES = [FULL, MINIMAL, link(FULL, "w:s", 1, GENESIS)]

PATHS = [("@timestamp",), ("message",), ("event",), ("event", "id"), ("event", "kind"), ("event", "category"),
         ("event", "type"), ("event", "action"), ("event", "outcome"), ("event", "dataset"), ("event", "severity"),
         ("event", "duration"), ("event", "hash"), ("ecs",), ("ecs", "version"), ("labels",), ("labels", "site"),
         ("user",), ("user", "name"), ("user", "target"), ("user", "target", "name"), ("source",), ("source", "ip"),
         ("host",), ("host", "name"), ("rule",), ("rule", "id"), ("error",), ("error", "message"), ("related",),
         ("related", "ip"), ("related", "user"), ("citydc",), ("citydc", "backup"), ("citydc", "backup", "n"),
         ("citydc", "chain"), ("citydc", "chain", "seq"), ("citydc", "chain", "prev"), ("citydc", "sso_audit"),
         ("unknown",), ("event", "unknown"), ("labels", "zone")]


class Text(str):
    pass


def deep(n: int) -> object:
    value: object = 1
    for _ in range(n):
        value = [value]
    return value


VALUE_LIST = [
    "<delete>", None, "", "x", "siwei", "Siwei", "2026-03-01T00:00:00Z", "2026-03-01T00:00:00", "not-a-time",
    0, -1, 3, True, 1.5, float("nan"), float("inf"), [], ["start"], ["process"], ["bogus"], [1], [["start"]],
    ("start",), {}, {"name": "a"}, {"name": ""}, {"x": 1}, {"site": "siwei"}, {"version": "9"}, "10.0.0.1",
    "010.0.0.1", "::1", "0:0::1", ["10.0.0.1"], ["nope"], "a" * 32, "A" * 32, "0" * 64, "citydc.backup",
    "citydc.Backup", "backup-run", "Backup Run", "event", "alert", "failure", Text("x"), Text("success"),
    {"writer": "w", "seq": 1, "prev": "0" * 64}, {"writer": "w", "seq": 0, "prev": "0" * 64},
    {"a": deep(15)}, {"a": deep(16)}, {"a": deep(17)}, {"a": b"bytes"}, {1: "int key"}, {"a": object()}, 2**70,
]
VALUES = st.sampled_from(VALUE_LIST)


def outcome(fn, doc):
    try:
        fn(doc)
    except EventInvalid as exc:
        return ("invalid", str(exc))
    except Exception as exc:  # comparing both validators, whatever they raise
        return ("error", type(exc).__name__)
    return ("ok", "")


def mutate(doc: dict, path: tuple[str, ...], value: object) -> dict:
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        if not isinstance(target, dict) or not isinstance(target.get(key), dict):
            return doc
        target = target[key]
    if value == "<delete>":
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return doc


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(BASES), st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=3),
       st.booleans())
def test_fast_path_agrees_with_the_full_walk(base, mutations, chained):
    doc = base
    for path, value in mutations:
        doc = mutate(doc, path, value)
    validate = lambda d: validate_event(d, chained=chained)  # noqa: E731
    full = lambda d: _validate_fully(d, chained)  # noqa: E731
    assert outcome(validate, doc) == outcome(full, doc)


def test_every_single_mutation_gets_the_same_verdict():
    for base in BASES:
        for path in PATHS:
            for value in VALUE_LIST:
                doc = mutate(base, path, value)
                for chained in (False, True):
                    validate = lambda d, c=chained: validate_event(d, chained=c)  # noqa: E731
                    full = lambda d, c=chained: _validate_fully(d, c)  # noqa: E731
                    assert outcome(validate, doc) == outcome(full, doc), (path, value, chained)


def test_the_bases_are_valid_so_the_mutations_test_something():
    for base in BASES:
        validate_event(base)
    validate_event(BASES[2], chained=True)
