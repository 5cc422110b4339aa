"""``citydc audit sso`` against the lab's Keycloak (realms city, partners, legacy set up by lab/keycloak_data.py
through the admin API) and the lab's slapd (the joiner/leaver check)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from citydc.lab import keycloak_data, ports, slapd_data
from citydc.lab.keycloak import ADMIN_PASSWORD, ADMIN_USER
from citydc.lab.slapd import ADMIN_DN, AUDITOR_DN

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
BASE = slapd_data.BASE_DN


def write_config(d: Path, lab_ctx, **overrides) -> Path:
    slapd_dir = lab_ctx.root / "slapd"
    ldap = {"name": "city-directory", "url": f"ldap://{ports.HOST}:{ports.SLAPD}", "bind_dn": AUDITOR_DN,
            "bind_password": "env:CITYDC_LDAP_PASSWORD", "base_dn": BASE, "ca_file": str(slapd_dir / "ca.crt"),
            "site": "siwei", "state_dir": str(d / "state")}
    sso = {"kind": "keycloak", "name": "city-sso", "base_url": f"http://{ports.HOST}:{ports.KEYCLOAK}",
           "realms": list(keycloak_data.REALMS), "client_id": keycloak_data.AUDIT_CLIENT,
           "client_secret": "env:CITYDC_KEYCLOAK_SECRET", "site": "siwei", "ldap_source": "city-directory",
           "state_dir": str(d / "state")}
    sso.update(overrides)
    cfg = {"sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
           "security_log": {"spool_dir": str(d / "spool"), "sink": {"kind": "sqlite", "path": str(d / "log.db")}},
           "ldap": [ldap], "sso": [sso]}
    path = d / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def audit(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CITYDC, "--config", str(config), "audit", "sso", *args], capture_output=True, text=True,
                          timeout=300, env=os.environ)


def found(proc: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    (run,) = json.loads(proc.stdout)["runs"]
    return {(f["rule"], f["subject"]) for f in run["findings"]}


def test_every_planted_problem_is_found_and_nothing_else(keycloak, lab_env, lab_ctx, tmp_path):
    proc = audit(write_config(tmp_path, lab_ctx), "--json", "--fail-on", "none")
    assert proc.returncode == 0, proc.stderr
    got, expected = found(proc), keycloak_data.EXPECTED
    true_pos = got & expected
    precision, recall = len(true_pos) / max(1, len(got)), len(true_pos) / len(expected)
    assert (precision, recall) == (1.0, 1.0), {"missed": sorted(expected - got), "extra": sorted(got - expected)}
    # Every rule has a planted case.
    from citydc.sso.sso_rules import SSO_RULES
    assert {r for r, _ in expected} == set(SSO_RULES)


def test_exit_code_reports_and_diff(keycloak, lab_env, lab_ctx, tmp_path):
    cfg = write_config(tmp_path, lab_ctx)
    html, csv = tmp_path / "sso.html", tmp_path / "sso.csv"
    proc = audit(cfg, "--html", str(html), "--csv", str(csv))
    assert proc.returncode == 1, proc.stderr  # high and critical findings, --fail-on high
    assert "SSO-LDAP-001" in proc.stdout
    page = html.read_text()
    assert "SSO (Keycloak) audit" in page and "LDAP federation without TLS" in page and "<script" not in page
    assert "SSO-MFA-001" in csv.read_text()
    assert audit(cfg, "--fail-on", "none").returncode == 0
    diff = subprocess.run([CITYDC, "--config", str(cfg), "audit", "diff", "--source", "city-sso", "--json"],
                          capture_output=True, text=True, timeout=120, env=os.environ)
    assert diff.returncode == 0, diff.stderr + diff.stdout
    assert json.loads(diff.stdout)["appeared"] == []


def test_accepted_risk_suppresses_its_finding(keycloak, lab_env, lab_ctx, tmp_path):
    acc = tmp_path / "accepted.yaml"
    acc.write_text(yaml.safe_dump({"accepted": [{
        "rule": "SSO-LDAP-001", "subject": "legacy/ldap:legacy-directory", "reason": "legacy ERP until CHG-42",
        "expires": (date.today() + timedelta(days=365)).isoformat(), "approved_by": "CISO"}]}))
    proc = audit(write_config(tmp_path, lab_ctx, accepted_risk_file=str(acc)), "--json", "--fail-on", "none")
    assert proc.returncode == 0, proc.stderr
    assert found(proc) == keycloak_data.EXPECTED - {("SSO-LDAP-001", "legacy/ldap:legacy-directory")}


def test_user_disabled_in_slapd_but_enabled_in_keycloak_is_a_leaver(keycloak, lab_env, lab_ctx, tmp_path):
    # sw-u000007 is enabled in slapd; import it into Keycloak, then disable it in slapd (ppolicy admin lock).
    admin = keycloak_data.Admin(keycloak["http"], ADMIN_USER, ADMIN_PASSWORD)
    assert admin.call("GET", "/city/users", params={"username": "sw-u000007", "exact": "true"}).json()
    cfg = write_config(tmp_path, lab_ctx)
    subject = ("SSO-JML-001", "city/user:sw-u000007")
    assert subject not in found(audit(cfg, "--json", "--fail-on", "none"))
    dn = f"uid=sw-u000007,ou=people,ou=siwei,{BASE}"
    ldif = f"dn: {dn}\nchangetype: modify\nreplace: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n\n"
    env = {**os.environ, "LDAPTLS_CACERT": str(lab_ctx.root / "slapd" / "ca.crt")}
    res = subprocess.run(["ldapmodify", "-x", "-ZZ", "-H", f"ldap://{ports.HOST}:{ports.SLAPD}", "-D", ADMIN_DN,
                          "-w", ports.LAB_ENV["CITYDC_LDAP_ADMIN_PASSWORD"]], input=ldif, text=True,
                         capture_output=True, env=env, timeout=30)
    assert res.returncode == 0, res.stderr
    try:
        assert subject in found(audit(cfg, "--json", "--fail-on", "none"))
    finally:
        undo = f"dn: {dn}\nchangetype: modify\ndelete: pwdAccountLockedTime\n\n"
        subprocess.run(["ldapmodify", "-x", "-ZZ", "-H", f"ldap://{ports.HOST}:{ports.SLAPD}", "-D", ADMIN_DN,
                        "-w", ports.LAB_ENV["CITYDC_LDAP_ADMIN_PASSWORD"]], input=undo, text=True,
                       capture_output=True, env=env, timeout=30)


def test_keycloak_keeps_its_temporary_files_in_the_lab(keycloak, lab_ctx):
    """Vert.x (under Keycloak) creates its file cache in java.io.tmpdir at start: the lab's directory, not /tmp."""
    assert (lab_ctx.service_dir("keycloak") / "tmp" / "vertx-cache").is_dir()
