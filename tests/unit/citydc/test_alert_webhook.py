"""The Alertmanager webhook receiver: payload checks (400 naming the field, never a traceback), the ledger
(each notification recorded once whatever Alertmanager re-sends or retries), 500 when the spool cannot be
written, and basic auth (401, recorded as alert-webhook-denied without the password). Served for real on a
loopback port; the spool is a real one in a temporary directory."""

from __future__ import annotations

import base64
import copy
import http.client
import json
import os
import stat
from pathlib import Path

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc import web
from citydc.alert_ledger import Ledger
from citydc.alert_webhook import DENIED_PER_MINUTE, PATH, Receiver, denied_event, parse_payload, server
from citydc.alert_webhook import PayloadInvalid as Invalid
from citydc.seclog import emit
from citydc.seclog.spool import Spool

ALERT = {
    "status": "firing",
    "labels": {"alertname": "UplinkDown", "site": "fengshan", "device": "sw-fengshan-core1", "severity": "critical"},
    "annotations": {"summary": "uplink down"},
    "startsAt": "2026-12-05T01:00:00.000Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://prometheus:9090/graph",
    "fingerprint": "1a2b3c4d5e6f7a8b",
}
PAYLOAD = {"version": "4", "groupKey": '{}:{alertname="UplinkDown"}', "truncatedAlerts": 0, "status": "firing",
           "receiver": "noc", "groupLabels": {"alertname": "UplinkDown"}, "commonLabels": {}, "commonAnnotations": {},
           "externalURL": "http://alertmanager:9093", "alerts": [ALERT]}
PASSWORD = "webhook-test-password"


def spooled(spool_dir: Path) -> list[dict]:
    """The webhook's events in the spool (not the spool's own bookkeeping events)."""
    if not spool_dir.exists():
        return []
    batch = Spool(spool_dir).read(None, 100_000)
    return [dict(ev) for ev in batch.events if ev["event"]["dataset"] == "citydc.alerts"]


@pytest.fixture
def hook(tmp_path):
    """A served receiver with basic auth; yields (port, receiver, spool_dir, emitted-batches list)."""
    spool_dir = tmp_path / "spool"
    batches: list[list[dict]] = []
    failures: list[int] = [0]

    def record(events: list[dict]) -> None:
        if failures[0]:
            failures[0] -= 1
            raise OSError("disk full")
        batches.append(events)
        emit(events, spool_dir=spool_dir)

    receiver = Receiver(Ledger(tmp_path / "state" / "ledger.db"), record)
    web_yml = tmp_path / "web.yml"
    web_yml.write_text("basic_auth_users:\n  alertmanager: "
                       + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode() + "\n")
    srv = server(receiver, "127.0.0.1", 0)
    web.secure(srv, web.Web(web_yml, on_denied=receiver.denied))
    web.serve_in_thread(srv)
    yield srv.server_address[1], receiver, spool_dir, batches, failures
    srv.shutdown()
    srv.server_close()


def post(port: int, body: bytes | dict, password: str | None = PASSWORD, path: str = PATH) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if password is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"alertmanager:{password}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, body=data, headers=headers)
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    return resp.status, text


def test_a_notification_is_recorded_once_with_its_facts(hook):
    port, receiver, spool_dir, batches, _ = hook
    assert post(port, PAYLOAD)[0] == 200
    status, text = post(port, PAYLOAD)  # Alertmanager retrying, or re-sending the group
    assert status == 200 and json.loads(text) == {"recorded": 0, "duplicates": 1}
    refired = copy.deepcopy(PAYLOAD)
    refired["alerts"][0]["endsAt"] = "2026-12-05T01:09:00Z"  # a firing alert's endsAt moves on each re-send
    assert json.loads(post(port, refired)[1]) == {"recorded": 0, "duplicates": 1}
    events = spooled(spool_dir)
    assert len(events) == 1 and len(batches) == 1  # emitted once, not emitted-and-deduplicated by the spool
    ev = events[0]
    assert ev["event"]["action"] == "alert-notification" and ev["event"]["kind"] == "alert"
    assert ev["labels"]["site"] == "fengshan" and ev["rule"]["name"] == "UplinkDown"
    detail = ev["citydc"]["alerts"]
    assert detail["fingerprint"] == "1a2b3c4d5e6f7a8b" and detail["receiver"] == "noc"
    assert detail["status"] == "firing" and detail["starts_at"] == "2026-12-05T01:00:00Z"
    assert detail["ends_at"] == "" and detail["group_key"] == PAYLOAD["groupKey"]
    assert detail["labels"]["device"] == "sw-fengshan-core1"
    assert receiver.ledger.count() == 1


def test_resolved_is_another_notification_and_another_receiver_too(hook):
    port, _, spool_dir, _, _ = hook
    post(port, PAYLOAD)
    resolved = copy.deepcopy(PAYLOAD)
    resolved["status"] = "resolved"
    resolved["alerts"][0].update(status="resolved", endsAt="2026-12-05T01:30:00Z")
    assert json.loads(post(port, resolved)[1])["recorded"] == 1
    assert json.loads(post(port, resolved)[1])["recorded"] == 0
    other = copy.deepcopy(PAYLOAD)
    other["receiver"] = "fengshan-oncall"
    assert json.loads(post(port, other)[1])["recorded"] == 1
    got = sorted((e["citydc"]["alerts"]["receiver"], e["citydc"]["alerts"]["status"]) for e in spooled(spool_dir))
    assert got == [("fengshan-oncall", "firing"), ("noc", "firing"), ("noc", "resolved")]


def test_spool_failure_answers_500_and_the_retry_records_once(hook):
    port, receiver, spool_dir, _, failures = hook
    failures[0] = 1
    status, text = post(port, PAYLOAD)
    assert status == 500 and "disk full" not in text
    assert receiver.ledger.count() == 0  # nothing marked: the retry must record it
    assert post(port, PAYLOAD)[0] == 200
    assert post(port, PAYLOAD)[0] == 200
    assert len(spooled(spool_dir)) == 1


def test_ledger_survives_a_restart_and_is_private(tmp_path):
    spool_dir = tmp_path / "spool"
    path = tmp_path / "state" / "ledger.db"
    first = Receiver(Ledger(path), lambda evs: emit(evs, spool_dir=spool_dir))
    first.receive(parse_payload(json.dumps(PAYLOAD).encode()))
    first.ledger.close()
    second = Receiver(Ledger(path), lambda evs: emit(evs, spool_dir=spool_dir))
    assert second.receive(parse_payload(json.dumps(PAYLOAD).encode())) == (0, 1)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(spooled(spool_dir)) == 1


def test_a_post_without_credentials_gets_401_and_is_recorded_without_the_password(hook):
    port, receiver, spool_dir, _, _ = hook
    assert post(port, PAYLOAD, password=None)[0] == 401
    assert post(port, PAYLOAD, password="guess-password-987")[0] == 401
    events = spooled(spool_dir)
    assert [e["event"]["action"] for e in events] == ["alert-webhook-denied"] * 2
    assert [e["citydc"]["alerts"]["reason"] for e in events] == ["no_credentials", "bad_credentials"]
    assert all(e["source"]["ip"] == "127.0.0.1" and e["event"]["outcome"] == "failure" for e in events)
    assert "guess-password-987" not in json.dumps(events)
    assert receiver.ledger.count() == 0


def test_denied_events_are_rate_limited_and_the_rest_counted(tmp_path):
    recorded: list[dict] = []
    now = [1_000_000.0]
    receiver = Receiver(Ledger(tmp_path / "l.db"), recorded.extend, clock=lambda: now[0])
    for _ in range(DENIED_PER_MINUTE + 5):
        receiver.denied("127.0.0.9", "bad_credentials")
    assert len(recorded) == DENIED_PER_MINUTE
    now[0] += 60
    receiver.denied("127.0.0.9", "bad_credentials")
    assert recorded[-1]["citydc"]["alerts"]["suppressed_before"] == 5
    assert len({e["event"]["id"] for e in recorded}) == len(recorded)


@pytest.mark.parametrize("mutate, field", [
    (lambda p: p.pop("version"), "version"),
    (lambda p: p.update(version="3"), "version"),
    (lambda p: p.update(alerts=[]), "alerts"),
    (lambda p: p["alerts"][0].pop("fingerprint"), "alerts[0].fingerprint"),
    (lambda p: p["alerts"][0].update(fingerprint="not hex!"), "alerts[0].fingerprint"),
    (lambda p: p["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt"),
    (lambda p: p["alerts"][0].update(status="pending"), "alerts[0].status"),
    (lambda p: p["alerts"][0]["labels"].update(site=7), "alerts[0].labels.site"),
    (lambda p: p.update(receiver=""), "receiver"),
])
def test_a_bad_payload_gets_400_naming_the_field(hook, mutate, field):
    port, receiver, spool_dir, _, _ = hook
    body = copy.deepcopy(PAYLOAD)
    mutate(body)
    status, text = post(port, body)
    assert status == 400 and f"bad request: {field}:" in text, text
    assert spooled(spool_dir) == [] and receiver.metrics.bad_requests.labels("invalid")._value.get() == 1


def test_not_json_and_wrong_path(hook):
    port, _, _, _, _ = hook
    assert post(port, b"\xff\xfe{")[0] == 400
    assert post(port, b"[1, 2]")[1].startswith("bad request: (body): expected a JSON object")
    assert post(port, PAYLOAD, path="/other")[0] == 404


def _mutations():
    scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
    value = st.recursive(scalar, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                        st.dictionaries(st.text(max_size=8), kids, max_size=3)),
                         max_leaves=8)
    top = st.sampled_from(sorted(PAYLOAD))
    inner = st.sampled_from(sorted(ALERT))
    return st.one_of(
        st.tuples(st.just("top"), top, value),
        st.tuples(st.just("alert"), inner, value),
        st.tuples(st.just("drop-top"), top, st.none()),
        st.tuples(st.just("drop-alert"), inner, st.none()),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_mutations(), min_size=1, max_size=4))
def test_mutated_payloads_are_accepted_or_refused_by_field_never_a_crash(tmp_path, changes):
    body = copy.deepcopy(PAYLOAD)
    for kind, key, value in changes:
        target = body if kind in ("top", "drop-top") else (body["alerts"][0] if isinstance(body.get("alerts"), list)
                                                            and body["alerts"]
                                                            and isinstance(body["alerts"][0], dict) else None)
        if target is None:
            continue
        if kind.startswith("drop"):
            target.pop(key, None)
        else:
            target[key] = value
    raw = json.dumps(body).encode()
    try:
        payload = parse_payload(raw)
    except Invalid as exc:
        field = str(exc).split(":", 1)[0]
        assert field and (field == "(body)" or field.split(".")[0].split("[")[0] in PAYLOAD), str(exc)
        return
    # Accepted: it must turn into valid events and ledger keys.
    recorded: list[dict] = []
    receiver = Receiver(Ledger(tmp_path / f"l-{os.getpid()}-{id(body)}.db"), recorded.extend)
    new, dup = receiver.receive(payload)
    assert new + dup == len(payload.alerts) and len(recorded) == new


def test_denied_event_never_holds_more_than_peer_and_reason():
    ev = denied_event("::1", "no_credentials")
    assert ev["source"]["ip"] == "::1" and ev["citydc"]["alerts"] == {"reason": "no_credentials"}


def test_a_site_label_in_capitals_is_that_site_not_every_site():
    from citydc.alert_webhook import site_of

    assert site_of({"site": "Siwei"}) == "siwei" and site_of({"site": " FENGSHAN "}) == "fengshan"
    assert site_of({"site": "fengshan"}) == "fengshan"
    assert site_of({"site": "四維"}) == "all" and site_of({}) == "all"  # not a site id: every site


def test_firing_again_after_a_resolution_is_recorded_once(tmp_path):
    """Alertmanager resolves an alert whose re-sends from Prometheus stop arriving (a Prometheus restart or pause
    longer than its endsAt: seen with Prometheus 2.42 and Alertmanager 0.25) and, when they come again, notifies it
    firing with the startsAt Prometheus kept. The history reads firing, resolved, firing, resolved, firing; the
    re-sends and retries of each are recorded once, across a restart too."""
    spool_dir = tmp_path / "spool"
    receiver = Receiver(Ledger(tmp_path / "ledger.db"), lambda evs: emit(evs, spool_dir=spool_dir))

    def send(status: str, ends_at: str, to: Receiver = receiver) -> tuple[int, int]:
        doc = copy.deepcopy(PAYLOAD)
        doc["status"] = status
        doc["alerts"][0].update(status=status, endsAt=ends_at)
        return to.receive(parse_payload(json.dumps(doc).encode()))

    assert send("firing", "2026-12-05T01:04:00Z") == (1, 0)
    assert send("resolved", "2026-12-05T01:06:44.851Z") == (1, 0)
    assert send("firing", "2026-12-05T01:08:00Z") == (1, 0)  # the same startsAt, firing again
    assert send("firing", "2026-12-05T01:09:00Z") == (0, 1)  # its re-send
    assert send("resolved", "2026-12-05T01:06:44.851Z") == (0, 1)  # a late retry of the first resolution
    assert send("resolved", "2026-12-05T01:17:32Z") == (1, 0)
    assert send("resolved", "2026-12-05T01:17:32Z") == (0, 1)
    assert send("firing", "2026-12-05T01:22:00Z") == (1, 0)
    got = [(e["citydc"]["alerts"]["status"], e["citydc"]["alerts"].get("fires_again_after", ""))
           for e in spooled(spool_dir)]
    assert got == [("firing", ""), ("resolved", ""), ("firing", "2026-12-05T01:06:44.851000Z"), ("resolved", ""),
                   ("firing", "2026-12-05T01:17:32Z")]
    assert len({e["event"]["id"] for e in spooled(spool_dir)}) == 5
    receiver.ledger.close()
    again = Receiver(Ledger(tmp_path / "ledger.db"), lambda evs: emit(evs, spool_dir=spool_dir))
    assert send("firing", "2026-12-05T01:23:00Z", again) == (0, 1)
