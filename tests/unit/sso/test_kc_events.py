"""Keycloak events read through the admin API: paging with events arriving meanwhile, resume without
duplicates, ECS mapping (sso-login, iam-*), cross-source detections, malformed answers.

The API is a stand-in at the unit boundary (httpx.MockTransport) answering like Keycloak 26 (measured on
the lab's 26.5.6): ``dateFrom`` in epoch ms (inclusive), ``direction=asc``, ``first``/``max`` paging,
users by id. tests/lab/test_sso_events.py runs the same code against the real Keycloak and slapd.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.config.models import AuthDetection
from citydc.seclog.event import validate_event
from citydc.sso.auth_audit import KeycloakFeed, LdapFeed, run_auth
from citydc.sso.kc_events import Cursor, UserNames, read_stream
from citydc.sso.keycloak import Keycloak, KeycloakError

T0 = 1_796_500_000_000  # ms
class FakeKeycloak:
    def __init__(self) -> None:
        self.events: dict[str, list[dict[str, Any]]] = {}  # "realm/stream" -> events
        self.users: dict[tuple[str, str], str] = {}  # (realm, id) -> username
        self.realms = {"rid-city": "city", "rid-master": "master"}
        self.on_page: Callable[[str, int], None] | None = None
        self.requests = 0
        self.firsts: list[int] = []  # the `first` of each events/admin-events request
        self.answer_override: Callable[[str, list], Any] | None = None
        # Keycloak orders events by time only: events of one millisecond may come in any order, and in another
        # order on the next request. A Random here shuffles them on every request.
        self.tie_order: random.Random | None = None
        self.ignore_direction = False  # as a server that always answers newest first

    def add(self, realm: str, stream: str, event: dict[str, Any]) -> None:
        self.events.setdefault(f"{realm}/{stream}", []).append(event)

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/protocol/openid-connect/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        parts = path.removeprefix("/admin/realms").strip("/").split("/")
        if parts == [""]:
            # As Keycloak 26 answers a client with only view-users of master: master listed without its id.
            return httpx.Response(200, json=[{"id": k, "realm": v} if v != "master" else {"realm": v}
                                             for k, v in self.realms.items()])
        if len(parts) == 3 and parts[1] == "users":
            name = self.users.get((parts[0], parts[2]))
            if name is None:
                return httpx.Response(404, json={"error": "User not found"})
            return httpx.Response(200, json={"id": parts[2], "username": name})
        if len(parts) == 2 and parts[1] in ("events", "admin-events"):
            self.requests += 1
            if self.requests > 5_000:  # a reader that never gets past a page fails the test, never hangs it
                return httpx.Response(500, json={"error": "too many requests"})
            q = request.url.params
            first, size = int(q.get("first", 0)), int(q.get("max", 100))
            self.firsts.append(first)
            if self.on_page is not None:
                self.on_page(path, first)
            stored = [e for e in self.events.get(f"{parts[0]}/{parts[1]}", [])
                      if e["time"] >= int(q.get("dateFrom", 0))]
            if self.tie_order is not None:
                self.tie_order.shuffle(stored)
            stored.sort(key=lambda e: e["time"], reverse=self.ignore_direction or q.get("direction") != "asc")
            page = stored[first:first + size]
            if self.answer_override is not None:
                return httpx.Response(200, content=json.dumps(self.answer_override(path, page)).encode())
            return httpx.Response(200, json=page)
        return httpx.Response(404, json={"error": f"no route {path}"})

    def client(self) -> Keycloak:
        return Keycloak("http://kc.test", "citydc-audit", "s3cret", transport=httpx.MockTransport(self.handler))


def login(n: int, t: int, user: str, ok: bool, ip: str = "10.1.2.3", realm_id: str = "rid-city") -> dict[str, Any]:
    ev: dict[str, Any] = {"id": f"ev-{n}", "time": t, "type": "LOGIN" if ok else "LOGIN_ERROR", "realmId": realm_id,
                          "clientId": "city-portal", "ipAddress": ip,
                          "details": {"username": user, "auth_method": "openid-connect", "grant_type": "password"}}
    if not ok:
        ev["error"] = "invalid_user_credentials"
    else:
        ev["userId"] = f"id-{user}"
        ev["sessionId"] = f"s-{n}"
    return ev


def role_grant(n: int, t: int, actor_id: str, target_id: str, op: str = "CREATE") -> dict[str, Any]:
    return {"id": f"adm-{n}", "time": t, "realmId": "rid-city",
            "authDetails": {"realmId": "rid-master", "clientId": "c", "userId": actor_id, "ipAddress": "10.9.9.9"},
            "operationType": op, "resourceType": "REALM_ROLE_MAPPING",
            "resourcePath": f"users/{target_id}/role-mappings/realm",
            "representation": json.dumps([{"id": "r1", "name": "admin", "composite": False}])}


def read_all(fake: FakeKeycloak, cursor: Cursor, stream: str = "events", page: int = 10, process: bool = True):
    kc = fake.client()
    got = []
    for item in read_stream(kc, "city", stream, cursor, page=page, source="city-sso", site="siwei",
                            names=UserNames(kc)):
        got.append(item)
        if process:
            cursor.advance(item.time_ms, item.event_id)
    return got


def test_paging_while_events_arrive_leaves_no_gap_and_resume_reads_nothing_twice():
    fake = FakeKeycloak()
    n = 0
    for i in range(25):
        fake.add("city", "events", login(n := n + 1, T0 + i * 10, f"u{i}", False))

    def arrive(path: str, first: int) -> None:
        # 7 new events land before each page after the first: more than a page in all.
        nonlocal n
        if fake.requests > 1:
            for _ in range(7):
                fake.add("city", "events", login(n := n + 1, T0 + 10_000 + n, "late", True))

    fake.on_page = arrive
    cursor = Cursor()
    got = read_all(fake, cursor)
    ids = [g.event_id for g in got]
    assert len(ids) == len(set(ids))
    stored = {e["id"] for e in fake.events["city/events"]}
    assert len(stored) > 25 + 10  # events did arrive during the read, more than a page of them
    assert set(ids) == stored  # every event stored by the end of the read was read once
    fake.on_page = None
    assert read_all(fake, cursor) == []  # resumed: nothing again
    fake.add("city", "events", login(999, cursor.time_ms, "same-ms", False))  # same millisecond as the cursor
    fake.add("city", "events", login(1000, cursor.time_ms + 1, "next", True))
    again = read_all(fake, cursor)
    assert [g.event_id for g in again] == ["ev-999", "ev-1000"]


def test_each_page_is_asked_from_the_newest_millisecond_read_so_keycloak_never_skips_what_it_returned():
    fake = FakeKeycloak()
    for i in range(95):
        fake.add("city", "events", login(i, T0 + i * 10, f"u{i}", False))
    got = read_all(fake, Cursor(), page=10)
    assert [g.event_id for g in got] == [f"ev-{i}" for i in range(95)]
    # With a fixed dateFrom and a growing first, Keycloak would skip 10, 20, ... 90 rows it returned before.
    assert fake.firsts == [0] * len(fake.firsts) and len(fake.firsts) == 11  # the last of each page comes again


def test_a_page_wholly_of_one_millisecond_steps_over_it():
    fake = FakeKeycloak()
    for i in range(25):  # 25 events in one millisecond, then 3 more
        fake.add("city", "events", login(i, T0, f"u{i}", False))
    for i in range(25, 28):
        fake.add("city", "events", login(i, T0 + 1, f"u{i}", False))
    cursor = Cursor()
    got = read_all(fake, cursor, page=10)
    assert sorted(g.event_id for g in got) == sorted(f"ev-{i}" for i in range(28)) and len(got) == 28
    assert fake.firsts[:3] == [0, 10, 20]
    assert read_all(fake, cursor, page=10) == []


@settings(max_examples=300, deadline=None)
@given(times=st.lists(st.integers(0, 12), min_size=0, max_size=40), page=st.integers(1, 8),
       arrivals=st.lists(st.integers(0, 3), max_size=10), processed=st.integers(0, 40),
       shuffle=st.booleans(), seed=st.integers(0, 2**16))
def test_paging_reads_every_stored_event_once_against_a_model(times, page, arrivals, processed, shuffle, seed):
    """Events with many ties, any page size, events arriving while the pages are read (at the newest
    millisecond or later), a resumed cursor. With Keycloak's order of ties changing on every request, every
    event is still read once while one millisecond holds fewer events than a page (more than a page of one
    millisecond needs offsets within it, and those need a stable order)."""
    if shuffle:
        per_ms: dict[int, int] = {}
        for t in times:
            per_ms[t] = per_ms.get(t, 0) + 1
        if max(per_ms.values(), default=0) + len(arrivals) >= page:  # arrivals may join the newest one
            shuffle = False
    fake = FakeKeycloak()
    if shuffle:
        fake.tie_order = random.Random(seed)
    n = 0
    for t in sorted(times):
        fake.add("city", "events", login(n := n + 1, T0 + t, "u", False))
    cursor = Cursor()
    first_read = read_all(fake, cursor, page=page)[:processed]
    cursor = Cursor()  # resume after `processed` of them, as run_auth's state would
    for g in first_read:
        cursor.advance(g.time_ms, g.event_id)
    pending = iter(arrivals)

    def arrive(path: str, first: int) -> None:
        step = next(pending, None)
        if step is not None:
            newest = max((e["time"] for e in fake.events.get("city/events", [])), default=T0)
            nonlocal n
            fake.add("city", "events", login(n := n + 1, newest + step, "late", True))

    fake.on_page = arrive
    got = read_all(fake, cursor, page=page)
    fake.on_page = None
    done = {g.event_id for g in first_read}
    ids = [g.event_id for g in got]
    assert len(ids) == len(set(ids)) and not done & set(ids)
    assert done | set(ids) == {e["id"] for e in fake.events.get("city/events", [])}
    assert [g.time_ms for g in got] == sorted(g.time_ms for g in got)
    assert read_all(fake, cursor, page=page) == []


def test_an_item_read_but_not_processed_is_read_again():
    fake = FakeKeycloak()
    for i in range(3):
        fake.add("city", "events", login(i, T0 + i, "a", False))
    cursor = Cursor()
    assert len(read_all(fake, cursor, process=False)) == 3
    assert len(read_all(fake, cursor)) == 3


def test_login_and_role_grant_are_ecs_events_with_user_client_address_actor_target():
    fake = FakeKeycloak()
    fake.add("city", "events", login(1, T0, "sw-alice", False, ip="10.20.30.40"))
    fake.add("city", "events", login(2, T0 + 5, "sw-alice", True, ip="10.20.30.40"))
    fake.add("city", "admin-events", role_grant(3, T0 + 9, "id-root", "id-bob"))
    fake.add("city", "admin-events", role_grant(4, T0 + 10, "id-root", "id-gone", op="DELETE"))
    fake.users[("master", "id-root")] = "lab-admin"
    fake.users[("city", "id-bob")] = "sw-bob"
    fail, ok = (g.doc for g in read_all(fake, Cursor()))
    for doc in (fail, ok):
        validate_event(doc)
        assert doc["event"]["action"] == "sso-login" and doc["event"]["category"] == ["authentication"]
        assert doc["user"]["name"] == "sw-alice" and doc["source"]["ip"] == "10.20.30.40"
        assert doc["citydc"]["sso_auth"]["client"] == "city-portal"
        assert doc["citydc"]["sso_auth"]["realm"] == "city"
    assert (fail["event"]["outcome"], ok["event"]["outcome"]) == ("failure", "success")
    assert fail["error"]["message"] == "invalid_user_credentials"
    grant, revoke = (g.doc for g in read_all(fake, Cursor(), stream="admin-events"))
    assert grant["event"]["action"] == "iam-role-grant" and grant["event"]["category"] == ["iam"]
    assert grant["event"]["type"] == ["change"]
    assert grant["user"] == {"name": "lab-admin", "target": {"name": "sw-bob"}}
    assert grant["citydc"]["sso_auth"]["roles"] == ["admin"]
    assert grant["citydc"]["sso_auth"]["actor_realm"] == "master"
    # A target the API no longer knows (deleted) stays its id.
    assert revoke["event"]["action"] == "iam-role-revoke" and revoke["user"]["target"]["name"] == "id-gone"


def test_a_server_answering_newest_first_with_a_page_of_one_millisecond_is_still_an_error():
    """A page wholly of one millisecond cannot show the order; dateFrom must not move to it, or the older
    events would never be asked for (nor the order error raised)."""
    fake = FakeKeycloak()
    fake.ignore_direction = True
    for i in range(5):
        fake.add("city", "events", login(i, T0, f"old{i}", False))
    for i in range(5, 20):
        fake.add("city", "events", login(i, T0 + 5, f"new{i}", False))
    with pytest.raises(KeycloakError, match="ascending"):
        read_all(fake, Cursor(), page=10)


def test_a_server_ignoring_ascending_order_is_an_error_not_a_silent_gap():
    fake = FakeKeycloak()
    for i in range(3):
        fake.add("city", "events", login(i, T0 + i, "a", False))
    fake.answer_override = lambda path, page: list(reversed(page))
    with pytest.raises(KeycloakError, match="ascending"):
        read_all(fake, Cursor())


def stats_line(t: float, text: str) -> str:
    sec = int(t)
    return f"{sec:08x}.{int((t - sec) * 1e9):08x} 0x7f00 {text}\n"


def failed_bind(conn: int, t: float, uid: str, ip: str) -> str:
    dn = f"uid={uid},ou=people,ou=fengshan,dc=city,dc=example"
    return (stats_line(t, f"conn={conn} fd=12 ACCEPT from IP={ip}:40000 (IP=0.0.0.0:389)")
            + stats_line(t, f'conn={conn} op=0 BIND dn="{dn}" method=128')
            + stats_line(t, f"conn={conn} op=0 RESULT tag=97 err=49 qtime=0.000010 etime=0.000100 text=")
            + stats_line(t, f"conn={conn} fd=12 closed"))


def test_a_spray_split_across_ldap_and_keycloak_is_one_detection_and_relayed_binds_do_not_count(tmp_path):
    t0 = T0 / 1000
    log = tmp_path / "slapd.log"
    lines = [failed_bind(i, t0 + i, f"fs-u{i}", "10.66.0.7") for i in range(3)]
    # Keycloak checking the passwords of the users logging in through it: binds from its own address.
    lines += [failed_bind(100 + i, t0 + 3.5 + i, f"sw-u{i}", "10.0.0.5") for i in range(3)]
    log.write_text("".join(lines))
    fake = FakeKeycloak()
    for i in range(3):
        fake.add("city", "events", login(i, T0 + 3_000 + i * 1000, f"sw-u{i}", False, ip="10.66.0.7"))
    emitted: list[dict] = []
    # bruteforce_failures=2: a relayed bind counted with its SSO login would be a brute force.
    settings = AuthDetection(spraying_accounts=6, bruteforce_failures=2, relay_addresses=["10.0.0.5"])

    def run():
        return run_auth(group="city", ldap=LdapFeed("city", "fengshan", log),
                        keycloaks=[KeycloakFeed("city-sso", "siwei", ["city"], fake.client(), 100)],
                        settings=settings, state_path=tmp_path / "state.json", emit=emitted.extend, privileged=())

    rep = run()
    (spray,) = rep["detections"]
    assert spray["action"] == "auth-spraying" and spray["source_ip"] == "10.66.0.7"
    assert spray["details"]["accounts_by_origin"] == {"keycloak": 3, "ldap": 3}
    assert rep["relayed"] == 3 and rep["sso"]["city-sso"]["failure"] == 3
    # Resumed: nothing new, nothing detected again; new events of both kinds are read once.
    assert run()["detections"] == []
    fake.add("city", "events", login(50, T0 + 20_000, "sw-u9", True))
    with log.open("a") as fh:
        fh.write(failed_bind(200, t0 + 21, "fs-u9", "10.66.0.8"))
    rep = run()
    assert (rep["binds"], rep["sso"]["city-sso"]["logins"]) == (1, 1)
    ids = [e["event"]["id"] for e in emitted]
    assert len(ids) == len(set(ids))
    actions = [e["event"]["action"] for e in emitted]
    assert actions.count("auth-spraying") == 1 and actions.count("sso-login") == 4
    relayed = [e for e in emitted if e["event"]["action"] == "ldap-bind" and e["citydc"]["ldap_auth"].get("relayed")]
    assert len(relayed) == 3


def test_without_the_merge_neither_half_of_the_spray_is_enough(tmp_path):
    # The negative control of the test above: each half alone stays below the threshold.
    fake = FakeKeycloak()
    for i in range(3):
        fake.add("city", "events", login(i, T0 + i * 1000, f"sw-u{i}", False, ip="10.66.0.7"))
    rep = run_auth(group="kc", ldap=None, keycloaks=[KeycloakFeed("city-sso", "siwei", ["city"], fake.client(), 100)],
                   settings=AuthDetection(spraying_accounts=6), state_path=tmp_path / "s.json", emit=lambda e: None,
                   privileged=())
    assert rep["detections"] == [] and rep["sso"]["city-sso"]["failure"] == 3


def test_a_dead_keycloak_is_reported_and_the_directory_is_still_read(tmp_path):
    t0 = T0 / 1000
    log = tmp_path / "slapd.log"
    log.write_text(failed_bind(1, t0, "fs-u1", "10.66.0.7"))
    dead = Keycloak("http://127.0.0.1:9", "citydc-audit", "s3cret-value", timeout=2)
    rep = run_auth(group="city", ldap=LdapFeed("city", "fengshan", log),
                   keycloaks=[KeycloakFeed("city-sso", "siwei", ["city"], dead, 100)], settings=AuthDetection(),
                   state_path=tmp_path / "s.json", emit=lambda e: None, privileged=())
    assert rep["binds"] == 1 and rep["errors"] and "s3cret-value" not in " ".join(rep["errors"])


_SHAPES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=30), st.lists(st.integers(), max_size=3),
                    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=st.sampled_from(["events", "admin-events"]), index=st.integers(0, 2),
       key=st.sampled_from(["time", "id", "type", "details", "ipAddress", "userId", "clientId", "error",
                            "authDetails", "resourcePath", "resourceType", "operationType", "representation",
                            "sessionId", None]),
       value=_SHAPES, whole=st.one_of(st.none(), _SHAPES))
def test_mutated_answers_give_a_named_error_or_valid_events_never_a_traceback(stream, index, key, value, whole):
    fake = FakeKeycloak()
    for i in range(3):
        fake.add("city", "events", login(i, T0 + i, "a", i == 2))
        fake.add("city", "admin-events", role_grant(i, T0 + i, "id-root", "id-bob"))

    def mutate(path: str, page: list) -> object:
        page = [dict(e) for e in page]
        if whole is not None and key is None:
            return whole  # the answer itself is not a list
        if index < len(page):
            if key is None:
                page[index] = value
            else:
                page[index][key] = value
        return page

    fake.answer_override = mutate
    try:
        items = read_all(fake, Cursor(), stream=stream)
    except KeycloakError as exc:
        assert str(exc)
        return
    for item in items:
        validate_event(item.doc)
        assert item.when.tzinfo is UTC and isinstance(item.when, datetime)


def test_source_addresses_are_canonical_and_each_parsed_once():
    # bench/sso_events.py: parsing every login's address cost about 4% of `citydc audit auth`; logins come
    # from few addresses, so each distinct one is parsed once per process.
    from citydc.sso import kc_events

    kc_events._canonical_ip.cache_clear()
    fake = FakeKeycloak()
    addresses = ["10.20.30.40", "::FFFF:10.0.0.1", "not-an-ip"] * 2
    for i, ip in enumerate(addresses):
        fake.add("city", "events", login(i, T0 + i, "sw-alice", False, ip=ip))
    docs = [g.doc for g in read_all(fake, Cursor())]
    assert [d.get("source", {}).get("ip") for d in docs] == ["10.20.30.40", "::ffff:a00:1", None] * 2
    assert [d["citydc"]["sso_auth"].get("ip_address") for d in docs] == [None, None, "not-an-ip"] * 2
    info = kc_events._canonical_ip.cache_info()
    assert (info.misses, info.hits) == (3, 3)
    kc_events._canonical_ip.cache_clear()


@pytest.mark.parametrize("t", [253_402_300_800_000, 2**63])
def test_a_time_past_year_9999_is_a_named_error_not_a_traceback(t):
    # Found by the hypothesis test above: datetime cannot hold it (ValueError / OverflowError before).
    fake = FakeKeycloak()
    fake.add("city", "events", login(1, t, "sw-alice", True))
    with pytest.raises(KeycloakError, match=r"events\[0\]\.time: expected epoch milliseconds"):
        read_all(fake, Cursor())
