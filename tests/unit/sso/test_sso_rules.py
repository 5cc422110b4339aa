"""The SSO audit's rules and its reading of Keycloak's admin API, on answers shaped like Keycloak 26.5's
(httpx.MockTransport), and mutated answers: a clear error naming the field, never a traceback."""

from __future__ import annotations

import copy
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.config.models import KeycloakSource
from citydc.sso.keycloak import KeycloakError
from citydc.sso.sso_audit import run_sso_audit
from citydc.sso.sso_rules import password_min_length, wildcard_redirect

REALM = {"realm": "partners", "bruteForceProtected": False, "passwordPolicy": "length(6)", "eventsEnabled": True,
         "eventsExpiration": 86400, "adminEventsEnabled": True, "adminEventsDetailsEnabled": True,
         "accessTokenLifespan": 3600, "ssoSessionIdleTimeout": 1800, "ssoSessionMaxLifespan": 36000}
CLIENTS = [
    {"id": "c1", "clientId": "vendor-portal", "enabled": True, "publicClient": False, "redirectUris": ["*"]},
    {"id": "c2", "clientId": "vendor-mobile", "enabled": True, "publicClient": True,
     "directAccessGrantsEnabled": True, "redirectUris": ["https://m.example/cb"]},
    {"id": "c3", "clientId": "ok-app", "enabled": True, "publicClient": True, "redirectUris": ["https://a.example/*"]},
    {"id": "c4", "clientId": "admin-cli", "enabled": True, "publicClient": True, "directAccessGrantsEnabled": True},
    {"id": "c5", "clientId": "account-console", "enabled": True, "publicClient": True,
     "redirectUris": ["/realms/partners/account/*"]},
    {"id": "rm", "clientId": "realm-management", "enabled": True, "bearerOnly": True},
]
COMPONENTS = [{"name": "dir", "providerId": "ldap", "config": {"connectionUrl": ["ldap://dir:389"],
                                                                "startTls": ["false"]}}]
ROLES = [{"name": "admin"}]
ADMINS = [{"username": "boss", "totp": False}, {"username": "boss-ok", "totp": True}]


def answers() -> dict[str, object]:
    return {"/admin/realms/partners": REALM, "/admin/realms/partners/clients": CLIENTS,
            "/admin/realms/partners/components": COMPONENTS, "/admin/realms/partners/roles": ROLES,
            "/admin/realms/partners/roles/admin/users": ADMINS, "/admin/realms/partners/clients/rm/roles": [],
            "/admin/realms/partners/users": [{"username": "boss", "enabled": True}]}


def transport(data: dict[str, object]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        path = request.url.path
        if path not in data:
            return httpx.Response(404, json={"error": "not found"})
        body = data[path]
        if isinstance(body, list) and request.url.params.get("first") not in (None, "0"):
            body = []
        return httpx.Response(200, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    return httpx.MockTransport(handle)


SRC = KeycloakSource(kind="keycloak", name="sso", base_url="http://kc.example:8080", realms=["partners"],
                     client_id="citydc-audit", client_secret="env:X", site="siwei")


def audit(data: dict[str, object]) -> set[tuple[str, str]]:
    run = run_sso_audit(SRC, "secret", transport=transport(data))
    return {(f.rule.id, f.subject) for f in run.findings}


def test_recorded_answers_give_the_expected_findings():
    assert audit(answers()) == {
        ("SSO-BF-001", "partners"), ("SSO-PWD-001", "partners"), ("SSO-EVT-002", "partners"),
        ("SSO-ADM-002", "partners"), ("SSO-TOK-001", "partners"), ("SSO-CLI-001", "partners/client:vendor-portal"),
        ("SSO-CLI-003", "partners/client:vendor-mobile"), ("SSO-MFA-001", "partners/user:boss"),
        ("SSO-LDAP-001", "partners/ldap:dir")}


def test_a_clean_realm_has_no_finding():
    data = answers()
    data["/admin/realms/partners"] = {**REALM, "bruteForceProtected": True, "passwordPolicy": "length(14)",
                                      "eventsExpiration": 200 * 86400, "adminEventsDetailsEnabled": False,
                                      "accessTokenLifespan": 300}
    data["/admin/realms/partners/clients"] = CLIENTS[2:]
    data["/admin/realms/partners/components"] = []
    data["/admin/realms/partners/roles/admin/users"] = ADMINS[1:]
    assert audit(data) == set()


# Keycloak 26.5.6 matches a `*` only at the end (a prefix): `https://*.example/cb` is a literal URI it refused for
# https://evil.example/cb, while `https://a.example*` let https://a.example.evil.com/x through.
@pytest.mark.parametrize(("uri", "wild"), [("*", True), ("https://*.example/cb", False), ("https://a.example/*", False),
                                           ("/realms/x/account/*", False), ("https://a.example/cb", False),
                                           ("https://a.example*", True), ("https://*", True),
                                           ("https://a.example:*", True), ("https://a.example*?x=1", False)])
def test_wildcard_redirect(uri, wild):
    assert wildcard_redirect(uri) is wild


def test_password_min_length():
    assert password_min_length("length(12) and digits(1)") == 12
    assert password_min_length("digits(1) and maxLength(64)") == 0
    assert password_min_length("") == 0


def test_wrong_type_names_the_field():
    data = answers()
    data["/admin/realms/partners"] = {**REALM, "bruteForceProtected": "yes"}
    with pytest.raises(KeycloakError, match=r"realm partners\.bruteForceProtected: expected bool, got str"):
        audit(data)


_JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(sorted(answers())), junk=_JUNK, data=st.data())
def test_mutated_answers_never_raise_a_traceback(path, junk, data):
    answers_ = copy.deepcopy(answers())
    body = answers_[path]
    if isinstance(body, dict) and body and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(body)))
        body[key] = junk
    elif isinstance(body, list) and body and isinstance(body[0], dict) and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(body[0])))
        body[0][key] = junk
    else:
        answers_[path] = junk
    try:
        audit(answers_)
    except KeycloakError as exc:
        assert str(exc)  # a message naming the request or field
