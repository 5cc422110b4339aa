"""``citydc audit auth`` over the lab's slapd and Keycloak together: logins through Keycloak's token endpoint
(client addresses set by X-Forwarded-For, which the lab Keycloak trusts) and direct LDAP binds from other
loopback addresses, read back from Keycloak's stored events and slapd's stats log into one detector.

Keycloak checks a federated user's password by binding to slapd as that user from 127.0.0.1: with
``relay_addresses: [127.0.0.1]`` those binds are recorded (``relayed``) but not counted twice."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from citydc.lab import keycloak_data, ports, slapd_data
from citydc.lab.keycloak import ADMIN_PASSWORD, ADMIN_USER
from citydc.lab.slapd import try_bind
from citydc.seclog.spool import Spool

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
BASE = slapd_data.BASE_DN
KC = f"http://{ports.HOST}:{ports.KEYCLOAK}"
PW = slapd_data.LDAP_USER_PASSWORD
# Client addresses new on each run: the detector fires once per address (spraying) and burst, so on a lab
# reused within ten minutes the last run's alerts would cover this run's attempts.
_NET = f"127.0.{random.randint(1, 250)}"
SPRAYER, BRUTE, LUCKY = f"{_NET}.77", f"{_NET}.78", f"{_NET}.79"
# Keycloak's brute-force protection locks an account for a minute after two failures within a second
# (quickLoginCheckMilliSeconds): failures of one account are spaced wider than that.
SPACING = 1.2


def dn(uid: str, site: str = "siwei") -> str:
    return f"uid={uid},ou=people,ou={site},{BASE}"


def kc_login(username: str, password: str, client_ip: str) -> bool:
    resp = httpx.post(f"{KC}/realms/city/protocol/openid-connect/token", timeout=30,
                      headers={"X-Forwarded-For": client_ip},
                      data={"grant_type": "password", "client_id": keycloak_data.BATCH_CLIENT,
                            "client_secret": keycloak_data.BATCH_SECRET, "username": username, "password": password})
    assert resp.status_code in (200, 401), resp.text
    return resp.status_code == 200


@pytest.fixture(scope="module")
def slapd(keycloak, lab_up, lab_env) -> dict[str, str]:
    (status,) = lab_up("slapd")
    assert status.running
    return {**status.endpoints, "kc_json": keycloak["event_log_json"], "kc_syslog": keycloak["event_log_syslog"]}


def off_hours_now() -> str:
    h = (datetime.now(UTC).astimezone(ZoneInfo("Asia/Taipei")).hour + 12) % 24
    return f"{h:02d}:00-{h:02d}:59"


def config(d: Path, slapd: dict[str, str], relay: list[str], log: tuple[str, str] | None = None) -> Path:
    """The directory and the lab Keycloak, read through its admin API, or from its log (``log``: path, format)."""
    auth = {"working_hours": off_hours_now(), "working_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "bruteforce_failures": 4, "spraying_accounts": 6, "success_after_failures": 3,
            "relay_addresses": relay}
    ldap = {"name": "city-directory", "url": f"ldap://{ports.HOST}:{ports.SLAPD}", "bind_dn": slapd["bind_dn"],
            "bind_password": "env:CITYDC_LDAP_PASSWORD", "base_dn": BASE, "ca_file": slapd["ca_file"],
            "site": "siwei", "baseline_file": slapd["baseline"], "stats_log": slapd["stats_log"],
            "state_dir": str(d / "state"), "auth": auth}
    sso = {"kind": "keycloak", "name": "city-sso", "base_url": KC, "realms": ["city", "partners"],
           "client_id": keycloak_data.AUDIT_CLIENT, "client_secret": "env:CITYDC_KEYCLOAK_SECRET", "site": "siwei",
           "ldap_source": "city-directory", "state_dir": str(d / "state")}
    if log is not None:
        sso = {"kind": "log", "name": "city-sso-log", "log_path": log[0], "format": log[1], "site": "siwei",
               "ldap_source": "city-directory", "state_dir": str(d / "state")}
    cfg = {"sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
           "security_log": {"spool_dir": str(d / "spool")}, "ldap": [ldap], "sso": [sso]}
    path = d / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def audit_auth(cfg: Path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run([CITYDC, "--config", str(cfg), "audit", "auth", "--json", *args], capture_output=True,
                          text=True, timeout=300, env=os.environ)
    assert proc.returncode in (0, 1), proc.stderr
    (rep,) = json.loads(proc.stdout)["sources"]
    assert "errors" not in rep, rep["errors"]
    return proc.returncode, rep


def kinds(rep: dict) -> set[tuple[str, tuple[str, ...], str | None]]:
    return {(d["action"], tuple(d["users"]), d["source_ip"]) for d in rep["detections"]
            if d["action"] != "auth-spraying"}


def test_one_detector_over_directory_binds_and_sso_logins(slapd, tmp_path):
    d_relay, d_plain, d_json, d_syslog = (tmp_path / n for n in ("relay", "plain", "json", "syslog"))
    for d in (d_relay, d_plain, d_json, d_syslog):
        d.mkdir()
    cfg = config(d_relay, slapd, ["127.0.0.1"])
    control = config(d_plain, slapd, [])  # the same feeds without the relay: Keycloak's binds count twice
    # The same Keycloak read from its log (the jboss-logging listener's lines), in both shapes the lab writes.
    from_logs = [config(d_json, slapd, ["127.0.0.1"], (slapd["kc_json"], "keycloak-json")),
                 config(d_syslog, slapd, ["127.0.0.1"], (slapd["kc_syslog"], "syslog"))]
    for c in (cfg, control, *from_logs):
        audit_auth(c)  # consume what the lab holds already; from here on only this test's attempts count
    # A reused lab (CI's /tmp outlives a run) holds earlier runs' logins, perhaps of the same accounts.
    consumed = {c: len(Spool(c.parent / "spool").read(None, 100_000).events) for c in (cfg, *from_logs)}

    # Fresh accounts each run: Keycloak keeps failure counts of earlier runs on a reused lab, and the detector
    # fires once per account and burst (a rerun within ten minutes may still meet an account of the last run).
    # Ranges apart from test_ldap_auth's, and the brute-forced account apart from those that must log in
    # (slapd's ppolicy locks an account for 15 minutes after 5 failures).
    brute = f"fs-u{random.randrange(40, 60):06d}"
    lucky = f"sw-u{random.randrange(43, 52):06d}"
    kc_sprayed = [f"sw-u{i:06d}" for i in random.sample(range(52, 60), 3)]
    ldap_sprayed = [f"fs-u{i:06d}" for i in random.sample(range(40), 3)]
    admin = "sw-admin2"

    for _ in range(4):  # brute force through Keycloak from one client address
        assert not kc_login(brute, "guess-1234", BRUTE)
        time.sleep(SPACING)
    for _ in range(3):  # three failures, then the right password
        assert not kc_login(lucky, "guess-1234", LUCKY)
        time.sleep(SPACING)
    assert kc_login(lucky, PW, LUCKY)
    assert kc_login(admin, PW, LUCKY)  # privileged, outside the configured working hours
    # Spraying split across both doors from one address: three accounts at the directory, three at the SSO.
    for uid in ldap_sprayed:
        assert not try_bind(dn(uid, "fengshan"), "Spring2026!", SPRAYER)
    for uid in kc_sprayed:
        assert not kc_login(uid, "Spring2026!", SPRAYER)

    rc, rep = audit_auth(cfg)
    assert rc == 1
    c = rep["sso"]["city-sso"]
    assert (c["logins"], c["success"], c["failure"]) == (12, 2, 10)
    # Keycloak verified the ten federated passwords by binding to slapd; the direct binds are not relayed.
    assert rep["relayed"] >= 12 and rep["binds"] - rep["relayed"] == 3 and rep["failure"] == 3 + 10
    assert kinds(rep) == {("auth-bruteforce", (brute,), BRUTE),
                          ("auth-success-after-failures", (lucky,), LUCKY),
                          ("auth-offhours-privileged", (admin,), LUCKY)}
    (spray,) = [d for d in rep["detections"] if d["action"] == "auth-spraying"]
    assert spray["source_ip"] == SPRAYER
    assert set(spray["users"]) == set(ldap_sprayed) | set(kc_sprayed)  # one account, one name in both doors
    by_origin = spray["details"]["accounts_by_origin"]
    assert (by_origin["ldap"], by_origin["keycloak"]) == (3, 3)

    # Read from Keycloak's log instead of its admin API: the same logins, the same detections.
    for c_log in from_logs:
        rc, rep_log = audit_auth(c_log)
        assert rc == 1
        c = rep_log["sso"]["city-sso-log"]
        assert (c["logins"], c["success"], c["failure"], c["unreadable_lines"]) == (12, 2, 10, 0), c_log
        assert kinds(rep_log) == kinds(rep)
        (spray_log,) = [d for d in rep_log["detections"] if d["action"] == "auth-spraying"]
        assert set(spray_log["users"]) == set(spray["users"])
        assert (spray_log["source_ip"], spray_log["details"]["accounts_by_origin"]) == (SPRAYER, by_origin)
        rc, rep_log = audit_auth(c_log)
        assert (rc, rep_log["detections"], rep_log["sso"]["city-sso-log"]["logins"]) == (0, [], 0)
        logged = [e for e in Spool(c_log.parent / "spool").read(None, 100_000).events[consumed[c_log]:]
                  if e["event"]["action"] == "sso-login" and e.get("user", {}).get("name") == brute]
        assert {(e["event"]["outcome"], e["source"]["ip"]) for e in logged} == {("failure", BRUTE)}
        assert len(logged) == 4

    # The control: without the relay address, Keycloak's own binds from 127.0.0.1 are attacks too.
    rc, rep_plain = audit_auth(control)
    assert rc == 1 and rep_plain["relayed"] == 0
    # The lucky account's three failures become six, a brute force; the admin's login is reported twice.
    assert any(d["action"] == "auth-bruteforce" and lucky in d["users"][0] for d in rep_plain["detections"])
    assert sum(d["action"] == "auth-offhours-privileged" for d in rep_plain["detections"]) == 2

    # Resumed: nothing new is read twice.
    rc, rep = audit_auth(cfg)
    assert (rc, rep["binds"], rep["detections"], rep["sso"]["city-sso"]["logins"]) == (0, 0, [], 0)

    # The security log: one sso-login per Keycloak login with its client address, relayed binds marked.
    evs = Spool(d_relay / "spool").read(None, 100_000).events[consumed[cfg]:]
    logins = [e for e in evs if e["event"]["action"] == "sso-login" and e.get("user", {}).get("name") == brute]
    assert len(logins) == 4
    assert {(e["event"]["outcome"], e["source"]["ip"]) for e in logins} == {("failure", BRUTE)}
    assert PW not in json.dumps(evs)


def test_role_grant_by_an_administrator_is_an_iam_event(slapd, tmp_path):
    cfg = config(tmp_path, slapd, ["127.0.0.1"])
    audit_auth(cfg)
    consumed = len(Spool(tmp_path / "spool").read(None, 100_000).events)
    admin = keycloak_data.Admin(KC, ADMIN_USER, ADMIN_PASSWORD)
    user_id = admin.user_id("partners", "partner-clerk")
    role = admin.call("GET", "/partners/roles/offline_access").json()
    # Granted and taken back, so the realms stay as the SSO posture audit expects them.
    admin.call("POST", f"/partners/users/{user_id}/role-mappings/realm", json=[role])
    admin.call("DELETE", f"/partners/users/{user_id}/role-mappings/realm", json=[role])

    rc, rep = audit_auth(cfg)
    assert rc == 0 and rep["sso"]["city-sso"]["admin_events"] == 2  # a change, not a detection
    evs = Spool(tmp_path / "spool").read(None, 100_000).events[consumed:]
    iam = [e for e in evs if e["event"]["action"].startswith("iam-role-")]
    assert [e["event"]["action"] for e in iam] == ["iam-role-grant", "iam-role-revoke"]
    for e in iam:
        assert e["user"] == {"name": ADMIN_USER, "target": {"name": "partner-clerk"}}
        assert e["event"]["category"] == ["iam"] and e["event"]["outcome"] == "success"
        assert e["citydc"]["sso_auth"]["roles"] == ["offline_access"]
        assert e["citydc"]["sso_auth"]["realm"] == "partners"


def test_small_pages_read_what_one_page_reads_and_keycloak_is_never_asked_to_skip(slapd):
    """Against Keycloak itself: its dateFrom is inclusive and the events of the newest millisecond read come
    again at the top of the next page, so pages of 3 read the very events one page of 1,000 reads, in the
    same time order (events of one millisecond in either order), every page asked with first=0."""
    from citydc.sso.kc_events import Cursor, UserNames, read_stream
    from citydc.sso.keycloak import Keycloak

    for i in range(7):  # unknown users: LOGIN_ERROR events, and no account of another test locked
        assert not kc_login(f"nobody-{random.randrange(10**6)}-{i}", "guess", f"{_NET}.90")
    firsts: list[int] = []
    with Keycloak(KC, keycloak_data.AUDIT_CLIENT, os.environ["CITYDC_KEYCLOAK_SECRET"]) as kc:
        kc.http.event_hooks["request"].append(
            lambda req: firsts.append(int(req.url.params["first"])) if req.url.path.endswith("/events") else None)

        def read(page: int) -> list[tuple[int, str]]:
            return [(i.time_ms, i.event_id) for i in read_stream(kc, "city", "events", Cursor(), page=page,
                                                                 source="city-sso", site="siwei", names=UserNames(kc))]

        whole = read(1000)
        firsts.clear()
        paged = read(3)
    # (events of one millisecond may come in either order: compared as sets, the times as sequences)
    assert len(whole) >= 7 and sorted(paged) == sorted(whole) and [t for t, _ in paged] == [t for t, _ in whole]
    # every page from the newest millisecond read, first=0 (a first page wholly of one millisecond, which
    # cannot show the order, is stepped over with first=3 once)
    assert len(firsts) > len(whole) // 3 and sum(f != 0 for f in firsts) <= 1
