"""``citydc audit auth`` against the lab's slapd: the test makes real binds (ldap3, as a client would), then the
real command reads slapd's stats log, records ECS bind events and detects brute force, spraying, success after
failures and privileged logins outside working hours."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from citydc.lab import ports, slapd_data
from citydc.lab.slapd import try_bind
from citydc.seclog.spool import Spool

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
BASE = slapd_data.BASE_DN


def dn(uid: str, site: str = "siwei") -> str:
    return f"uid={uid},ou=people,ou={site},{BASE}"


# The detections fire once per burst (10 minutes here): on a lab reused within that time, the test's
# client address and accounts must be new, or the alerts of the previous run cover this run's attempts.
CLIENT = f"127.0.0.{random.randint(100, 199)}"


def bind(user: str, password: str) -> bool:
    return try_bind(user, password, CLIENT)


@pytest.fixture(scope="module")
def slapd(lab_up, lab_env) -> dict[str, str]:
    (status,) = lab_up("slapd")
    assert status.running
    return status.endpoints


def off_hours_now() -> str:
    """Working hours of one hour, twelve hours away from now in Taipei: now is outside them."""
    h = (datetime.now(UTC).astimezone(ZoneInfo("Asia/Taipei")).hour + 12) % 24
    return f"{h:02d}:00-{h:02d}:59"


def config(d: Path, slapd: dict[str, str]) -> Path:
    src = {"name": "city", "url": f"ldap://{ports.HOST}:{ports.SLAPD}", "bind_dn": slapd["bind_dn"],
           "bind_password": "env:CITYDC_LDAP_PASSWORD", "base_dn": BASE, "ca_file": slapd["ca_file"], "site": "siwei",
           "baseline_file": slapd["baseline"], "stats_log": slapd["stats_log"], "state_dir": str(d / "state"),
           "auth": {"working_hours": off_hours_now(),
                    "working_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}}
    cfg = {"sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
           "security_log": {"spool_dir": str(d / "spool")}, "ldap": [src]}
    path = d / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def audit_auth(cfg: Path) -> tuple[int, dict]:
    proc = subprocess.run([CITYDC, "--config", str(cfg), "audit", "auth", "--json"], capture_output=True, text=True,
                          timeout=120, env=os.environ)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)["sources"][0]


def kinds(report: dict) -> set[tuple[str, tuple[str, ...]]]:
    return {(d["action"], tuple(d["users"])) for d in report["detections"]}


def test_detections_from_real_binds(slapd, tmp_path):
    cfg = config(tmp_path, slapd)
    audit_auth(cfg)  # consume what earlier tests left in the log; from here on only this test's binds count
    pw = slapd_data.LDAP_USER_PASSWORD
    # slapd locks an account for 15 minutes after 5 failures (the lab's ppolicy): the brute-forced account of
    # a rerun comes from its own range, never one that must log in.  (sw 43-59, fs 40-59: test_sso_events.)
    brute = dn(f"sw-u{random.randrange(20):06d}")
    lucky, plain = (dn(f"sw-u{i:06d}") for i in random.sample(range(20, 40), 2))
    admin = dn("sw-admin1")

    # Brute force on one account; three failures then a success on another; an admin and a user log in.
    for _ in range(6):
        assert not bind(brute, "guess-1234")
    for _ in range(3):
        assert not bind(lucky, "guess-1234")
    assert bind(lucky, pw)
    assert bind(admin, pw)
    assert bind(plain, pw)
    rc, rep = audit_auth(cfg)
    assert rc == 1
    assert rep["failure"] == 9 and rep["success"] == 3
    assert kinds(rep) == {("auth-bruteforce", (brute,)), ("auth-success-after-failures", (lucky,)),
                          ("auth-offhours-privileged", (admin,))}
    assert all(d["source_ip"] == CLIENT for d in rep["detections"])

    # Password spraying: one guess each for twelve accounts from the same address.
    sprayed_uids = [f"fs-u{i:06d}" for i in random.sample(range(40), 12)]
    sprayed = [dn(uid, "fengshan") for uid in sprayed_uids]
    for user in sprayed:
        assert not bind(user, "Spring2026!")
    rc, rep = audit_auth(cfg)
    assert rc == 1 and rep["failure"] == 12
    (spray,) = rep["detections"]
    assert spray["action"] == "auth-spraying" and spray["source_ip"] == CLIENT
    # The alert names the accounts that had failed from that address when the threshold was reached.
    # Accounts by their uid, the name one account has in the directory's binds and in Keycloak's logins.
    assert len(spray["users"]) >= 10 and len(set(spray["users"]) & set(sprayed_uids)) >= 6

    # Resumed: nothing new, nothing read twice, nothing detected.
    rc, rep = audit_auth(cfg)
    assert (rc, rep["binds"], rep["detections"]) == (0, 0, [])
    assert stat.S_IMODE((tmp_path / "state" / "city" / "authlog.json").stat().st_mode) == 0o600

    # The events: one ldap-bind per bind with user, source address and outcome; the alerts.
    # (The spool also holds what the first run consumed: earlier runs on a reused lab.)
    evs = [e for e in Spool(tmp_path / "spool").read(None, 100_000).events if e.get("source", {}).get("ip") == CLIENT]
    binds = [e for e in evs if e["event"]["action"] == "ldap-bind" and e.get("user", {}).get("name") == brute]
    assert len(binds) == 6
    assert {(e["event"]["outcome"], e["source"]["ip"], e["event"]["category"][0]) for e in binds} == {
        ("failure", CLIENT, "authentication")}
    ok = [e for e in evs if e["event"]["action"] == "ldap-bind" and e.get("user", {}).get("name") == lucky
          and e["event"]["outcome"] == "success"]
    assert len(ok) == 1
    bf = [e for e in evs if e["event"]["action"] == "auth-bruteforce" and e.get("user", {}).get("name") == brute]
    assert len(bf) == 1 and bf[0]["event"]["kind"] == "alert" and bf[0]["source"]["ip"] == CLIENT
    spray_evs = [e for e in evs
                 if e["event"]["action"] == "auth-spraying" and e["source"]["ip"] == CLIENT]
    assert len(spray_evs) == 1
    assert pw not in json.dumps(evs)
