"""A login typed with the user's e-mail address is the user's account: in the ECS event's ``user.name`` and for the
detector. Keycloak 26.5.6 (login with e-mail allowed by default) records ``details.username`` as typed:
``plain@city.example`` with the ``userId`` of the user ``plain``; failures by e-mail and by name must add up."""

from __future__ import annotations

from typing import Any

import httpx

from citydc.config.models import AuthDetection
from citydc.sso.auth_audit import KeycloakFeed, run_auth
from citydc.sso.kc_events import Cursor, UserNames, read_stream
from citydc.sso.keycloak import Keycloak

T0 = 1_796_500_000_000  # ms
USERS = {"id-plain": "plain"}


def failure(n: int, typed: str, user_id: str | None) -> dict[str, Any]:
    ev: dict[str, Any] = {"id": f"ev-{n}", "time": T0 + n * 1000, "type": "LOGIN_ERROR", "realmId": "rid-city",
                          "clientId": "conf-dag", "ipAddress": "10.3.3.3", "error": "invalid_user_credentials",
                          "details": {"auth_method": "openid-connect", "grant_type": "password", "username": typed}}
    if user_id:
        ev["userId"] = user_id
    return ev


def client(events: list[dict[str, Any]]) -> Keycloak:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        if path.startswith("/admin/realms/city/users/"):
            user_id = path.rsplit("/", 1)[1]
            if user_id in USERS:
                return httpx.Response(200, json={"id": user_id, "username": USERS[user_id]})
            return httpx.Response(404, json={"error": "User not found"})
        if path == "/admin/realms/city/events":
            start = int(request.url.params.get("dateFrom", 0))
            return httpx.Response(200, json=[e for e in events if e["time"] >= start][:100])
        return httpx.Response(200, json=[])
    return Keycloak("http://kc.test", "citydc-audit", "s3cret", transport=httpx.MockTransport(handle))


def docs(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kc = client(events)
    return [item.doc for item in read_stream(kc, "city", "events", Cursor(), page=100, source="kc", site="siwei",
                                             names=UserNames(kc))]


def docs_and_lookups(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Given stored events, return their ECS documents and the user look-ups their mapping asked Keycloak for."""
    kc = client(events)
    asked: list[str] = []
    original = kc.get

    def get(path: str, params: Any = None) -> Any:
        if "/users/" in path:
            asked.append(path)
        return original(path, params)

    kc.get = get  # type: ignore[method-assign]
    got = [item.doc for item in read_stream(kc, "city", "events", Cursor(), page=100, source="kc", site="siwei",
                                            names=UserNames(kc))]
    return got, asked


def test_a_login_by_e_mail_is_named_by_the_accounts_username():
    by_mail, by_name, unknown = docs([failure(1, "plain@city.example", "id-plain"), failure(2, "PLAIN", "id-plain"),
                                      failure(3, "ghost@city.example", None)])
    assert by_mail["user"]["name"] == "plain"
    assert by_mail["citydc"]["sso_auth"]["login_name"] == "plain@city.example"
    assert by_name["user"]["name"] == "PLAIN" and "login_name" not in by_name["citydc"]["sso_auth"]
    # No user behind the address (no userId): what was typed is all there is.
    assert unknown["user"]["name"] == "ghost@city.example" and "login_name" not in unknown["citydc"]["sso_auth"]


def test_failures_by_e_mail_and_by_name_add_up_to_a_brute_force(tmp_path):
    events = [failure(n, "plain@city.example" if n % 2 else "plain", "id-plain") for n in range(1, 6)]
    feed = KeycloakFeed("kc", "siwei", ["city"], client(events), 100)
    report = run_auth(group="kc", ldap=None, keycloaks=[feed], settings=AuthDetection(bruteforce_failures=5),
                      state_path=tmp_path / "state.json", emit=lambda evs: None, privileged=())
    assert [d["action"] for d in report["detections"]] == ["auth-bruteforce"]
    assert report["detections"][0]["users"] == ["plain"]


def test_a_realm_whose_usernames_are_e_mail_addresses_stops_costing_a_look_up_per_user():
    """registrationEmailAsUsername: every look-up gives back the typed address; after SAME_ACCOUNT_LOOKUPS of them
    the realm's e-mail logins are taken as they are, so 200 users do not cost 200 requests."""
    from citydc.sso import kc_events

    mail_users = {f"id-{i}": f"user{i}@city.example" for i in range(200)}
    USERS.update(mail_users)
    try:
        got, asked = docs_and_lookups([failure(i + 1, name, uid) for i, (uid, name) in enumerate(mail_users.items())])
    finally:
        for uid in mail_users:
            USERS.pop(uid)
    assert [d["user"]["name"] for d in got] == list(mail_users.values())
    assert len(asked) == kc_events.SAME_ACCOUNT_LOOKUPS


def test_one_e_mail_login_to_an_account_named_otherwise_keeps_the_look_ups_on():
    USERS.update({f"id-{i}": f"user{i}@city.example" for i in range(30)})
    try:
        events = [failure(1, "plain@city.example", "id-plain")]
        events += [failure(i + 2, f"user{i}@city.example", f"id-{i}") for i in range(30)]
        got, asked = docs_and_lookups(events)
    finally:
        for i in range(30):
            USERS.pop(f"id-{i}")
    assert got[0]["user"]["name"] == "plain"
    assert len(asked) == 31  # every user looked up once: the realm's e-mail logins do not all name themselves
