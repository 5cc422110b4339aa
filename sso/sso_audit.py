"""One audit of one Keycloak source: read each realm through the admin API, run the SSO rules,
compare users with the directory (joiner/leaver), apply accepted risks, score.

The run has the directory audit's shape (``ldap_audit.AuditRun``: accepted risks, posture score,
saved runs, ``audit diff``, reports), with ``kind: sso``: ``accounts`` counts Keycloak users,
``policies`` the realms and ``groups`` the clients read.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from citydc.config.models import KeycloakSource, LdapSource
from citydc.sso import files
from citydc.sso.bulk_search import DirectoryError
from citydc.sso.keycloak import ApiShapeError, Keycloak, KeycloakError, field, need_list, need_map
from citydc.sso.ldap_audit import AuditRun, _sorted, posture_score
from citydc.sso.model import ADMIN_LOCK
from citydc.sso.rules import norm_dn
from citydc.sso.sso_rules import (
    AdminUser,
    Client,
    JmlCase,
    LdapFederation,
    RealmData,
    RealmSettings,
    check_realm,
)

__all__ = ["DirectoryView", "jml_cases", "read_realm", "run_sso_audit"]

TZ = ZoneInfo("Asia/Taipei")
USER_STORAGE = "org.keycloak.storage.UserStorageProvider"


@dataclass
class DirectoryView:
    """What the joiner/leaver check needs from the directory: every account's DN, uid and lock."""

    by_dn: dict[str, bool]  # norm DN -> disabled
    by_uid: dict[str, list[bool]]  # lowercase uid -> disabled flags of the accounts with that uid

    @classmethod
    def read(cls, src: LdapSource, password: str, ca_file: Path | None) -> DirectoryView:
        from citydc.sso.directory import Directory

        by_dn: dict[str, bool] = {}
        by_uid: dict[str, list[bool]] = {}
        with Directory(src, password, ca_file=ca_file) as d:
            for dn, attrs in d.search(src.base_dn, src.account_filter, ["uid", "pwdAccountLockedTime"]):
                disabled = (attrs.get("pwdaccountlockedtime") or [None])[0] == ADMIN_LOCK
                by_dn[norm_dn(dn)] = disabled
                for uid in attrs.get("uid", []):
                    by_uid.setdefault(uid.lower(), []).append(disabled)
        return cls(by_dn, by_uid)


def _attr(user: Mapping[str, Any], name: str, where: str) -> str | None:
    attrs = field(user, "attributes", Mapping, where, {})
    v = attrs.get(name)
    if v is None or v == []:
        return None
    if not isinstance(v, list) or not isinstance(v[0], str):
        raise ApiShapeError(f"{where}.attributes.{name}: expected a list of strings, got {type(v).__name__}")
    return v[0]


def jml_cases(users: list[Mapping[str, Any]], directory: DirectoryView, realm: str) -> list[JmlCase]:
    """Given Keycloak users (full representations), return those enabled in Keycloak but leavers in LDAP.

    A federated user (``federationLink``) is looked up by its ``LDAP_ENTRY_DN``: missing or disabled
    there is a finding. A local user is compared by username with the directory's uid: a finding
    only when every directory account with that uid is disabled (local service users that were never
    in the directory are not leavers).
    """
    out = []
    for i, u in enumerate(users):
        where = f"realm {realm} users[{i}]"
        name = field(u, "username", str, where)
        if not field(u, "enabled", bool, where, True):
            continue
        if field(u, "federationLink", str, where, None):
            dn = _attr(u, "LDAP_ENTRY_DN", where)
            if dn is None:
                continue
            disabled = directory.by_dn.get(norm_dn(dn))
            if disabled is None:
                out.append(JmlCase(name, dn, "missing in LDAP", True))
            elif disabled:
                out.append(JmlCase(name, dn, "disabled in LDAP", True))
        else:
            flags = directory.by_uid.get(name.lower())
            if flags and all(flags):
                out.append(JmlCase(name, None, "disabled in LDAP", False))
    return out


SERVICE_ACCOUNT_PREFIX = "service-account-"  # Keycloak names a client's service-account user so (lowercase)


def _service_accounts(clients: list[Client]) -> set[str]:
    """Given a realm's clients, return the usernames of their service accounts."""
    return {(SERVICE_ACCOUNT_PREFIX + c.client_id).lower() for c in clients if c.service_account}


def _admins(kc: Keycloak, realm: str, clients: list[Mapping[str, Any]], roles: list[str], *,
            service_accounts: set[str], page: int = 500) -> list[AdminUser]:
    """Return the users who can log in and hold an admin role directly (realm role, or realm-management client
    role). A disabled user cannot log in, and a service account logs in with its client's secret, never a
    password and a second factor: neither is an administrator without OTP."""
    held: dict[str, tuple[list[str], bool]] = {}
    r = quote(realm, safe="")

    def add(users: Any, role: str) -> None:
        for j, u in enumerate(users):
            where = f"realm {realm} role {role} users[{j}]"
            name = field(u, "username", str, where)
            otp = field(u, "totp", bool, where, False)
            if not field(u, "enabled", bool, where, True) or name.lower() in service_accounts:
                continue
            entry = held.setdefault(name, ([], otp))
            entry[0].append(role)

    realm_roles = {field(need_map(x, f"realm {realm} roles"), "name", str, f"realm {realm} roles")
                   for x in need_list(kc.get(f"{r}/roles"), f"realm {realm} roles")}
    for role in roles:
        if role in realm_roles:
            add(kc.paged(f"{r}/roles/{quote(role, safe='')}/users", {"briefRepresentation": "false"}, page,
                         f"realm {realm} role {role} users"), role)
    mgmt = next((c for c in clients if c.get("clientId") == "realm-management"), None)
    if mgmt is not None:
        cid = quote(field(mgmt, "id", str, f"realm {realm} client realm-management"), safe="")
        names = {field(need_map(x, "client roles"), "name", str, f"realm {realm} realm-management roles")
                 for x in need_list(kc.get(f"{r}/clients/{cid}/roles"), f"realm {realm} realm-management roles")}
        for role in roles:
            if role in names:
                add(kc.paged(f"{r}/clients/{cid}/roles/{quote(role, safe='')}/users", {"briefRepresentation": "false"},
                             page, f"realm {realm} realm-management role {role} users"), f"realm-management/{role}")
    return [AdminUser(n, tuple(roles_), otp) for n, (roles_, otp) in sorted(held.items())]


def read_realm(kc: Keycloak, realm: str, src: KeycloakSource, directory: DirectoryView | None) -> RealmData:
    """Given a client, a realm name, the source and the directory view (None: no JML check), read the realm."""
    settings = RealmSettings.from_api(kc.realm(realm))
    raw_clients = kc.clients(realm)
    data = RealmData(settings, [Client.from_api(c, f"realm {realm} clients[{i}]") for i, c in enumerate(raw_clients)])
    for i, comp in enumerate(kc.components(realm, USER_STORAGE)):
        fed = LdapFederation.from_api(comp, f"realm {realm} components[{i}]")
        if fed is not None:
            data.ldap.append(fed)
    data.admins = _admins(kc, realm, raw_clients, src.rules.admin_roles,
                          service_accounts=_service_accounts(data.clients), page=src.page_size)
    users = list(kc.users(realm, src.page_size))
    data.users = len(users)
    if directory is not None:
        data.jml = jml_cases(users, directory, realm)
    return data


def run_sso_audit(src: KeycloakSource, secret: str, *, resolve: Callable[[Path], Path] = lambda p: p,
                  ldap: tuple[LdapSource, str] | None = None, now: datetime | None = None,
                  today: date | None = None, transport: Any = None) -> AuditRun:
    """Given a Keycloak source, its client secret and optionally (ldap source, bind password), audit it.

    Raise files.FileInvalid for a bad accepted-risk file, KeycloakError (ApiShapeError included) when
    Keycloak cannot be read. A directory of the JML check that cannot be read leaves that rule out: named in
    ``run.unchecked`` (and the notes), every other rule runs.
    """
    started = time.monotonic()
    now = now or datetime.now(UTC)
    today = today or now.astimezone(TZ).date()
    acceptances = files.load_accepted(resolve(src.accepted_risk_file)) if src.accepted_risk_file else []
    run = AuditRun(src.name, src.site, src.base_url, uuid.uuid4().hex, now)
    directory = None
    if ldap is not None:
        lsrc, password = ldap
        try:
            directory = DirectoryView.read(lsrc, password, resolve(lsrc.ca_file) if lsrc.ca_file else None)
        except DirectoryError as exc:
            # The directory serves only the leaver check: the realm, client and administrator rules still run.
            run.unchecked.append(f"SSO-JML-001 not checked: directory {lsrc.name} unreachable ({exc})")
            run.notes.append(run.unchecked[-1])
    else:
        run.notes.append("no ldap_source: the joiner/leaver check (SSO-JML-001) did not run")
    findings = []
    ca = resolve(src.ca_file) if src.ca_file else None
    with Keycloak(src.base_url, src.client_id, secret, auth_realm=src.auth_realm or "master", ca_file=ca,
                  timeout=src.timeout_seconds, transport=transport) as kc:
        for realm in src.realms:
            data = read_realm(kc, realm, src, directory)
            run.accounts += data.users
            run.groups += len(data.clients)
            findings.extend(check_realm(data, src.rules))
    run.policies = len(src.realms)
    applied = files.apply_acceptances(findings, acceptances, today)
    run.findings = _sorted(applied.active)
    run.accepted, run.expired, run.unused_acceptances = applied.accepted, applied.expired, applied.unused
    for _, a in applied.expired:
        run.notes.append(f"acceptance of {a.rule} for {a.subject} expired on {a.expires}: the finding is back")
    run.score = posture_score(run.findings)
    run.duration_seconds = time.monotonic() - started
    return run


def result_json(run: AuditRun) -> dict[str, Any]:
    """Given a run, return its JSON with ``kind: sso`` (reports and diff tell the two audits apart)."""
    return {**run.to_json(), "kind": "sso"}


__all__ += ["KeycloakError", "result_json"]
