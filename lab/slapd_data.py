"""The lab directory's content: both sites' users and groups, with the planted problems.

The planted problems are data (``lab-data/ldap-planted.json``): the accounts, policies and
privileged groups to plant, the approved baseline of those groups, and the exact findings the
audit must report (tests read ``expected``). Everything else is generated clean: a strong salted
hash, a recent bind and password change, the default policy, unique uid / uidNumber / mail.
Deterministic for a given seed and clock; standard library only (it also feeds the 100k benchmark).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

__all__ = ["BASE_DN", "LDAP_USER_PASSWORD", "SITES", "DirectorySpec", "expected_findings", "ldif", "planted"]

BASE_DN = "dc=city,dc=example"
SITES = {"siwei": "sw", "fengshan": "fs"}
# Lab-only password of every generated (clean) user, so the auth tests can bind as them.
LDAP_USER_PASSWORD = "citydc-lab-user-pass"  # noqa: S105 - lab data, not a secret of any real system
FIRST_UID_NUMBER = 20000
# Admin accounts that exist in both sites (privileged group members in the planted data).
ADMINS = ("admin1", "admin2", "admin3")


def planted() -> dict[str, Any]:
    """Return the planted-problem data (``lab-data/ldap-planted.json``) with ``{base}`` filled in."""
    text = resources.files("citydc.lab").joinpath("lab-data/ldap-planted.json").read_text(encoding="utf-8")
    return json.loads(text.replace("{base}", BASE_DN))


def expected_findings(server: str) -> set[tuple[str, str]]:
    """Given the audited server URL, return the planted set as {(rule id, subject)}."""
    return {(e["rule"], e["subject"].replace("{server}", server)) for e in planted()["expected"]}


@dataclass(frozen=True)
class DirectorySpec:
    users_per_site: int = 60
    seed: int = 42
    with_plants: bool = True


def gtime(t: datetime) -> str:
    """Given an aware datetime, return LDAP GeneralizedTime (``20261204174500Z``)."""
    return t.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def ssha(password: str, salt: bytes) -> str:
    """Given a password and salt, return its ``{SSHA}`` value (salted SHA-1, slapd's default scheme)."""
    digest = hashlib.sha1(password.encode() + salt, usedforsecurity=False).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _entry(dn: str, attrs: list[tuple[str, str]]) -> str:
    lines = [f"dn: {dn}"]
    for name, value in attrs:
        if value.isascii() and value.isprintable() and not value.startswith((" ", ":", "<")):
            lines.append(f"{name}: {value}")
        else:
            lines.append(f"{name}:: {base64.b64encode(value.encode()).decode()}")
    return "\n".join(lines) + "\n\n"


def _ou(name: str, parent: str) -> str:
    return _entry(f"ou={name},{parent}", [("objectClass", "organizationalUnit"), ("ou", name)])


def _policy(p: dict[str, Any]) -> str:
    attrs = [("objectClass", "device"), ("objectClass", "pwdPolicy"), ("cn", p["cn"]),
             ("pwdAttribute", "userPassword")]
    for key, value in p.items():
        if key != "cn":
            attrs.append((key, ("TRUE" if value else "FALSE") if isinstance(value, bool) else str(value)))
    return _entry(f"cn={p['cn']},ou=policies,{BASE_DN}", attrs)


def _account(spec: dict[str, Any], uid_number: int, now: datetime, rng: random.Random) -> str:
    uid, site = spec["uid"], spec["site"]
    given, family = uid.split("-", 1) if "-" in uid else (uid.split(".")[0], uid.split(".")[-1])
    dn = f"uid={uid},ou=people,ou={site},{BASE_DN}"
    days = timedelta(days=1)
    password = spec.get("userPassword") or ssha(LDAP_USER_PASSWORD, rng.randbytes(8))
    attrs = [("objectClass", "inetOrgPerson"), ("objectClass", "posixAccount"),
             ("cn", f"{given} {family}"), ("sn", family), ("givenName", given), ("uid", uid),
             ("uidNumber", str(spec.get("uidNumber", uid_number))),
             ("gidNumber", "10000" if site == "siwei" else "10001"),
             ("homeDirectory", f"/home/{site}/{uid}"), ("mail", spec.get("mail", f"{uid}@{site}.city.example")),
             ("userPassword", password)]
    disabled = spec.get("disabled", False)
    attrs.append(("loginShell", "/usr/sbin/nologin" if disabled else "/bin/bash"))
    created = now - days * spec.get("created_days_ago", 400 + rng.randint(0, 300))
    attrs.append(("createTimestamp", gtime(created)))
    changed = spec.get("pwd_changed_days_ago", rng.randint(1, 200))
    attrs.append(("pwdChangedTime", gtime(now - days * changed - timedelta(seconds=rng.randint(0, 86_000)))))
    last = spec.get("last_bind_days_ago", rng.randint(0, 20))
    if last is not None:
        attrs.append(("pwdLastSuccess", gtime(now - days * last - timedelta(seconds=rng.randint(0, 86_000)))))
    if disabled:  # ppolicy's administrative lock: the account is disabled until an admin removes it
        attrs.append(("pwdAccountLockedTime", "000001010000Z"))
    if spec.get("policy"):
        attrs.append(("pwdPolicySubentry", spec["policy"]))
    return _entry(dn, attrs)


def ldif(spec: DirectorySpec, now: datetime, auditor_hash: str) -> Iterator[str]:
    """Given the spec, the lab clock and the auditor's password hash, yield the LDIF of the directory.

    The auditor (``cn=auditor,ou=system``) is the audit's read-only service account.
    """
    rng = random.Random(spec.seed)  # noqa: S311 - generated data, not security
    data = planted()
    yield _entry(BASE_DN, [("objectClass", "dcObject"), ("objectClass", "organization"), ("dc", "city"),
                           ("o", "City Data Centre")])
    for ou in ("system", "policies", "groups"):
        yield _ou(ou, BASE_DN)
    yield _entry(f"cn=auditor,ou=system,{BASE_DN}", [
        ("objectClass", "organizationalRole"), ("objectClass", "simpleSecurityObject"), ("cn", "auditor"),
        ("description", "citydc directory audit (read-only)"), ("userPassword", auditor_hash)])
    policies = data["policies"] if spec.with_plants else data["policies"][:1]
    for p in policies:
        yield _policy(p)
    uid_number = FIRST_UID_NUMBER
    members: dict[str, list[str]] = {site: [] for site in SITES}
    for site, prefix in SITES.items():
        yield _ou(site, BASE_DN)
        yield _ou("people", f"ou={site},{BASE_DN}")
        yield _ou("groups", f"ou={site},{BASE_DN}")
        clean = [{"uid": f"{prefix}-{a}", "site": site} for a in ADMINS]
        clean += [{"uid": f"{prefix}-u{i:06d}", "site": site} for i in range(spec.users_per_site)]
        if spec.with_plants:
            clean += [a for a in data["accounts"] if a["site"] == site]
        for acct in clean:
            uid_number += 1
            members[site].append(acct["uid"])
            yield _account(acct, uid_number, now, rng)
    for site, uids in members.items():
        attrs = [("objectClass", "posixGroup"), ("cn", f"{site}-staff"),
                 ("gidNumber", "10000" if site == "siwei" else "10001")]
        attrs += [("memberUid", u) for u in uids]
        yield _entry(f"cn={site}-staff,ou=groups,ou={site},{BASE_DN}", attrs)
    for group, dns in privileged_groups(spec).items():
        yield _entry(f"cn={group},ou=groups,{BASE_DN}",
                     [("objectClass", "groupOfNames"), ("cn", group)] + [("member", dn) for dn in dns])


def privileged_groups(spec: DirectorySpec) -> dict[str, list[str]]:
    """Given the spec, return {group cn: member DNs} as in the directory (the baseline when unplanted)."""
    data = planted()
    return data["privileged_groups"] if spec.with_plants else data["baseline"]


def baseline(spec: DirectorySpec) -> dict[str, list[str]]:
    """Return the approved membership of the privileged groups: {group DN: member DNs}."""
    data = planted()
    groups = data["baseline"] if spec.with_plants else privileged_groups(spec)
    return {f"cn={g},ou=groups,{BASE_DN}": list(m) for g, m in groups.items()}


def lab_now() -> datetime:
    return datetime.now(UTC)
