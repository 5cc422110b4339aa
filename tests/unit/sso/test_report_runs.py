"""Posture score, run files and diff, CSV and the self-contained HTML report, textfile metrics, events."""

from __future__ import annotations

import csv
import io
import re
import stat
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from citydc.sso import events, metrics, report, runs
from citydc.sso.ldap_audit import AuditRun, posture_score
from citydc.sso.model import Finding
from citydc.sso.rules import RULES

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


def f(rule: str, subject: str, msg: str = "m") -> Finding:
    return Finding(RULES[rule].info, subject, msg, {"k": 1})


def result(findings, score=None) -> dict:
    run = AuditRun("city", "siwei", "ldap://x", "r" * 32, NOW, findings=findings, accounts=3)
    run.score = posture_score(findings) if score is None else score
    return run.to_json()


def test_score():
    assert posture_score([]) == 100
    one_low = posture_score([f("LDAP-DUP-003", "mail=a")])
    one_crit = posture_score([f("LDAP-PWD-001", "uid=a")])
    many_low = posture_score([f("LDAP-DUP-003", f"mail={i}") for i in range(1000)])
    assert 100 > one_low > many_low > one_crit >= 0
    assert posture_score([f(r, "s") for r in RULES for _ in range(10_000)]) == 0


def test_runs_saved_private_and_diffed(tmp_path):
    old = result([f("LDAP-PWD-001", "uid=a"), f("LDAP-DUP-003", "mail=b")])
    new = result([f("LDAP-PWD-001", "uid=a"), f("LDAP-ACC-001", "uid=c")])
    new["started"] = "2026-12-05T12:00:00+00:00"
    p1, p2 = runs.save_run(tmp_path, old), runs.save_run(tmp_path, new)
    assert runs.list_runs(tmp_path, "city") == [p1, p2]
    assert stat.S_IMODE(p1.stat().st_mode) == 0o600 and stat.S_IMODE(p1.parent.stat().st_mode) == 0o700
    d = runs.diff(runs.load_run(p1), runs.load_run(p2))
    assert [x["rule"] for x in d.appeared] == ["LDAP-ACC-001"] and [x["rule"] for x in d.resolved] == ["LDAP-DUP-003"]
    assert d.score_change == new["score"] - old["score"]


def test_load_run_refuses_other_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{}")
    try:
        runs.load_run(p)
    except ValueError as exc:
        assert "not an audit run" in str(exc)
    else:
        raise AssertionError("accepted a non-run")


def test_csv_quotes_formulas():
    res = result([f("LDAP-DUP-003", "=HYPERLINK(\"http://evil\")", "=cmd")])
    rows = list(csv.reader(io.StringIO(report.to_csv(res))))
    assert rows[0][:3] == ["status", "severity", "rule"]
    assert rows[1][4].startswith("'=") and rows[1][5] == "'=cmd"


def test_html_is_self_contained_and_escaped():
    res = result([f("LDAP-PWD-001", "uid=<script>alert(1)</script>")])
    html = report.to_html(res)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert not re.search(r"(src|href)\s*=|@import|url\(", html)
    assert "LDAP-PWD-001" in html and RULES["LDAP-PWD-001"].info.remediation[:30] in html


def test_metrics(tmp_path):
    res = result([f("LDAP-PWD-001", "uid=a"), f("LDAP-PWD-001", "uid=b")])
    st = {"city": {"site": "siwei", "last_attempt": 1.0, "last_success": 1.0, "last_error": None,
                   "result": {**{k: res[k] for k in ("score", "by_severity", "by_rule", "accounts",
                                                      "duration_seconds")}, "accepted": 0}}}
    text = metrics.write(tmp_path, st).read_text()
    fams = {m.name: m for m in text_string_to_metric_families(text)}
    crit = [s for s in fams["citydc_ldap_audit_findings"].samples if s.labels["severity"] == "critical"]
    assert crit[0].value == 2 and crit[0].labels["site"] == "siwei"
    assert len(fams["citydc_ldap_audit_rule_findings"].samples) == len(RULES)


def test_finding_event_is_ecs_alert_with_rule():
    ev = events.finding_event(f("LDAP-PWD-002", "uid=a"), source="city", site="siwei", run_id="r1", when=NOW,
                              host="h")
    assert ev["event"]["kind"] == "alert" and ev["event"]["action"] == "ldap-audit-finding"
    assert ev["rule"]["id"] == "LDAP-PWD-002" and ev["event"]["severity"] == 73
    again = events.finding_event(f("LDAP-PWD-002", "uid=a"), source="city", site="siwei", run_id="r1", when=NOW,
                                 host="h")
    assert again["event"]["id"] == ev["event"]["id"]
