"""Events validated and encoded once (Encoded, EventTemplate): the same bytes, ids and refusals as make_event,
and the spool writes exactly the bytes that were validated, without validating or encoding them again."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citydc.seclog import spool as spool_module
from citydc.seclog.chain import GENESIS, Sealer, canonical, verify
from citydc.seclog.emit import emit
from citydc.seclog.event import (
    Encoded,
    EventInvalid,
    EventTemplate,
    encode_event,
    format_timestamp,
    format_timestamp_ms,
    make_event,
    validate_event,
)
from citydc.seclog.metrics import SeclogMetrics
from citydc.seclog.spool import Spool

T0 = datetime(2026, 3, 1, 8, 30, 15, 250_000, tzinfo=UTC)
SHARED = {"action": "sso-login", "dataset": "citydc.sso_auth", "kind": "event", "category": ["authentication"],
          "type": ["start"], "outcome": "failure", "site": "siwei"}


def outcome(fn):
    """Given a thunk making an event, return ("ok", its canonical bytes, its id) or ("invalid", field, message)."""
    try:
        made = fn()
    except EventInvalid as exc:
        return ("invalid", exc.field, str(exc))
    if isinstance(made, Encoded):
        return ("ok", made.body, made.id)
    return ("ok", canonical(made), made["event"]["id"])


def test_a_template_event_is_byte_for_byte_make_events_and_is_spooled_as_validated(tmp_path, monkeypatch):
    facts = {"message": "SSO login failure for alice", "id_key": "kc:city:events:1", "timestamp": T0,
             "user": "alice", "source_ip": "10.0.0.7", "error": "invalid_user_credentials",
             "details": {"realm": "city", "client": None, "n": 3, "ok": False}}
    made = make_event(**SHARED, **facts)
    encoded = EventTemplate(**SHARED).make(**facts)
    assert encoded.body == canonical(made) and encoded.id == made["event"]["id"]
    assert (encoded.site, encoded.dataset) == ("siwei", "citydc.sso_auth")
    assert encode_event(**SHARED, **facts).body == encoded.body
    validated = []
    real = spool_module.validate_event
    monkeypatch.setattr(spool_module, "validate_event", lambda doc, **kw: validated.append(doc) or real(doc, **kw))
    monkeypatch.setattr(spool_module.secrets, "token_hex", lambda n: "0badcafe")
    written = []
    for event in (encoded, made):  # the same spool directory and incarnation: the lines compare byte for byte
        spool = Spool(tmp_path / "spool", writer="w:s", clock=lambda: 1_772_000_000.0)
        assert len(spool.append([event])) == 1
        written.append((tmp_path / "spool" / "seg-0000000001.jsonl").read_bytes())
        shutil.rmtree(tmp_path / "spool")
    assert validated == []  # neither was validated again: make_event's bytes were remembered, Encoded's are its own
    assert written[0] == written[1]
    spooled = json.loads(written[0].splitlines()[1])  # after the spool-created event
    assert canonical(spooled) == encoded.body  # the line is the validated bytes with the chain fields spliced in
    assert verify([json.loads(x) for x in written[0].splitlines()]) == []


def test_negative_control_a_changed_copy_is_validated_and_refused_the_encoded_event_is_not_changed(tmp_path):
    encoded = EventTemplate(**SHARED).make(message="m", id_key="k", timestamp=T0, user="alice")
    changed = encoded.doc  # a new dict: changing it changes a copy, never what was validated
    changed["event"]["outcome"] = "ok"
    assert encoded["event"]["outcome"] == "failure"
    with pytest.raises(EventInvalid, match=r"event #0: event\.outcome"):
        Spool(tmp_path, writer="w:s").append([changed, encoded])
    assert Spool(tmp_path).segments() == []  # nothing of that batch was written
    assert Spool(tmp_path, writer="w:s").append([encoded]) == [encoded]
    line = (tmp_path / "seg-0000000001.jsonl").read_bytes().splitlines()[-1]
    assert canonical(json.loads(line)) == encoded.body and b'"outcome":"failure"' in line


def test_an_encoded_event_is_made_only_validated_and_cannot_be_changed():
    encoded = encode_event(**SHARED, message="m", id_key="k", timestamp=T0)
    with pytest.raises(TypeError, match="validate"):
        Encoded(b"{}", "0" * 32, "siwei", "citydc.x")
    with pytest.raises(AttributeError, match="immutable"):
        encoded.body = b'{"forged":1}'
    with pytest.raises(TypeError):
        encoded["message"] = "x"  # a read-only mapping


def test_an_encoded_event_reads_as_its_document():
    facts = {"message": "m", "id_key": "k", "timestamp": T0, "details": {"big": 2**70, "f": 0.5}}
    encoded = encode_event(**SHARED, **facts)
    made = make_event(**SHARED, **facts)
    assert dict(encoded) == made and encoded == made and encoded.doc == made
    assert encoded["event"]["id"] == encoded.id and encoded["citydc"]["sso_auth"]["big"] == 2**70
    validate_event(encoded)
    assert "Encoded(" in repr(encoded)


@pytest.mark.parametrize(("shared", "facts", "field"), [
    ({}, {"message": ""}, "message"),
    ({}, {"user": ""}, "user.name"),
    ({}, {"user_target": 5}, "user.target.name"),
    ({}, {"source_ip": "10.0.0.300"}, "source.ip"),
    ({}, {"error": ""}, "error.message"),
    ({}, {"duration_ns": -1}, "event.duration"),
    ({}, {"related": {"ip": ["nope"]}}, "related.ip[0]"),
    ({}, {"related": {"bogus": ["x"]}}, "related.bogus"),
    ({}, {"details": {"secret": object()}}, "citydc.sso_auth.secret"),
    ({}, {"details": {"n": float("nan")}}, "citydc.sso_auth.n"),
    ({}, {"id_key": ""}, "event.id"),
    ({"site": "Siwei!"}, {}, "labels.site"),
    ({"outcome": "ok"}, {}, "event.outcome"),
    ({"outcome": "ok"}, {"message": ""}, "message"),  # two wrong: the same one named as make_event names
    ({"action": "Login"}, {}, "event.action"),
    ({"severity": -2}, {}, "event.severity"),
])
def test_an_invalid_event_is_refused_naming_the_field_as_make_event_does(shared, facts, field):
    all_facts = {"message": "m", "id_key": "k", "timestamp": T0, **facts}
    expected = outcome(lambda: make_event(**{**SHARED, **shared}, **all_facts))
    assert expected[:2] == ("invalid", field)
    assert outcome(lambda: EventTemplate(**{**SHARED, **shared}).make(**all_facts)) == expected
    assert outcome(lambda: encode_event(**{**SHARED, **shared}, **all_facts)) == expected


class Text(str):
    pass


TEXTS = st.one_of(st.sampled_from(["", "x", "alice", "四維 \"q\" \\", Text("sub"), "10.0.0.1", "::FFFF:10.0.0.1"]),
                  st.none(), st.integers(-1, 2**70), st.booleans(), st.text(max_size=8))
VALUES = st.one_of(TEXTS, st.floats(allow_nan=True), st.lists(st.integers(), max_size=2),
                   st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.floats()), max_size=2))


@settings(max_examples=1000, deadline=None)
@given(shared=st.fixed_dictionaries({}, optional={"outcome": st.sampled_from(["success", "ok"]),
                                                  "site": st.sampled_from(["fengshan", "Siwei"]),
                                                  "severity": st.sampled_from([None, 0, 73, -1]),
                                                  "host": st.sampled_from([None, "h", ""]),
                                                  "rule": st.sampled_from([None, {"id": "r"}, {"id": ""}])}),
       facts=st.fixed_dictionaries({"message": st.one_of(st.just("m"), st.text(min_size=1, max_size=8), TEXTS),
                                    "id_key": st.one_of(st.just("k"), st.just("k2"), st.text(min_size=1, max_size=8),
                                                        TEXTS)},
                                   optional={
           "user": TEXTS, "user_target": TEXTS, "source_ip": TEXTS, "error": TEXTS,
           "duration_ns": st.one_of(st.none(), st.integers(-1, 2**70), st.booleans()),
           "related": st.one_of(st.none(), st.dictionaries(st.sampled_from(["user", "ip", "hosts", "x"]),
                                                           st.lists(TEXTS, max_size=2), max_size=2)),
           "details": st.one_of(st.none(), st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), VALUES,
                                                           max_size=3))}),
       when=st.one_of(st.none(), st.integers(0, 2**33 * 1000)))
def test_a_template_agrees_with_make_event_on_every_variant(shared, facts, when):
    time = {"timestamp_ms": when} if when is not None else {"timestamp": T0}
    reference_time = exact(when) if when is not None else T0
    expected = outcome(lambda: make_event(**{**SHARED, **shared}, **facts, timestamp=reference_time))
    assert outcome(lambda: EventTemplate(**{**SHARED, **shared}).make(**facts, **time)) == expected


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.integers(0, 2**32 * 1000 - 1), st.integers(2**32 * 1000 - 5000, 253_402_300_799_999),
                 st.integers(0, 2**32 - 1).map(lambda s: s * 1000 + 999),
                 st.integers(0, 2**32 - 1).map(lambda s: s * 1000)))
def test_timestamps_from_milliseconds_are_those_of_the_datetime(ms):
    assert format_timestamp_ms(ms) == format_timestamp(exact(ms))


def exact(ms: int) -> datetime:
    """The instant itself, without a float (``fromtimestamp(ms / 1000)`` is a millisecond early at times
    beyond the year 2106)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def test_timestamps_from_milliseconds_at_the_edges():
    for ms in (0, 1, 999, 1000, 1_796_533_617_251, 2**32 * 1000 - 1, 2**32 * 1000, 253_402_300_799_999):
        assert format_timestamp_ms(ms) == format_timestamp(exact(ms)), ms
    assert format_timestamp_ms(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"


def test_the_sealer_gives_an_encoded_event_the_line_it_gives_the_dict():
    template = EventTemplate(**SHARED)
    events = [template.make(message=f"m{i}", id_key=f"k{i}", timestamp=T0, user="u" if i % 2 else None,
                            details={"i": i} if i % 3 else None) for i in range(20)]
    by_body, by_dict = Sealer("w:s", 4, GENESIS, "20260301T000000Z-0badcafe"), Sealer("w:s", 4, GENESIS,
                                                                                     "20260301T000000Z-0badcafe")
    for e in events:
        assert by_body.seal_body(e.body) == by_dict.seal(e.doc)[1]
    assert (by_body.seq, by_body.prev) == (by_dict.seq, by_dict.prev)


def test_emit_takes_one_encoded_event_or_a_mixed_batch_and_counts_them(tmp_path):
    from prometheus_client import CollectorRegistry

    metrics = SeclogMetrics(CollectorRegistry())
    template = EventTemplate(**SHARED)
    one = template.make(message="m", id_key="one", timestamp=T0)
    assert emit(one, spool_dir=tmp_path, metrics=metrics) == 1
    made = make_event(**SHARED, message="m", id_key="made", timestamp=T0)
    assert emit([template.make(message="m", id_key="two", timestamp=T0), made, one], spool_dir=tmp_path,
                metrics=metrics) == 2  # `one` was spooled already
    assert metrics.emitted.labels("siwei", "citydc.sso_auth")._value.get() == 3
    assert metrics.duplicates.labels("siwei", "citydc.sso_auth")._value.get() == 1
    lines = [json.loads(x) for x in b"".join(
        (tmp_path / s).read_bytes() for s in Spool(tmp_path).segments()).splitlines()]
    assert [d["event"]["action"] for d in lines] == ["spool-created", "sso-login", "sso-login", "sso-login"]
    assert verify(lines) == []


@pytest.mark.parametrize("details", [{"f": 1e-05}, {"big": 2**70}, {"nested": {"a": [1, None]}}, {"t": True, "n": None},
                                     {"u": "四維 \u2028"}])
def test_details_that_orjson_writes_otherwise_give_make_events_bytes(details):
    # Floats and integers beyond 64 bits are where orjson and the canonical encoder part (chain._sorted_json).
    facts = {"message": "m", "id_key": "k", "timestamp": T0, "details": details}
    assert EventTemplate(**SHARED).make(**facts).body == canonical(make_event(**SHARED, **facts))
