"""Keycloak events encoded once (EventTemplate) record exactly what the make_event path recorded: the same
bytes, ids, attempts and errors. The reference below is that path as it was (sso/kc_events.py and
sso/events.py before events were encoded once), kept verbatim but for its imports."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.config.models import AuthDetection
from citydc.seclog.chain import canonical
from citydc.seclog.event import Encoded, datetime_of_ms, make_event
from citydc.sso import kc_events
from citydc.sso.auth_audit import KeycloakFeed, run_auth
from citydc.sso.detect import Attempt
from citydc.sso.events import SEVERITY, detection_event
from citydc.sso.kc_events import (
    _DETAIL_KEYS,
    LOGIN_TYPES,
    UserNames,
    _event_id,
    _ip,
    _time_ms,
    map_admin_event,
    map_user_event,
)
from citydc.sso.keycloak import ApiShapeError, Keycloak
from citydc.sso.keycloak import field as api_field

SSO_AUTH_DATASET = "citydc.sso_auth"
AUTH_DATASET = "citydc.ldap_auth"
_SSO_KIND = {
    "LOGIN": ("sso-login", "authentication", "start"), "LOGIN_ERROR": ("sso-login", "authentication", "start"),
    "CLIENT_LOGIN": ("sso-login", "authentication", "start"),
    "CLIENT_LOGIN_ERROR": ("sso-login", "authentication", "start"),
    "LOGOUT": ("sso-logout", "authentication", "end"), "LOGOUT_ERROR": ("sso-logout", "authentication", "end"),
}
_SSO_IAM_TYPES = ("UPDATE_", "REMOVE_", "REGISTER", "RESET_PASSWORD", "DELETE_ACCOUNT", "VERIFY_EMAIL")
_IAM_ACTIONS = {
    ("REALM_ROLE_MAPPING", "CREATE"): ("iam-role-grant", "change"),
    ("CLIENT_ROLE_MAPPING", "CREATE"): ("iam-role-grant", "change"),
    ("REALM_ROLE_MAPPING", "DELETE"): ("iam-role-revoke", "change"),
    ("CLIENT_ROLE_MAPPING", "DELETE"): ("iam-role-revoke", "change"),
    ("USER", "CREATE"): ("iam-user-create", "creation"),
    ("USER", "UPDATE"): ("iam-user-update", "change"),
    ("USER", "DELETE"): ("iam-user-delete", "deletion"),
    ("USER", "ACTION"): ("iam-user-update", "change"),
    ("GROUP_MEMBERSHIP", "CREATE"): ("iam-group-join", "change"),
    ("GROUP_MEMBERSHIP", "DELETE"): ("iam-group-leave", "change"),
}
_role_names = kc_events._role_names
_USER_PATH = kc_events._USER_PATH


# -- the reference: the make_event path as it was ---------------------------------------------------------------

def ref_sso_user_event(*, kc_type: str, success: bool, user: str | None, client: str | None, source_ip: str | None,
                   when: datetime, site: str, source: str, realm: str, id_key: str, error: str | None,
                   details: dict[str, Any]) -> dict:
    """Given one of Keycloak's stored user events, return its ``sso-login`` / ``sso-logout`` / ``sso-event``."""
    action, category, etype = _SSO_KIND.get(kc_type, ("sso-event", "authentication", "info"))
    if action == "sso-event" and kc_type.startswith(_SSO_IAM_TYPES):
        category, etype = "iam", "change"
    outcome = "success" if success else "failure"
    who = user or "(unknown user)"
    what = {"sso-login": "login", "sso-logout": "logout"}.get(action, kc_type.lower().replace("_", " "))
    return make_event(
        action=action, dataset=SSO_AUTH_DATASET, kind="event", category=[category], type=[etype], outcome=outcome,
        site=site, timestamp=when, id_key=id_key, user=user, source_ip=source_ip, error=error,
        message=f"SSO {what} {outcome} for {who} in realm {realm}" + (f" via {client}" if client else "")
                + (f" from {source_ip}" if source_ip else "") + (f" ({error})" if error else ""),
        details={"source": source, "realm": realm, "client": client, "keycloak_type": kc_type, **details})


_IAM_ACTIONS = {  # (resource type, operation) -> (action, ECS type)
    ("REALM_ROLE_MAPPING", "CREATE"): ("iam-role-grant", "change"),
    ("CLIENT_ROLE_MAPPING", "CREATE"): ("iam-role-grant", "change"),
    ("REALM_ROLE_MAPPING", "DELETE"): ("iam-role-revoke", "change"),
    ("CLIENT_ROLE_MAPPING", "DELETE"): ("iam-role-revoke", "change"),
    ("USER", "CREATE"): ("iam-user-create", "creation"),
    ("USER", "UPDATE"): ("iam-user-update", "change"),
    ("USER", "DELETE"): ("iam-user-delete", "deletion"),
    ("USER", "ACTION"): ("iam-user-update", "change"),
    ("GROUP_MEMBERSHIP", "CREATE"): ("iam-group-join", "change"),
    ("GROUP_MEMBERSHIP", "DELETE"): ("iam-group-leave", "change"),
}


def ref_iam_event(*, resource_type: str, operation: str, actor: str | None, target: str | None,
              source_ip: str | None, when: datetime, site: str, source: str, realm: str, id_key: str,
              error: str | None, details: dict[str, Any]) -> dict:
    """Given one of Keycloak's admin events, return its ``iam-*`` change event (actor and target user)."""
    action, etype = _IAM_ACTIONS.get((resource_type, operation), ("iam-admin-change", "admin"))
    outcome = "failure" if error else "success"
    what = action.removeprefix("iam-").replace("-", " ")
    if action == "iam-admin-change":
        what = f"{operation.lower()} of {resource_type.lower().replace('_', ' ')}"
    return make_event(
        action=action, dataset=SSO_AUTH_DATASET, kind="event", category=["iam"], type=[etype], outcome=outcome,
        site=site, timestamp=when, id_key=id_key, user=actor, user_target=target, source_ip=source_ip, error=error,
        message=f"SSO admin {what} in realm {realm}" + (f" by {actor}" if actor else "")
                + (f" for {target}" if target else "") + (f" from {source_ip}" if source_ip else "")
                + (f" ({error})" if error else ""),
        related={"user": [u for u in (actor, target) if u]},
        details={"source": source, "realm": realm, "resource_type": resource_type, "operation": operation,
                 **details})


def ref_detection_event(*, action: str, message: str, site: str, source: str, when: datetime, id_key: str,
                        users, source_ip: str | None, severity: str, details: dict[str, Any]) -> dict:
    return make_event(
        action=action, dataset=AUTH_DATASET, kind="alert", category=["authentication"], type=["info"],
        outcome="unknown", site=site, timestamp=when, id_key=id_key, message=message, severity=SEVERITY[severity],
        user=users[0] if len(users) == 1 else None, source_ip=source_ip,
        related={"user": list(users), **({"ip": [source_ip]} if source_ip else {})},
        details={"source": source, **details})


def ref_map_user_event(obj: Mapping[str, Any], *, realm: str, where: str, source: str, site: str,
                   names: UserNames | None) -> tuple[dict, Attempt | None, int, str]:
    """Given one stored user event, return its ECS document, its detector attempt (logins), time and id."""
    t, eid = _time_ms(obj, where), _event_id(obj, where)
    kc_type = api_field(obj, "type", str, where, None) or "UNKNOWN"
    details = obj.get("details") or {}
    if not isinstance(details, Mapping):
        raise ApiShapeError(f"{where}.details: expected a JSON object, got {type(details).__name__}")
    username = details.get("username") if isinstance(details.get("username"), str) else None
    user_id = api_field(obj, "userId", str, where, None)
    if not username and user_id and names is not None:
        username = names.name(realm, user_id)
    error = api_field(obj, "error", str, where, None)
    raw_ip = api_field(obj, "ipAddress", str, where, None)
    ip = _ip(raw_ip)
    when = datetime_of_ms(t)
    extra: dict[str, Any] = {k: details[k] for k in _DETAIL_KEYS if isinstance(details.get(k), str)}
    if user_id:
        extra["user_id"] = user_id
    if sid := api_field(obj, "sessionId", str, where, None):
        extra["session_id"] = sid
    if raw_ip and not ip:
        extra["ip_address"] = raw_ip[:100]
    success = error is None and not kc_type.endswith("_ERROR")
    doc = ref_sso_user_event(
        kc_type=kc_type[:64], success=success, user=username or None,
        client=api_field(obj, "clientId", str, where, None),
        source_ip=ip, when=when, site=site, source=source, realm=realm, id_key=f"{source}:{realm}:events:{eid}",
        error=error[:200] if error else None, details=extra)
    attempt = None
    if kc_type in LOGIN_TYPES and username:
        attempt = Attempt(when, username, ip, success, "keycloak")
    return doc, attempt, t, eid


def ref_map_admin_event(obj: Mapping[str, Any], *, realm: str, where: str, source: str, site: str,
                    names: UserNames | None) -> tuple[dict, int, str]:
    """Given one stored admin event, return its ``iam-*`` ECS document, time and id."""
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
    doc = ref_iam_event(
        resource_type=resource_type[:64], operation=operation[:32], actor=actor, target=target,
        source_ip=_ip(auth.get("ipAddress")), when=datetime_of_ms(t), site=site, source=source,
        realm=realm, id_key=f"{source}:{realm}:admin-events:{eid}", error=error[:200] if error else None,
        details=extra)
    return doc, t, eid




# -- the comparisons --------------------------------------------------------------------------------------------

class Names:
    """A stand-in for UserNames: some ids have a username, others none."""

    def __init__(self) -> None:
        self.typed_is_account: dict[str, int] = {}  # UserNames' count of e-mail logins that were the username

    def name(self, realm: str | None, user_id: str) -> str | None:
        return None if user_id.startswith("gone") else f"{realm}-{user_id[:6]}"

    def actor(self, realm_id: str, user_id: str) -> tuple[str | None, str | None]:
        return (None, None) if realm_id == "unknown" else ("master", self.name("master", user_id))


def result(fn):
    """Given a thunk mapping one event, return what it recorded: canonical bytes and the rest, or the error."""
    try:
        out = fn()
    except Exception as exc:  # the same exception, with the same message, from both
        return ("error", type(exc).__name__, str(exc))
    event, *rest = out
    body = event.body if isinstance(event, Encoded) else canonical(event)
    return ("ok", body, *rest)


# Values of the wrong shape (one strategy, so that one_of below picks them as often as one right value).
ODD = st.sampled_from([None, "", -3, 0, 3, True, False, 1.5, -0.0, [], [1], {}, {"a": 1}])
TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["10.20.30.40", "::FFFF:10.0.0.1", "2001:DB8::1", "x" * 260]))
KC_TYPES = st.sampled_from(["LOGIN", "LOGIN_ERROR", "LOGOUT", "LOGOUT_ERROR", "CLIENT_LOGIN", "UPDATE_PASSWORD",
                            "REGISTER", "CODE_TO_TOKEN", "CODE_TO_TOKEN_ERROR", "X" * 80])
T0 = 1_796_500_000_000


def user_events():
    details = st.one_of(ODD, st.dictionaries(
        st.sampled_from(["username", *_DETAIL_KEYS, "client_auth_method", "other"]),
        st.one_of(TEXT, ODD), max_size=5))
    fields = {"type": st.one_of(KC_TYPES, TEXT, ODD),
              "userId": st.one_of(st.sampled_from(["u-1", "gone-2"]), TEXT, ODD),
              "error": st.one_of(st.just("invalid_user_credentials"), TEXT, ODD),
              "ipAddress": st.one_of(TEXT, ODD), "sessionId": st.one_of(TEXT, ODD),
              "clientId": st.one_of(st.just("city-portal"), TEXT, ODD), "details": details,
              "realmId": st.one_of(TEXT, ODD)}
    return st.fixed_dictionaries(
        {"time": st.one_of(st.just(T0), st.integers(0, 253_402_300_799_999), st.integers(T0, T0 + 10**6),
                           st.sampled_from([None, -1, True, 1.5, "1", 2**70, 253_402_300_800_000])),
         "id": st.one_of(st.uuids().map(str), st.uuids().map(str), ODD)}, optional=fields)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=user_events(), names=st.sampled_from([None, Names()]), site=st.sampled_from(["siwei", "Bad Site"]))
def test_user_events_record_what_the_make_event_path_recorded(obj, names, site):
    args = {"realm": "city", "where": "realm city events[3]", "source": "city-sso", "site": site, "names": names}
    assert result(lambda: map_user_event(obj, **args)) == result(lambda: ref_map_user_event(obj, **args))


def admin_events():
    auth = st.one_of(ODD, st.fixed_dictionaries({}, optional={
        "realmId": st.one_of(st.sampled_from(["rid-master", "unknown"]), TEXT, ODD),
        "userId": st.one_of(st.just("u-root"), TEXT, ODD), "ipAddress": st.one_of(TEXT, ODD)}))
    fields = {"authDetails": auth,
              "resourceType": st.one_of(st.sampled_from(["REALM_ROLE_MAPPING", "USER", "GROUP_MEMBERSHIP",
                                                         "CLIENT"]), TEXT, ODD),
              "operationType": st.one_of(st.sampled_from(["CREATE", "DELETE", "UPDATE", "ACTION"]), TEXT, ODD),
              "resourcePath": st.one_of(st.sampled_from(["users/u-bob/role-mappings/realm", "users/gone-9",
                                                         "groups/g1"]), TEXT, ODD),
              "representation": st.one_of(st.just(json.dumps([{"name": "admin"}, {"name": 5}])), TEXT, ODD),
              "error": st.one_of(TEXT, ODD)}
    return st.fixed_dictionaries({"time": st.one_of(st.just(T0), st.integers(0, 2**45), st.integers(0, 2**45), ODD),
                                  "id": st.one_of(st.uuids().map(str), ODD)}, optional=fields)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=admin_events(), names=st.sampled_from([None, Names()]))
def test_admin_events_record_what_the_make_event_path_recorded(obj, names):
    args = {"realm": "city", "where": "realm city admin-events[0]", "source": "city-sso", "site": "siwei",
            "names": names}
    assert result(lambda: map_admin_event(obj, **args)) == result(lambda: ref_map_admin_event(obj, **args))


def test_the_comparison_sees_a_difference():
    # Negative control: an event that differs in one fact gives other bytes, and both ways get the same error.
    login = {"time": T0, "id": "e1", "type": "LOGIN", "userId": "u-1", "ipAddress": "10.0.0.1",
             "details": {"username": "alice"}}
    args = {"realm": "city", "where": "w", "source": "s", "site": "siwei", "names": None}
    ours = result(lambda: map_user_event(login, **args))
    assert ours[0] == "ok" and ours == result(lambda: ref_map_user_event(login, **args))
    assert ours != result(lambda: ref_map_user_event({**login, "ipAddress": "10.0.0.2"}, **args))
    assert ours != result(lambda: map_user_event(login, **{**args, "source": "t"}))
    bad = {**login, "clientId": 5}
    assert result(lambda: map_user_event(bad, **args)) == result(lambda: ref_map_user_event(bad, **args)) == (
        "error", "ApiShapeError", "w.clientId: expected str, got int")


@pytest.mark.parametrize("source_ip", [None, "10.66.0.7", "2001:db8::7"])
@pytest.mark.parametrize(("action", "severity", "details"), [
    ("auth-bruteforce", "high", {"failures": 5, "window_seconds": 300, "origin": "keycloak"}),
    ("auth-spraying", "high", {"accounts": 6, "window_seconds": 300, "accounts_by_origin": {"keycloak": 6}}),
    ("auth-offhours-privileged", "medium", {"local_time": "2026-12-06T03:00:00+08:00", "origin": "ldap"}),
])
def test_detection_events_record_what_the_make_event_path_recorded(action, severity, details, source_ip):
    args = {"action": action, "message": f"{action} seen", "site": "fengshan", "source": "city",
            "when": datetime(2026, 12, 6, 3, tzinfo=UTC), "id_key": f"city:{action}:1", "source_ip": source_ip,
            "severity": severity, "details": details}
    for users in (("sw-alice",), ("a", "b", "c")):
        made = detection_event(users=users, **args)
        assert made.body == canonical(ref_detection_event(users=users, **args))


def test_run_auth_spools_the_encoded_events_it_read(tmp_path):
    # Logins of one account from one address: a brute force, then its success after the failures.
    page = [{"id": f"e{i}", "time": T0 + i * 1000, "type": "LOGIN" if i == 5 else "LOGIN_ERROR",
             "userId": "u-1", "ipAddress": "10.66.0.7", "clientId": "city-portal",
             "details": {"username": "sw-alice"}, **({} if i == 5 else {"error": "invalid_user_credentials"})}
            for i in range(6)]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        first = int(request.url.params.get("first", 0))
        return httpx.Response(200, json=page[first:] if request.url.path.endswith("/events") else [])

    kc = Keycloak("http://kc.test", "c", "s", transport=httpx.MockTransport(handler))
    emitted: list = []
    report = run_auth(group="g", ldap=None, keycloaks=[KeycloakFeed("city-sso", "siwei", ["city"], kc, 100)],
                      settings=AuthDetection(bruteforce_failures=5, success_after_failures=3),
                      state_path=tmp_path / "s.json", emit=emitted.extend, privileged=())
    assert all(type(e) is Encoded for e in emitted)
    assert [e["event"]["action"] for e in emitted].count("sso-login") == 6
    assert sorted(d["action"] for d in report["detections"]) == ["auth-bruteforce", "auth-success-after-failures"]
    expected = [canonical(ref_map_user_event(o, realm="city", where="w", source="city-sso", site="siwei",
                                             names=None)[0]) for o in page]
    assert [e.body for e in emitted if e.dataset == SSO_AUTH_DATASET] == expected


def _logins(n: int) -> list[dict]:
    return [{"id": f"e{i:03d}", "time": T0 + i * 1000, "type": "LOGIN_ERROR", "userId": "u-1", "ipAddress": "10.6.0.7",
             "error": "invalid_user_credentials", "details": {"username": f"user-{i % 4}"}} for i in range(n)]


def _keycloak(page: list[dict]) -> Keycloak:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        first, size = int(request.url.params.get("first", 0)), int(request.url.params.get("max", 100))
        since = int(request.url.params.get("dateFrom", 0))
        stored = [e for e in page if e["time"] >= since] if request.url.path.endswith("/events") else []
        return httpx.Response(200, json=stored[first:first + size])

    return Keycloak("http://kc.test", "c", "s", transport=httpx.MockTransport(handler))


def _cursor_ms(state_path) -> int:
    if not state_path.exists():
        return -1
    return json.loads(state_path.read_text())["keycloak"]["city-sso"]["city"]["events"]["time_ms"]


def _run_city(page: list[dict], state, emit) -> dict:
    return run_auth(group="g", ldap=None, keycloaks=[KeycloakFeed("city-sso", "siwei", ["city"], _keycloak(page), 10)],
                    settings=AuthDetection(), state_path=state, emit=emit, privileged=())


def _login_ids(page: list[dict]) -> set[str]:
    return {map_user_event(o, realm="city", where="w", source="city-sso", site="siwei", names=None)[0].id
            for o in page}


def _spool_failing_after(spooled: list[str], n: int):
    """An emit that records the event ids and fails like a full disk once ``n`` are spooled."""
    def emit(batch):
        if len(spooled) >= n:
            raise OSError(28, "No space left on device")
        spooled.extend(e.id for e in batch)
    return emit


def test_each_batch_is_spooled_before_the_state_that_covers_it(tmp_path, monkeypatch):
    from citydc.sso import auth_audit

    monkeypatch.setattr(auth_audit, "BATCH", 7)
    monkeypatch.setattr(auth_audit, "SAVE_SECONDS", 0.0)  # the state with every batch
    state = tmp_path / "s.json"
    seen: list[tuple[int, int]] = []  # (newest event of the batch, the saved cursor when it is spooled)

    def emit(batch):
        seen.append((max(json.loads(e.body)["@timestamp"] for e in batch if e.dataset == SSO_AUTH_DATASET),
                     _cursor_ms(state)))

    page = _logins(30)
    _run_city(page, state, emit)
    assert len(seen) >= 4
    times = [datetime.fromisoformat(newest).timestamp() * 1000 for newest, _ in seen]
    for (_, cursor), newest in zip(seen, times, strict=True):
        assert cursor < newest  # the state on disk did not yet cover the batch being spooled
    assert _cursor_ms(state) == page[-1]["time"]


def test_a_batch_that_fails_to_spool_stops_all_later_state_and_the_next_run_resumes(tmp_path, monkeypatch):
    from citydc.sso import auth_audit

    monkeypatch.setattr(auth_audit, "BATCH", 7)
    monkeypatch.setattr(auth_audit, "SAVE_SECONDS", 0.0)  # the state with every batch
    state = tmp_path / "s.json"
    page = _logins(30)
    spooled: list[str] = []
    with pytest.raises(OSError, match="No space left"):
        _run_city(page, state, _spool_failing_after(spooled, 7))
    covered = _cursor_ms(state)
    assert covered < page[-1]["time"]  # no state after the failed batch
    assert covered >= page[0]["time"]  # the first batch's
    _run_city(page, state, lambda b: spooled.extend(e.id for e in b))
    login_ids = _login_ids(page)
    assert login_ids <= set(spooled)  # every login spooled, the failed batch's included (read again)
    assert _cursor_ms(state) == page[-1]["time"]


def test_between_saves_batches_are_spooled_without_state_and_a_failure_rereads_them(tmp_path, monkeypatch):
    """The state (with the detector's windows) is written at most every SAVE_SECONDS and at the end, not with
    every batch; a run that fails before its next save leaves the last state, and the next run reads again
    from there: every login is spooled, none lost."""
    from citydc import atomicfile
    from citydc.sso import auth_audit

    monkeypatch.setattr(auth_audit, "BATCH", 7)
    monkeypatch.setattr(auth_audit, "SAVE_SECONDS", 3600.0)
    state = tmp_path / "s.json"
    writes: list[str] = []
    real_write = atomicfile.write
    monkeypatch.setattr(atomicfile, "write", lambda path, *a, **kw: (writes.append(str(path)),
                                                                     real_write(path, *a, **kw))[1])
    page = _logins(30)
    batches: list[int] = []
    _run_city(page, state, lambda b: batches.append(len(b)))
    assert len(batches) >= 4 and writes.count(str(state)) == 1  # four batches or more, one state: the end's
    assert _cursor_ms(state) == page[-1]["time"]

    state.unlink()
    writes.clear()
    spooled: list[str] = []
    with pytest.raises(OSError, match="No space left"):
        _run_city(page, state, _spool_failing_after(spooled, 14))
    assert not state.exists() and len(spooled) >= 14  # two batches spooled, no state written after them
    _run_city(page, state, lambda b: spooled.extend(e.id for e in b))
    login_ids = _login_ids(page)
    assert login_ids <= set(spooled) and _cursor_ms(state) == page[-1]["time"]


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return repr(a) == repr(b)


def _decoded(fn, content: bytes):
    try:
        return ("ok", fn(content))
    except ValueError:
        return ("refused", None)


_ANSWERS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=5),
              st.sampled_from([10**18, 10**19, -2**63, 2**64 - 1, 2**64, 1e-7, 5e-324, 1.7976931348623157e308])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=10)


@settings(max_examples=600, deadline=None)
@given(_ANSWERS, st.sampled_from(["utf-8", "utf-16", "utf-8-sig"]), st.booleans())
def test_answers_decode_to_what_json_gives(value, encoding, ascii_only):
    from citydc.sso.keycloak import loads

    content = json.dumps(value, ensure_ascii=ascii_only).encode(encoding, "surrogatepass")
    ours, reference = _decoded(loads, content), _decoded(json.loads, content)
    assert ours[0] == reference[0] and _same(ours[1], reference[1])


@pytest.mark.parametrize("content", [b"[NaN, Infinity]", b'["\\ud800"]', b"[1e400]", b"[123456789012345678901]",
                                     b"-0", b"[-0.0, 1E5, 0.1]", b'{"a":1,"a":2}', b"[1,]", b"\xff[]", b"", b"[]x"])
def test_answers_at_the_edges_decode_to_what_json_gives(content):
    from citydc.sso.keycloak import loads

    ours, reference = _decoded(loads, content), _decoded(json.loads, content)
    assert ours[0] == reference[0] and _same(ours[1], reference[1])
