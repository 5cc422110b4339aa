"""The lab Keycloak's realms, clients and users, set up through the admin API, with planted problems.

Three realms (``REALMS``): ``city`` (the clean one: federated to the lab slapd over StartTLS, strong
settings, an administrator with OTP; its only finding is the joiner/leaver one, ``sw-leaver``,
disabled in slapd and imported into Keycloak), ``partners`` and ``legacy`` (one planted problem of
every SSO rule, each next to a clean counterpart). ``EXPECTED`` is the exact set of findings
(rule id, subject) ``citydc audit sso`` must report; tests/lab/test_sso_audit.py checks it both
ways (precision and recall). ``citydc-audit`` in master is the audit's service account with the
least roles: view-realm, view-users, view-clients, view-events of each audited realm, and view-users of
master (``master-realm``), so ``citydc audit auth`` names the administrators acting in admin events.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from citydc.lab import ports, slapd_data
from citydc.lab.base import LabContext, LabError

__all__ = ["AUDIT_CLIENT", "AUDIT_ROLES", "BATCH_CLIENT", "BATCH_SECRET", "EXPECTED", "REALMS", "admin_token",
           "setup"]

AUDIT_CLIENT = "citydc-audit"
AUDIT_ROLES = ("view-realm", "view-users", "view-clients", "view-events")
BATCH_CLIENT = "city-batch"  # confidential, direct access grants: the tests log in through its token endpoint
BATCH_SECRET = "citydc-lab-city-batch-secret"  # noqa: S105 - lab credential
LOCAL_PASSWORD = "citydc-lab-Local-pass-2026"  # noqa: S105 - lab credential of the realms' local users
REALMS = ("city", "partners", "legacy")
DAY = 86400
# An OTP credential as realm import accepts it (the lab's administrators with a second factor).
_OTP = {"type": "otp", "userLabel": "lab token",
        "secretData": json.dumps({"value": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"}),
        "credentialData": json.dumps({"subType": "totp", "digits": 6, "counter": 0, "period": 30,
                                      "algorithm": "HmacSHA1"})}

EXPECTED: set[tuple[str, str]] = {
    ("SSO-JML-001", "city/user:sw-leaver"),          # federated, disabled in slapd (ppolicy lock)
    # Keycloak imports a federated directory's users when they are listed (the audit lists them): the
    # other disabled slapd account becomes an enabled Keycloak user too. A real leaver finding.
    ("SSO-JML-001", "city/user:sw-retired"),
    ("SSO-BF-001", "partners"),
    ("SSO-PWD-001", "partners"),
    ("SSO-EVT-002", "partners"),
    ("SSO-ADM-002", "partners"),
    ("SSO-TOK-001", "partners"),
    ("SSO-CLI-001", "partners/client:vendor-portal"),
    ("SSO-CLI-002", "partners/client:vendor-legacy-app"),
    ("SSO-CLI-003", "partners/client:vendor-mobile"),
    ("SSO-MFA-001", "partners/user:partner-admin"),
    ("SSO-EVT-001", "legacy"),
    ("SSO-BF-002", "legacy"),
    ("SSO-BF-003", "legacy"),
    ("SSO-ADM-001", "legacy"),
    ("SSO-TOK-002", "legacy"),
    ("SSO-LDAP-001", "legacy/ldap:legacy-directory"),
    ("SSO-JML-001", "legacy/user:sw-retired"),       # local user named like a disabled directory account
    ("SSO-MFA-001", "legacy/user:legacy-root"),
}

# Settings every realm starts from: all of them pass the rules.
_GOOD = {"enabled": True, "bruteForceProtected": True, "failureFactor": 10, "permanentLockout": False,
         "passwordPolicy": "length(12) and notUsername(undefined) and digits(1)",
         "eventsEnabled": True, "eventsExpiration": 180 * DAY, "adminEventsEnabled": True,
         "adminEventsDetailsEnabled": False, "accessTokenLifespan": 300, "ssoSessionIdleTimeout": 1800,
         "ssoSessionMaxLifespan": 36000}


def _client(client_id: str, **kw: Any) -> dict[str, Any]:
    rep = {"clientId": client_id, "enabled": True, "protocol": "openid-connect", "publicClient": False,
           "standardFlowEnabled": True, "directAccessGrantsEnabled": False, "redirectUris": []}
    rep.update(kw)
    return rep


def _user(username: str, *, otp: bool = False, realm_roles: tuple[str, ...] = (),
          client_roles: dict[str, list[str]] | None = None) -> dict[str, Any]:
    creds = [{"type": "password", "value": LOCAL_PASSWORD, "temporary": False}]
    if otp:
        creds.append(_OTP)
    return {"username": username, "enabled": True, "email": f"{username}@city.example", "emailVerified": True,
            "firstName": username, "lastName": "Lab", "credentials": creds, "realmRoles": list(realm_roles),
            "clientRoles": client_roles or {}}


def realm_reps() -> list[dict[str, Any]]:
    """Return the three realms as RealmRepresentation dicts (clients, roles and local users inline)."""
    admin_role = {"roles": {"realm": [{"name": "admin", "description": "city applications administrator"}]}}
    city = {**_GOOD, "realm": "city", "displayName": "City staff", **admin_role,
            "clients": [
                _client("city-portal", secret="citydc-lab-portal-secret",  # noqa: S106 - lab
                        redirectUris=["https://portal.city.example/callback"]),
                _client("city-gis", publicClient=True, redirectUris=["https://gis.city.example/*"]),  # prefix: ok
                _client("city-cli", publicClient=True, redirectUris=["http://127.0.0.1:8765/callback"]),  # RFC 8252
                _client(BATCH_CLIENT, secret=BATCH_SECRET, directAccessGrantsEnabled=True,  # confidential: ok
                        standardFlowEnabled=False)],
            "users": [_user("city-admin", otp=True, realm_roles=("admin",),
                            client_roles={"realm-management": ["realm-admin"]})]}
    partners = {**_GOOD, "realm": "partners", "displayName": "Partner agencies", **admin_role,
                "bruteForceProtected": False,                      # SSO-BF-001
                "passwordPolicy": "length(6)",                     # SSO-PWD-001
                "eventsExpiration": 1 * DAY,                       # SSO-EVT-002
                "adminEventsDetailsEnabled": True,                 # SSO-ADM-002
                "accessTokenLifespan": 3600,                       # SSO-TOK-001
                "clients": [
                    _client("vendor-portal", secret="lab-vendor-secret", redirectUris=["*"]),  # noqa: S106
                    _client("vendor-legacy-app", secret="lab-legacy-secret",  # noqa: S106
                            redirectUris=["http://vendor.partner.example/cb"]),
                    _client("vendor-mobile", publicClient=True, directAccessGrantsEnabled=True,
                            redirectUris=["https://mobile.partner.example/cb"]),
                    _client("partner-portal", secret="lab-partner-secret",  # noqa: S106 - the clean one
                            redirectUris=["https://partners.city.example/oidc/callback"])],
                "users": [_user("partner-admin", realm_roles=("admin",)),
                          _user("partner-admin-ok", otp=True, realm_roles=("admin",)),
                          _user("partner-clerk")]}
    legacy = {**_GOOD, "realm": "legacy", "displayName": "Legacy applications",
              "eventsEnabled": False,                              # SSO-EVT-001
              "waitIncrementSeconds": 0,                           # SSO-BF-002 (temporary lockout of 0 s)
              "failureFactor": 30,                                 # SSO-BF-003 (Keycloak's default)
              "adminEventsEnabled": False,                         # SSO-ADM-001
              "ssoSessionIdleTimeout": 86400, "ssoSessionMaxLifespan": 7 * DAY,  # SSO-TOK-002
              "clients": [_client("legacy-erp", secret="lab-erp-secret",  # noqa: S106
                                  redirectUris=["https://erp.city.example/sso/return"])],
              "users": [_user("legacy-root", client_roles={"realm-management": ["realm-admin"]}),
                        _user("legacy-ops", otp=True, client_roles={"realm-management": ["realm-admin"]}),
                        _user("sw-retired"),                         # SSO-JML-001 (local, disabled in slapd)
                        _user("fs-clerk-local")]}                    # local, not in the directory: not a leaver
    return [city, partners, legacy]


def ldap_component(name: str, url: str, *, start_tls: bool, users_dn: str, bind_password: str) -> dict[str, Any]:
    """Return the user-storage component of a read-only LDAP federation to the lab slapd."""
    from citydc.lab.slapd import AUDITOR_DN

    conf = {"vendor": "other", "connectionUrl": url, "startTls": str(start_tls).lower(), "bindType": "simple",
            "bindDn": AUDITOR_DN, "bindCredential": bind_password, "usersDn": users_dn,
            "usernameLDAPAttribute": "uid", "rdnLDAPAttribute": "uid", "uuidLDAPAttribute": "entryUUID",
            "userObjectClasses": "inetOrgPerson, posixAccount", "searchScope": "2", "editMode": "READ_ONLY",
            "importEnabled": "true", "syncRegistrations": "false", "pagination": "true", "enabled": "true",
            "useTruststoreSpi": "always", "connectionPooling": "false", "authType": "simple",
            "trustEmail": "false", "validatePasswordPolicy": "false", "cachePolicy": "NO_CACHE"}
    return {"name": name, "providerId": "ldap", "providerType": "org.keycloak.storage.UserStorageProvider",
            "config": {k: [v] for k, v in conf.items()}}


def admin_token(url: str, user: str, password: str) -> str:
    resp = httpx.post(f"{url}/realms/master/protocol/openid-connect/token", timeout=30,
                      data={"grant_type": "password", "client_id": "admin-cli", "username": user,
                            "password": password})
    if resp.status_code != 200:
        raise LabError(f"keycloak: admin token refused: HTTP {resp.status_code} {resp.text[:200]}")
    return resp.json()["access_token"]


class Admin:
    """A few admin API calls with the bootstrap admin's token (lab setup and tests)."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.http = httpx.Client(base_url=f"{url}/admin/realms", timeout=60,
                                 headers={"Authorization": f"Bearer {admin_token(url, user, password)}"})

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        resp = self.http.request(method, path, **kw)
        if resp.status_code >= 400:
            raise LabError(f"keycloak: {method} {path}: HTTP {resp.status_code} {resp.text[:300]}")
        return resp

    def one(self, path: str, **params: Any) -> dict[str, Any]:
        found = self.call("GET", path, params=params).json()
        if not found:
            raise LabError(f"keycloak: GET {path} {params}: nothing found")
        return found[0]

    def client_uuid(self, realm: str, client_id: str) -> str:
        return self.one(f"/{realm}/clients", clientId=client_id)["id"]

    def user_id(self, realm: str, username: str) -> str:
        return self.one(f"/{realm}/users", username=username, exact="true")["id"]

    def grant_client_roles(self, realm: str, user_id: str, client_id: str, roles: list[str]) -> None:
        cid = self.client_uuid(realm, client_id)
        reps = [self.call("GET", f"/{realm}/clients/{cid}/roles/{r}").json() for r in roles]
        self.call("POST", f"/{realm}/users/{user_id}/role-mappings/clients/{cid}", json=reps)


def setup(url: str, user: str, password: str, slapd: Any, ctx: LabContext) -> None:
    """Given Keycloak's URL, the bootstrap admin and the lab slapd, create the realms (idempotent per start)."""
    admin = Admin(url, user, password)
    existing = {r["realm"] for r in admin.call("GET", "").json()}
    bind_pw = ports.LAB_ENV["CITYDC_LDAP_PASSWORD"]
    for rep in realm_reps():
        if rep["realm"] in existing:
            continue
        admin.call("POST", "", json=rep)
    # Federations: the city's over StartTLS (CA in the truststore); legacy's in clear, fengshan only.
    base = slapd_data.BASE_DN
    admin.call("POST", "/city/components", json=ldap_component(
        "city-directory", slapd.url(), start_tls=True, users_dn=base, bind_password=bind_pw))
    admin.call("POST", "/legacy/components", json=ldap_component(
        "legacy-directory", slapd.url(), start_tls=False, users_dn=f"ou=fengshan,{base}", bind_password=bind_pw))
    # The federated leaver: imported into Keycloak by a look-up (Keycloak imports on first sight).
    found = admin.call("GET", "/city/users", params={"username": "sw-leaver", "exact": "true"}).json()
    if not found:
        raise LabError("keycloak: the city realm's LDAP federation did not import sw-leaver from slapd "
                       f"(see {ctx.root / 'keycloak'}/*.log)")
    # The audit's service account in master: the view roles of each audited realm, nothing else.
    admin.call("POST", "/master/clients", json=_client(
        AUDIT_CLIENT, secret=ports.LAB_ENV["CITYDC_KEYCLOAK_SECRET"], standardFlowEnabled=False,
        serviceAccountsEnabled=True))
    sa = admin.call("GET", f"/master/clients/{admin.client_uuid('master', AUDIT_CLIENT)}/service-account-user").json()
    for realm in REALMS:
        admin.grant_client_roles("master", sa["id"], f"{realm}-realm", list(AUDIT_ROLES))
    # Optional, to name the acting administrator of admin events (they log in to master).
    admin.grant_client_roles("master", sa["id"], "master-realm", ["view-users"])
