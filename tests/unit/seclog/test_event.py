"""Event model: valid events are built with deterministic ids; invalid ones are refused naming the field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone

import pytest

from citydc.seclog import EventInvalid, emit, make_event, validate_event
from citydc.seclog.event import event_id, format_timestamp
from citydc.seclog.spool import Spool
from citydc.secrets import SecretRef

T0 = datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)


def backup_event(**overrides) -> dict:
    args = dict(action="backup-run", dataset="citydc.backup", kind="event", category=["process"],
                type=["start", "end"], outcome="success", message="backup of ldap-siwei finished", site="siwei",
                id_key="snapshot:4f2a9c", user="ops", host="backup-1", duration_ns=42_000_000_000,
                details={"job": "ldap-siwei", "snapshot": "4f2a9c", "files_new": 12}, timestamp=T0)
    args.update(overrides)
    return make_event(**args)


def test_make_event_builds_the_ecs_document():
    doc = backup_event(source_ip="2001:DB8::1", related={"user": ["ops"], "ip": ["10.10.0.5"]})
    assert doc["@timestamp"] == "2026-03-01T08:00:00.123Z"
    assert doc["event"] == {"id": event_id("citydc.backup", "snapshot:4f2a9c"), "kind": "event",
                            "category": ["process"], "type": ["start", "end"], "action": "backup-run",
                            "outcome": "success", "dataset": "citydc.backup", "duration": 42_000_000_000}
    assert doc["labels"] == {"site": "siwei"}
    assert doc["user"] == {"name": "ops"}
    assert doc["source"] == {"ip": "2001:db8::1"}  # canonical form, so filters match on both stores
    assert doc["citydc"] == {"backup": {"job": "ldap-siwei", "snapshot": "4f2a9c", "files_new": 12}}
    assert doc["ecs"]["version"].startswith("9.")


def test_event_id_is_deterministic_from_the_source_identity():
    a = backup_event(timestamp=T0)
    b = backup_event(timestamp=T0 + timedelta(hours=1), message="retried")
    assert a["event"]["id"] == b["event"]["id"]
    assert backup_event(id_key="snapshot:other")["event"]["id"] != a["event"]["id"]
    assert make_event(action="repo-check", dataset="citydc.other", kind="event", category=["process"], type=["end"],
                      outcome="success", message="m", site="siwei", id_key="snapshot:4f2a9c")["event"]["id"] \
        != a["event"]["id"]  # same key, other dataset


def test_timestamp_is_utc_with_milliseconds():
    taipei = timezone(timedelta(hours=8))
    assert format_timestamp(datetime(2026, 3, 1, 16, 0, 0, 999999, tzinfo=taipei)) == "2026-03-01T08:00:00.999Z"
    with pytest.raises(EventInvalid, match="@timestamp"):
        format_timestamp(datetime(2026, 3, 1))  # naive


@pytest.mark.parametrize(("overrides", "field", "expected"), [
    ({"kind": "incident"}, "event.kind", "expected one of alert"),
    ({"category": ["backup"]}, "event.category", "expected one of api"),
    ({"type": []}, "event.type", "non-empty list"),
    ({"outcome": "ok"}, "event.outcome", "failure, success, unknown"),
    ({"action": "Backup Run"}, "event.action", "lowercase words"),
    ({"dataset": "backup"}, "event.dataset", "citydc.<component>"),
    ({"site": "Siwei!"}, "labels.site", "site id"),
    ({"source_ip": "10.0.0.300"}, "source.ip", "IPv4 or IPv6"),
    ({"message": ""}, "message", "non-empty string"),
    ({"severity": -1}, "event.severity", "integer >= 0"),
    ({"details": {"when": datetime(2026, 1, 1)}}, "citydc.backup.when", "JSON value"),
    ({"details": {"password": SecretRef.parse("env:RESTIC_PASSWORD")}}, "citydc.backup.password",
     "secret reference never goes into an event"),
    ({"related": {"ip": ["not-an-ip"]}}, "related.ip[0]", "IPv4 or IPv6"),
])
def test_invalid_event_is_refused_naming_the_field(overrides, field, expected):
    with pytest.raises(EventInvalid) as err:
        backup_event(**overrides)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
    assert expected in str(err.value)


def test_validate_refuses_unknown_and_missing_fields():
    doc = backup_event()
    bad = copy.deepcopy(doc)
    bad["event"]["severty"] = 3
    with pytest.raises(EventInvalid, match=r"^event\.severty: unknown field"):
        validate_event(bad)
    bad = copy.deepcopy(doc)
    del bad["event"]["outcome"]
    with pytest.raises(EventInvalid, match=r"^event\.outcome: required field is missing"):
        validate_event(bad)
    bad = copy.deepcopy(doc)
    bad["citydc"]["ldap_audit"] = {"x": 1}  # details of another component
    with pytest.raises(EventInvalid, match=r"^citydc\.ldap_audit: unknown field"):
        validate_event(bad)
    bad = copy.deepcopy(doc)
    bad["@timestamp"] = "2026-03-01T08:00:00"
    with pytest.raises(EventInvalid, match="timezone"):
        validate_event(bad)
    with pytest.raises(EventInvalid, match="chain"):
        validate_event(doc, chained=True)


def test_invalid_event_in_a_batch_writes_nothing(tmp_path):
    spool_dir = tmp_path / "spool"
    good = [backup_event(id_key=f"snap-{i}") for i in range(3)]
    assert emit(good[:1], spool_dir=spool_dir) == 1
    before = {p.name: p.read_bytes() for p in spool_dir.glob("seg-*")}
    broken = copy.deepcopy(good[2])
    broken["event"]["outcome"] = "maybe"
    with pytest.raises(EventInvalid) as err:
        emit([good[1], broken, good[0]], spool_dir=spool_dir)
    assert err.value.index == 1
    assert str(err.value).startswith("event #1: event.outcome:")
    assert {p.name: p.read_bytes() for p in spool_dir.glob("seg-*")} == before
    assert Spool(spool_dir).emitted_heads()[Spool(spool_dir).writer].seq == 2  # spool-created, then good[0]
    # The good events of the refused batch can still be emitted afterwards.
    assert emit([good[1], good[2]], spool_dir=spool_dir) == 2
