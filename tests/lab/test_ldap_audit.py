"""``citydc audit ldap`` against the lab's slapd (StartTLS, ppolicy, lastbind, accesslog): the real command,
the real directory with both sites' users and the planted problems of ``lab/lab-data/ldap-planted.json``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from citydc.lab import ports, slapd_data
from citydc.seclog.spool import Spool

pytestmark = pytest.mark.lab

CITYDC = str(Path(sys.executable).with_name("citydc"))
BASE = slapd_data.BASE_DN
GROUPS = [f"cn={g},ou=groups,{BASE}" for g in slapd_data.planted()["privileged_groups"]]


@pytest.fixture(scope="module")
def slapd(lab_up, lab_env) -> dict[str, str]:
    (status,) = lab_up("slapd")
    assert status.running
    return status.endpoints


def write_config(d: Path, slapd: dict[str, str], **overrides) -> Path:
    src = {"name": "city", "url": f"ldap://{ports.HOST}:{ports.SLAPD}", "bind_dn": slapd["bind_dn"],
           "bind_password": "env:CITYDC_LDAP_PASSWORD", "base_dn": BASE, "ca_file": slapd["ca_file"],
           "site": "siwei", "default_policy_dn": f"cn=default,ou=policies,{BASE}", "privileged_groups": GROUPS,
           "baseline_file": slapd["baseline"], "stats_log": slapd["stats_log"], "state_dir": str(d / "state"),
           "textfile_dir": str(d / "textfile")}
    src.update(overrides)
    cfg = {"sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
           "security_log": {"spool_dir": str(d / "spool"), "sink": {"kind": "sqlite", "path": str(d / "log.db")}},
           "ldap": [src]}
    path = d / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def audit(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CITYDC, "--config", str(config), "audit", "ldap", *args], capture_output=True, text=True,
                          timeout=300, env=os.environ)


def found(proc: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    (run,) = json.loads(proc.stdout)["runs"]
    return {(f["rule"], f["subject"]) for f in run["findings"]}


def test_every_planted_problem_is_found_and_nothing_else(slapd, tmp_path):
    cfg = write_config(tmp_path, slapd)
    proc = audit(cfg, "--json", "--fail-on", "none")
    assert proc.returncode == 0, proc.stderr
    expected = slapd_data.expected_findings(f"ldap://{ports.HOST}:{ports.SLAPD}")
    got = found(proc)
    true_pos = got & expected
    precision = len(true_pos) / len(got)
    recall = len(true_pos) / len(expected)
    assert (precision, recall) == (1.0, 1.0), {"missed": sorted(expected - got), "extra": sorted(got - expected)}
    # Every rule has at least one planted problem: the planted set covers the whole rule book.
    from citydc.sso.rules import RULES
    assert {r for r, _ in expected} == set(RULES)
    (run,) = json.loads(proc.stdout)["runs"]
    assert run["accounts"] == 2 * (slapd_data.DirectorySpec().users_per_site + len(slapd_data.ADMINS)) + len(
        slapd_data.planted()["accounts"])
    assert 0 <= run["score"] < 100


def test_ldap3_reader_finds_the_same(slapd, tmp_path):
    cfg = write_config(tmp_path, slapd)
    proc = audit(cfg, "--json", "--fail-on", "none", "--reader", "ldap3", "--no-events")
    assert proc.returncode == 0, proc.stderr
    assert found(proc) == slapd_data.expected_findings(f"ldap://{ports.HOST}:{ports.SLAPD}")


def test_parallel_subtree_searches_read_every_account_once(slapd, tmp_path):
    # bulk_searches 3: the base entry and each child of the base (ou=siwei, ou=fengshan, ou=groups, …) as its
    # own search, three at a time. Same findings, same account count as one search: nothing missed, none twice.
    cfg = write_config(tmp_path, slapd, bulk_searches=3)
    proc = audit(cfg, "--json", "--fail-on", "none", "--no-events")
    assert proc.returncode == 0, proc.stderr
    assert found(proc) == slapd_data.expected_findings(f"ldap://{ports.HOST}:{ports.SLAPD}")
    (run,) = json.loads(proc.stdout)["runs"]
    assert run["accounts"] == 2 * (slapd_data.DirectorySpec().users_per_site + len(slapd_data.ADMINS)) + len(
        slapd_data.planted()["accounts"])


def test_a_privileged_member_outside_the_account_filter_is_looked_up_not_reported_missing(slapd, tmp_path):
    # sw-admin2 (virt-admins) is left out of the bulk read by the filter; the audit reads that member's entry
    # on its own (ldap3 lists the absent pwdAccountLockedTime as []: once an IndexError and a traceback).
    flt = "(&(|(objectClass=posixAccount)(objectClass=inetOrgPerson))(!(uid=sw-admin2)))"
    cfg = write_config(tmp_path, slapd, account_filter=flt)
    proc = audit(cfg, "--json", "--fail-on", "none", "--no-events")
    assert proc.returncode == 0, proc.stderr
    assert found(proc) == slapd_data.expected_findings(f"ldap://{ports.HOST}:{ports.SLAPD}")
    (run,) = json.loads(proc.stdout)["runs"]
    assert run["accounts"] == 2 * (slapd_data.DirectorySpec().users_per_site + len(slapd_data.ADMINS)) + len(
        slapd_data.planted()["accounts"]) - 1


def test_ldaps_source_finds_the_same_server_posture_except_plain_bind(slapd, tmp_path):
    url = f"ldaps://{ports.HOST}:{ports.SLAPD_LDAPS}"
    cfg = write_config(tmp_path, slapd, url=url, start_tls=False)
    proc = audit(cfg, "--json", "--fail-on", "none", "--no-events")
    assert proc.returncode == 0, proc.stderr
    srv = {r for r, s in found(proc) if s == url}
    # No plain ldap:// port is known for an ldaps:// source, so the plain-bind probe does not run.
    assert srv == {"LDAP-SRV-001", "LDAP-SRV-003"}


def test_accepted_risk_suppresses_until_expiry(slapd, tmp_path):
    taipei_today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Taipei")).date()
    subject = f"uid=sw-md5,ou=people,ou=siwei,{BASE}"
    accepted = tmp_path / "accepted.yaml"

    def accept(until: date) -> None:
        accepted.write_text(yaml.safe_dump({"accepted": [
            {"rule": "LDAP-PWD-002", "subject": subject, "reason": "legacy ERP, CHG-1234", "expires": until,
             "approved_by": "CISO"}]}))

    cfg = write_config(tmp_path, slapd, accepted_risk_file=str(accepted))
    accept(taipei_today)  # valid through today
    proc = audit(cfg, "--json", "--fail-on", "none", "--no-events")
    assert proc.returncode == 0, proc.stderr
    assert ("LDAP-PWD-002", subject) not in found(proc)
    (run,) = json.loads(proc.stdout)["runs"]
    assert [(f["rule"], f["subject"]) for f in run["accepted"]] == [("LDAP-PWD-002", subject)]
    accept(taipei_today - timedelta(days=1))  # expired yesterday: the finding is back
    proc = audit(cfg, "--json", "--fail-on", "none", "--no-events")
    assert ("LDAP-PWD-002", subject) in found(proc)
    (run,) = json.loads(proc.stdout)["runs"]
    assert run["accepted"] == [] and len(run["expired_acceptances"]) == 1
    assert any("expired" in n for n in run["notes"])


def test_fail_on_csv_html_metrics_events_and_diff(slapd, tmp_path):
    cfg = write_config(tmp_path, slapd)
    csv_path, html_path = tmp_path / "out" / "f.csv", tmp_path / "out" / "r.html"
    proc = audit(cfg, "--csv", str(csv_path), "--html", str(html_path))  # default --fail-on high
    assert proc.returncode == 1, proc.stderr
    assert "LDAP-PWD-001" in proc.stdout and "score" in proc.stdout
    proc = audit(cfg, "--fail-on", "critical", "--no-events")  # LDAP-PWD-001 is critical
    assert proc.returncode == 1
    rows = csv_path.read_text().splitlines()
    assert rows[0].startswith("status,severity,rule") and len(rows) == 1 + len(slapd_data.planted()["expected"])
    for p in (csv_path, html_path):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    html = html_path.read_text()
    assert "LDAP-SRV-003" in html and "http" not in html.replace(slapd["ldap"].split()[0], "")
    # Metrics: findings by severity and rule, score, last success.
    fams = {f.name: f for f in text_string_to_metric_families((tmp_path / "textfile" / "citydc_ldap_audit.prom")
                                                              .read_text())}
    crit = [s.value for s in fams["citydc_ldap_audit_findings"].samples if s.labels["severity"] == "critical"]
    assert crit == [2.0]
    assert [s.value for s in fams["citydc_ldap_audit_rule_findings"].samples
            if s.labels["rule"] == "LDAP-PWD-002"] == [3.0]
    assert fams["citydc_ldap_audit_last_success_timestamp_seconds"].samples[0].value > 0
    # Events: one alert per finding plus the posture state, in the spool.
    evs = Spool(tmp_path / "spool").read(None, 10_000).events
    actions = [e["event"]["action"] for e in evs]
    assert actions.count("ldap-audit-finding") == len(slapd_data.planted()["expected"])
    assert actions.count("ldap-audit-posture") == 1
    pwd = next(e for e in evs if e.get("rule", {}).get("id") == "LDAP-PWD-001")
    assert pwd["event"]["kind"] == "alert" and pwd["event"]["category"] == ["iam"]
    assert "erp-2019" not in json.dumps(evs)  # the planted cleartext password never leaves the directory
    # Diff: two runs, same findings, score unchanged.
    proc = subprocess.run([CITYDC, "--config", str(cfg), "audit", "diff", "--json"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["appeared"] == [] and d["resolved"] == [] and d["score_change"] == 0
    runs = sorted((tmp_path / "state" / "city" / "runs").glob("*.json"))
    assert len(runs) == 2 and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in runs)


def test_plain_bind_refused_unless_allowed(slapd, tmp_path):
    cfg = write_config(tmp_path, slapd, start_tls=False)
    proc = subprocess.run([CITYDC, "--config", str(cfg), "audit", "ldap"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "allow_plain_bind" in proc.stderr


def test_wrong_password_is_a_clear_failure(slapd, tmp_path, monkeypatch):
    monkeypatch.setenv("CITYDC_LDAP_PASSWORD", "not-the-password-x9")
    cfg = write_config(tmp_path, slapd)
    proc = audit(cfg, "--no-events")
    assert proc.returncode == 1
    assert "Invalid credentials" in proc.stderr or "invalidCredentials" in proc.stderr
    assert "not-the-password-x9" not in proc.stderr + proc.stdout
    fams = {f.name: f for f in text_string_to_metric_families((tmp_path / "textfile" / "citydc_ldap_audit.prom")
                                                              .read_text())}
    assert fams["citydc_ldap_audit_last_run_failed"].samples[0].value == 1
