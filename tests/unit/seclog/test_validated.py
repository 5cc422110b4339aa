"""emit() skips validating an event whose exact bytes make_event validated, and validates anything else."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime

import pytest

from citydc.seclog import spool as spool_module
from citydc.seclog import validated
from citydc.seclog.event import EventInvalid, make_event
from citydc.seclog.spool import Spool


def ev(i: int) -> dict:
    return make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                      type=["start"], outcome="success", message=f"login {i}", site="siwei", id_key=str(i),
                      user="alice", details={"attempt": i}, timestamp=datetime(2026, 3, 1, tzinfo=UTC))


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = spool_module.validate_event
    monkeypatch.setattr(spool_module, "validate_event", lambda doc, **kw: calls.append(doc) or real(doc, **kw))
    return calls


def test_an_event_from_make_event_is_not_validated_again(tmp_path, counted):
    events = [ev(1), ev(2)]
    assert len(Spool(tmp_path, writer="w:s").append(events)) == 2
    assert counted == []


@pytest.mark.parametrize(("field", "change"), [
    ("event.outcome", lambda d: d["event"].__setitem__("outcome", "ok")),
    ("labels.site", lambda d: d["labels"].__setitem__("site", "Siwei!")),
    ("user.name", lambda d: d["user"].__setitem__("name", "")),
    ("bogus", lambda d: d.__setitem__("bogus", 1)),
    ("citydc.sso_audit.secret", lambda d: d["citydc"]["sso_audit"].__setitem__("secret", object())),
])
def test_an_event_changed_after_make_event_is_validated_and_refused_naming_the_field(tmp_path, counted, field, change):
    good, bad = ev(1), ev(2)
    change(bad)
    with pytest.raises(EventInvalid, match=f"event #1: {field}"):
        Spool(tmp_path, writer="w:s").append([good, bad])
    assert counted == [bad]
    assert Spool(tmp_path).segments() == []  # nothing of the batch was written


def test_an_event_with_chain_fields_or_built_by_hand_differently_is_validated(tmp_path, counted):
    chained = Spool(tmp_path / "a", writer="w:s").append([ev(3)])[0]
    Spool(tmp_path / "b", writer="w:s").append([chained])
    assert counted == [chained]


def test_the_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(validated, "LIMIT", 3)
    events = [ev(i) for i in range(5)]  # make_event remembers them, as many as LIMIT
    assert [validated.known(validated.plain_body(e)) for e in events] == [False, False, True, True, True]
    monkeypatch.setattr(validated, "_bodies", OrderedDict())
    bodies = [validated.plain_body(e) for e in events]
    assert not any(validated.known(b) for b in bodies)
    for e in events:
        validated.remember(e)
    assert [validated.known(b) for b in bodies] == [False, False, True, True, True]


def test_a_batch_of_tens_of_thousands_is_remembered_whole(tmp_path, counted):
    # An audit emits all its findings in one batch (10,000 stale accounts are not unusual): 8,192 bodies did
    # not cover it, 65,536 digests do.
    events = [ev(i) for i in range(20_000)]
    assert len(Spool(tmp_path, writer="w:s").append(events)) == 20_000
    assert counted == []


def test_the_memory_holds_digests_not_bodies():
    body = validated.plain_body(ev(7))
    assert validated.known(body)
    assert all(len(k) == 16 for k in validated._bodies)
    assert not validated.known(body[:-1] + b" ")
