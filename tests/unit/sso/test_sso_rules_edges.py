"""The SSO rules at the edges a realm administrator can reach through Keycloak 26.5's admin API (each case was
set on a real Keycloak 26.5.6 and read back as below): a password policy as Keycloak parses it, login events
left out of the saved event types, redirect URIs relative to a client's Root URL, an LDAP failover URL in
clear, and administrators who cannot log in with a password (disabled, service accounts)."""

from __future__ import annotations

import json

import httpx
import pytest

from citydc.config.models import KeycloakSource
from citydc.sso.sso_audit import run_sso_audit
from citydc.sso.sso_rules import password_min_length

GOOD_REALM = {"realm": "edge", "bruteForceProtected": True, "failureFactor": 10, "permanentLockout": False,
              "waitIncrementSeconds": 60, "maxFailureWaitSeconds": 900, "passwordPolicy": "length(12)",
              "eventsEnabled": True,
              "eventsExpiration": 90 * 86400, "adminEventsEnabled": True, "adminEventsDetailsEnabled": False,
              "accessTokenLifespan": 900, "ssoSessionIdleTimeout": 3600, "ssoSessionMaxLifespan": 43200,
              "enabledEventTypes": []}
RM = {"id": "rm", "clientId": "realm-management", "enabled": True, "bearerOnly": True}
SRC = KeycloakSource(kind="keycloak", name="sso", base_url="http://kc.example:8080", realms=["edge"],
                     client_id="citydc-audit", client_secret="env:X", site="siwei")


def answers(realm: dict | None = None, clients: list | None = None, components: list | None = None,
            admins: list | None = None, realm_admins: list | None = None) -> dict[str, object]:
    return {"/admin/realms/edge": {**GOOD_REALM, **(realm or {})},
            "/admin/realms/edge/clients": [RM, *(clients or [])],
            "/admin/realms/edge/components": components or [],
            "/admin/realms/edge/roles": [{"name": "admin"}],
            "/admin/realms/edge/roles/admin/users": admins or [],
            "/admin/realms/edge/clients/rm/roles": [{"name": "realm-admin"}],
            "/admin/realms/edge/clients/rm/roles/realm-admin/users": realm_admins or [],
            "/admin/realms/edge/users": []}


def transport(data: dict[str, object]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        body = data.get(request.url.path)
        if body is None:
            return httpx.Response(404, json={"error": "not found"})
        if isinstance(body, list) and request.url.params.get("first") not in (None, "0"):
            body = []
        return httpx.Response(200, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    return httpx.MockTransport(handle)


def findings(data: dict[str, object]) -> dict[tuple[str, str], str]:
    run = run_sso_audit(SRC, "secret", transport=transport(data))
    return {(f.rule.id, f.subject): f.message for f in run.findings}


def test_the_edge_values_themselves_are_clean():
    assert findings(answers()) == {}


@pytest.mark.parametrize(("policy", "length"), [
    ("length(14)", 14), ("digits(1) and length(12)", 12), ("maxLength(64) and length(4)", 4),
    ("length", 8),                              # Keycloak's default for `length` without a value
    ("regexPattern(x length(20) y)", 0),        # a length inside another policy's value is no length policy
    ("length(6) and length(14)", 14),           # the last one holds, as in Keycloak's parser
    ("digits(1) and maxLength(64)", 0), ("", 0),
])
def test_password_min_length_reads_the_policy_as_keycloak_does(policy, length):
    assert password_min_length(policy) == length


def test_a_length_inside_a_regex_pattern_does_not_hide_a_weak_policy():
    found = findings(answers(realm={"passwordPolicy": "regexPattern(x length(20) y)"}))
    assert found == {("SSO-PWD-001", "edge"): "password policy has no minimum length (required 12)"}


def test_length_without_a_value_is_keycloaks_default_of_8():
    found = findings(answers(realm={"passwordPolicy": "length"}))
    assert found == {("SSO-PWD-001", "edge"): "password policy has minimum length 8 (required 12)"}


@pytest.mark.parametrize(("types", "finding"), [
    (["LOGOUT", "UPDATE_PASSWORD"], True), (["LOGIN", "LOGOUT"], True),
    (["LOGIN", "LOGIN_ERROR", "LOGOUT"], False), ([], False),
])
def test_login_events_left_out_of_the_saved_types_are_not_saved(types, finding):
    found = findings(answers(realm={"enabledEventTypes": types}))
    assert (("SSO-EVT-001", "edge") in found) is finding


def test_a_relative_redirect_uri_is_checked_against_the_root_url():
    clients = [
        {"id": "1", "clientId": "http-rel", "rootUrl": "http://vendor.example", "redirectUris": ["/cb/*"]},
        {"id": "2", "clientId": "literal-star", "rootUrl": "https://*.city.example", "redirectUris": ["/cb"]},
        {"id": "3", "clientId": "prefix-ok", "rootUrl": "https://app.city.example", "redirectUris": ["/*"]},
        {"id": "4", "clientId": "account-console", "rootUrl": "${authBaseUrl}",
         "redirectUris": ["/realms/edge/account/*"]},
    ]
    assert findings(answers(clients=clients)) == {
        ("SSO-CLI-002", "edge/client:http-rel"): "http redirect URI /cb/* (Root URL http://vendor.example)"}


@pytest.mark.parametrize(("url", "start_tls", "finding"), [
    ("ldaps://a.example:636 ldap://b.example:389", "false", "ldap://b.example:389 without StartTLS"),
    ("ldaps://a.example:636 ldaps://b.example:636", "false", None),
    ("ldap://a.example ldap://b.example", "true", None),
    ("LDAP://a.example", "false", "LDAP://a.example without StartTLS"),
])
def test_every_failover_url_of_an_ldap_federation_is_checked(url, start_tls, finding):
    comp = {"name": "dir", "providerId": "ldap", "config": {"connectionUrl": [url], "startTls": [start_tls]}}
    found = findings(answers(components=[comp]))
    assert found.get(("SSO-LDAP-001", "edge/ldap:dir")) == finding


def test_disabled_administrators_and_service_accounts_are_not_administrators_without_otp():
    clients = [{"id": "sa", "clientId": "Svc-Admin", "serviceAccountsEnabled": True, "standardFlowEnabled": False}]
    admins = [{"username": "adm-disabled", "enabled": False, "totp": False},
              {"username": "adm-nootp", "enabled": True, "totp": False}]
    realm_admins = [{"username": "service-account-svc-admin", "enabled": True, "totp": False},
                    {"username": "rm-nootp", "enabled": True, "totp": False}]
    found = findings(answers(clients=clients, admins=admins, realm_admins=realm_admins))
    assert set(found) == {("SSO-MFA-001", "edge/user:adm-nootp"), ("SSO-MFA-001", "edge/user:rm-nootp")}


def test_a_clients_own_access_token_lifespan_over_the_limit_is_a_finding():
    # Keycloak 26.5.6 issued this client's tokens with expires_in 43200 (its SSO session max) at a realm of 900 s.
    clients = [{"id": "1", "clientId": "long", "attributes": {"access.token.lifespan": "86400"}},
               {"id": "2", "clientId": "edge-ok", "attributes": {"access.token.lifespan": "900"}},
               {"id": "3", "clientId": "inherits", "attributes": {"access.token.lifespan": ""}}]
    assert findings(answers(clients=clients)) == {
        ("SSO-TOK-001", "edge/client:long"): "access token lifespan 86400 s set on the client (limit 900 s)"}


@pytest.mark.parametrize(("remember", "message"), [
    ({"rememberMe": True, "ssoSessionMaxLifespanRememberMe": 30 * 86400},
     "SSO session idle 3600 s, max 43200 s; remember-me sessions idle 3600 s, max 2592000 s (limits 3600 s, 43200 s)"),
    ({"rememberMe": True, "ssoSessionIdleTimeoutRememberMe": 3601},
     "SSO session idle 3600 s, max 43200 s; remember-me sessions idle 3601 s, max 43200 s (limits 3600 s, 43200 s)"),
    ({"rememberMe": False, "ssoSessionMaxLifespanRememberMe": 30 * 86400}, None),   # remember me off: not used
    ({"rememberMe": True, "ssoSessionMaxLifespanRememberMe": 0}, None),             # 0: the SSO session's own
])
def test_remember_me_sessions_longer_than_the_limits_are_a_finding(remember, message):
    assert findings(answers(realm=remember)).get(("SSO-TOK-002", "edge")) == message


def test_sso_sessions_over_the_limit_keep_their_message():
    found = findings(answers(realm={"ssoSessionIdleTimeout": 3601}))
    assert found == {("SSO-TOK-002", "edge"): "SSO session idle 3601 s, max 43200 s (limits 3600 s, 43200 s)"}


@pytest.mark.parametrize(("lifespan", "message"), [
    (-1, "access token lifespan -1 (none: tokens last as long as the SSO session) (limit 900 s)"),
    (901, "access token lifespan 901 s (limit 900 s)"), (0, None), (900, None),
])
def test_a_negative_access_token_lifespan_is_none_and_too_long(lifespan, message):
    # Keycloak 26.5.6 took -1 (realm and client attribute) and issued tokens with expires_in 43200, the SSO session max.
    assert findings(answers(realm={"accessTokenLifespan": lifespan})).get(("SSO-TOK-001", "edge")) == message
    clients = [{"id": "1", "clientId": "app", "attributes": {"access.token.lifespan": str(lifespan)}}]
    found = findings(answers(clients=clients)).get(("SSO-TOK-001", "edge/client:app"))
    assert found == (message.replace(" (limit", " set on the client (limit") if message else None)


@pytest.mark.parametrize(("expiration", "finding"), [
    (-5, False), (0, False), (None, False), (90 * 86400 - 1, True), (90 * 86400, False)])
def test_only_a_positive_event_expiration_can_be_too_short(expiration, finding):
    # Keycloak 26.5.6 takes eventsExpiration -5; its clean-up expires events only for an expiration above 0.
    found = findings(answers(realm={"eventsExpiration": expiration}))
    assert (("SSO-EVT-002", "edge") in found) is finding


@pytest.mark.parametrize(("lockout", "message"), [
    ({"waitIncrementSeconds": 0}, "a lockout lasts 0 s (wait increment 0 s, maximum wait 900 s)"),
    ({"maxFailureWaitSeconds": 0}, "a lockout lasts 0 s (wait increment 60 s, maximum wait 0 s)"),
    ({"waitIncrementSeconds": -5}, "a lockout lasts 0 s (wait increment -5 s, maximum wait 900 s)"),
    ({"waitIncrementSeconds": 1}, None),
    ({"waitIncrementSeconds": 0, "permanentLockout": True}, None),   # locked until an admin unlocks: it locks
    ({"waitIncrementSeconds": 0, "bruteForceProtected": False}, None),  # SSO-BF-001's finding, not this one
    ({"waitIncrementSeconds": None}, None),                            # not in the answer: not judged
])
def test_a_temporary_lockout_of_zero_seconds_never_locks(lockout, message):
    # Keycloak 26.5.6 let the right password in after six failures (failureFactor 3) with either wait at 0.
    assert findings(answers(realm=lockout)).get(("SSO-BF-002", "edge")) == message


@pytest.mark.parametrize(("realm", "message"), [
    ({"failureFactor": 11}, "locks after 11 failed logins (limit 10)"),
    ({"failureFactor": 30}, "locks after 30 failed logins (limit 10)"),      # Keycloak's default
    ({"failureFactor": 1000000}, "locks after 1000000 failed logins (limit 10)"),
    ({"failureFactor": 10}, None), ({"failureFactor": None}, None),
    ({"failureFactor": 1000000, "bruteForceProtected": False}, None),
])
def test_a_lockout_after_more_failures_than_the_limit_is_a_finding(realm, message):
    assert findings(answers(realm=realm)).get(("SSO-BF-003", "edge")) == message
