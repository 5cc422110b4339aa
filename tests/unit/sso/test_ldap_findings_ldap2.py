"""Findings of the LDAP audit's exploratory test (/tmp/findings-ldap.md items 3-15a): diff and acceptances,
acceptances of account sets, DN matching, duplicate values as slapd compares them, stale accounts after a password
change, report options checked before the audit, run order, HTML escaping, run and accepted-risk file validation,
report columns and sections, the no-default-policy message."""

from __future__ import annotations

import copy
import io
import json
import os
import socket
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from citydc.cli import audit_cmd, output
from citydc.config.models import LdapRuleSettings
from citydc.sso import report, runs
from citydc.sso.files import MAX_ACCEPTANCE_DAYS, FileInvalid, apply_acceptances, load_accepted
from citydc.sso.ldap_audit import AuditRun, posture_score
from citydc.sso.model import Account, Finding
from citydc.sso.rules import RULES, RuleContext, ServerPosture, make_rules

CITYDC = str(Path(sys.executable).with_name("citydc"))
NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
TODAY = date(2026, 12, 4)


def citydc(cfg: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    pre = ["--config", str(cfg)] if cfg else []
    return subprocess.run([CITYDC, *pre, *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PW": "pw", "COLUMNS": "250"})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(d: Path, names: list[str]) -> Path:
    port = closed_port()
    cfg = {"sites": [{"id": "siwei", "name": "Siwei"}],
           "security_log": {"spool_dir": str(d / "spool"), "sink": {"kind": "sqlite", "path": str(d / "log.db")}},
           "ldap": [{"name": n, "url": f"ldap://127.0.0.1:{port}", "bind_dn": "cn=auditor,dc=x",
                     "bind_password": "env:PW", "base_dn": "dc=x", "start_tls": False, "allow_plain_bind": True,
                     "site": "siwei", "state_dir": str(d / "state")} for n in names]}
    path = d / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def fnd(rule: str, subject: str, msg: str = "m", **evidence) -> Finding:
    return Finding(RULES[rule].info, subject, msg, evidence)


ACC = """\
accepted:
  - rule: {rule}
    subject: '{subject}'
    reason: legacy ERP, CHG-1
    expires: 2027-01-31
    approved_by: CISO
"""


def accepted_file(tmp_path: Path, text: str):
    p = tmp_path / "acc.yaml"
    p.write_text(text)
    return load_accepted(p, today=TODAY)


def run_json(active=(), accepted=(), expired=(), unused=(), started=NOW, uncovered=()) -> dict:
    run = AuditRun("city", "siwei", "ldap://x", os.urandom(16).hex(), started, findings=list(active), accounts=3,
                   accepted=list(accepted), expired=list(expired), unused_acceptances=list(unused),
                   uncovered=list(uncovered))
    run.score = posture_score(run.findings)
    return run.to_json()


# -- 3: audit diff shows accepted risks as accepted, ended acceptances as such ------------------------------------

SRV = fnd("LDAP-SRV-003", "ldap://127.0.0.1:12389", "certificate expires soon")
DUP = fnd("LDAP-DUP-003", "mail=helpdesk@city.example", "2 accounts share mail",
          accounts=["uid=fs-helpdesk,dc=x", "uid=sw-helpdesk,dc=x"])


def _acceptances(tmp_path):
    return accepted_file(tmp_path, ACC.format(rule="LDAP-SRV-003", subject="ldap://127.0.0.1:12389")
                         + "  - {rule: LDAP-DUP-003, subject: mail=helpdesk@city.example, reason: shared box,"
                           " expires: 2027-01-01, approved_by: CISO,"
                           " accounts: ['uid=fs-helpdesk,dc=x', 'uid=sw-helpdesk,dc=x']}\n")


def test_diff_shows_a_newly_accepted_risk_as_accepted_and_an_ended_one_as_a_regression(tmp_path):
    accs = _acceptances(tmp_path)
    applied = apply_acceptances([SRV, DUP], accs, TODAY)
    assert applied.active == []
    before, after = run_json([SRV, DUP]), run_json(accepted=applied.accepted)
    d = runs.diff(before, after)
    assert d.resolved == [] and d.appeared == []
    assert sorted(f["rule"] for f in d.accepted) == ["LDAP-DUP-003", "LDAP-SRV-003"]
    assert not d.regressed  # the score rose: a risk accepted is no regression
    back = runs.diff(after, before)
    assert back.appeared == [] and back.resolved == []
    assert sorted(f["rule"] for f in back.acceptance_ended) == ["LDAP-DUP-003", "LDAP-SRV-003"]
    assert back.regressed
    # an acceptance that expired: its finding is active in the new run, shown as the acceptance ending
    expired = apply_acceptances([SRV], accs, TODAY + timedelta(days=400))
    d2 = runs.diff(after, run_json(expired.active, expired=expired.expired))
    assert [f["rule"] for f in d2.acceptance_ended] == ["LDAP-SRV-003"] and d2.regressed
    # a finding accepted and then fixed is resolved
    d3 = runs.diff(after, run_json())
    assert sorted(f["rule"] for f in d3.resolved) == ["LDAP-DUP-003", "LDAP-SRV-003"] and not d3.regressed


def test_audit_diff_command_names_the_change_and_exits_honestly(tmp_path):
    accs = _acceptances(tmp_path)
    applied = apply_acceptances([SRV, DUP], accs, TODAY)
    before = run_json([SRV, DUP])
    after = run_json(accepted=applied.accepted, started=NOW + timedelta(days=1))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(before))
    b.write_text(json.dumps(after))
    proc = citydc(None, "audit", "diff", str(a), str(b))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "accepted" in proc.stdout and "resolved" not in proc.stdout.split("\n", 2)[-1]
    # the other way round: the acceptances ended (the newer run first is refused: give them in order)
    c = tmp_path / "c.json"
    c.write_text(json.dumps({**before, "started": (NOW + timedelta(days=2)).isoformat()}))
    proc = citydc(None, "audit", "diff", str(b), str(c))
    assert proc.returncode == 1 and "acceptance ended" in proc.stdout, proc.stdout


OLD_RUN = {  # a run file as citydc wrote it before accepted risks took part in the diff (no uncovered list)
    "source": "city", "site": "siwei", "url": "ldap://x", "run_id": "0" * 32, "started": "2026-12-03T12:00:00+00:00",
    "duration_seconds": 1.0, "accounts": 3, "policies": 1, "groups": 0, "score": 92,
    "by_severity": {"high": 1}, "by_rule": {"LDAP-SRV-003": 1},
    "findings": [{"rule": "LDAP-SRV-003", "severity": "high", "title": "t", "subject": "ldap://127.0.0.1:12389",
                  "message": "m", "evidence": {}, "remediation": "r"}],
    "accepted": [], "expired_acceptances": [], "unused_acceptances": [], "notes": []}


def test_old_run_files_still_load_list_and_diff(tmp_path):
    d = runs.runs_dir(tmp_path, "city")
    d.mkdir(parents=True)
    old = d / "20261203T120000Z-000000000000.json"
    old.write_text(json.dumps(OLD_RUN))
    bare = {k: v for k, v in OLD_RUN.items() if k not in ("accepted", "expired_acceptances", "unused_acceptances")}
    (tmp_path / "bare.json").write_text(json.dumps(bare))
    applied = apply_acceptances([SRV], _acceptances(tmp_path), TODAY)
    new = runs.save_run(tmp_path, run_json(accepted=applied.accepted))
    assert runs.list_runs(tmp_path, "city") == [old, new]
    for before in (runs.load_run(old), runs.load_run(tmp_path / "bare.json")):
        diff = runs.diff(before, runs.load_run(new))
        assert [f["rule"] for f in diff.accepted] == ["LDAP-SRV-003"] and diff.resolved == []
    report.to_html(OLD_RUN)
    report.to_csv(OLD_RUN)


# -- 4: an acceptance of a set of accounts covers those accounts only ---------------------------------------------

def test_a_new_account_in_an_accepted_duplicate_makes_the_finding_active_again(tmp_path):
    accs = _acceptances(tmp_path)
    three = fnd("LDAP-DUP-003", "mail=helpdesk@city.example", "3 accounts share mail",
                accounts=["uid=fs-helpdesk,dc=x", "UID=SP-2,dc=x", "uid=SW-Helpdesk, dc=x"])
    applied = apply_acceptances([three], accs, TODAY)
    assert applied.active == [three] and applied.accepted == []
    ((_f, _a, extra),) = applied.uncovered
    assert extra == ["UID=SP-2,dc=x"]  # the other two match however their DN is spelled
    before = run_json(accepted=apply_acceptances([DUP], accs, TODAY).accepted)
    after = run_json(applied.active, uncovered=applied.uncovered)
    assert after["uncovered_acceptances"][0]["not_covered"] == ["UID=SP-2,dc=x"]
    d = runs.diff(before, after)
    assert [f["rule"] for f in d.acceptance_ended] == ["LDAP-DUP-003"] and d.regressed
    assert "does not cover UID=SP-2,dc=x" in report.to_csv(after)


def test_duplicate_acceptances_must_name_their_accounts(tmp_path):
    with pytest.raises(FileInvalid, match=r"acc.yaml:2: accepted\[0\]: .*list the accounts"):
        accepted_file(tmp_path, ACC.format(rule="LDAP-DUP-001", subject="uid=chen.wei"))
    with pytest.raises(FileInvalid, match=r"accounts: only for the duplicate rules"):
        accepted_file(tmp_path, ACC.format(rule="LDAP-PWD-002", subject="uid=a,dc=x") + "    accounts: [a]\n")


def test_diff_shows_a_duplicate_that_grew_as_changed():
    two = fnd("LDAP-DUP-001", "uid=chen.wei", "2", accounts=["uid=a,dc=x", "uid=b,dc=x"])
    three = fnd("LDAP-DUP-001", "uid=chen.wei", "3", accounts=["uid=a,dc=x", "uid=b,dc=x", "uid=c,dc=x"])
    d = runs.diff(run_json([two]), run_json([three]))
    assert [f["added_accounts"] for f in d.changed] == [["uid=c,dc=x"]] and d.regressed
    assert audit_cmd.diff_rows([], [], [], [], d.changed)[0][0] == "changed"
    assert not runs.diff(run_json([three]), run_json([two])).changed


# -- 5: DN subjects matched the LDAP way; unused acceptances shown everywhere -------------------------------------

@pytest.mark.parametrize("subject", ["uid=SW-MD5,ou=people,ou=siwei,dc=city,dc=example",
                                     "uid=sw-md5, ou=People , ou=siwei,dc=city,dc=example ",
                                     r"uid=sw\2Dmd5,ou=people,ou=siwei,dc=city,dc=example"])
def test_acceptance_subjects_match_dns_as_ldap_compares_them(tmp_path, subject):
    (acc,) = accepted_file(tmp_path, ACC.format(rule="LDAP-PWD-002", subject=subject))
    f = fnd("LDAP-PWD-002", "uid=sw-md5,ou=people,ou=siwei,dc=city,dc=example")
    applied = apply_acceptances([f], [acc], TODAY)
    assert applied.accepted == [(f, acc)] and applied.unused == []
    other = fnd("LDAP-PWD-002", "uid=sw-md6,ou=people,ou=siwei,dc=city,dc=example")
    assert apply_acceptances([other], [acc], TODAY).unused == [acc]


def test_mail_subject_matches_case_insensitively_but_keycloak_subjects_keep_case(tmp_path):
    (acc,) = accepted_file(tmp_path, ACC.format(rule="LDAP-DUP-003", subject="mail=DUP@city.example ")
                           + "    accounts: [uid=a, uid=b]\n")
    f = fnd("LDAP-DUP-003", "mail=dup@city.example", accounts=["uid=a", "uid=b"])
    assert apply_acceptances([f], [acc], TODAY).accepted == [(f, acc)]
    from citydc.sso.files import subject_key

    assert subject_key("SSO-CLI-001", " Portal ") == ("SSO-CLI-001", "Portal") != subject_key("SSO-CLI-001", "portal")


def test_unused_acceptances_are_in_the_notes_the_html_and_the_csv(tmp_path, monkeypatch):
    (acc,) = accepted_file(tmp_path, ACC.format(rule="LDAP-PWD-002", subject="uid=typo,dc=x"))
    result = run_json([fnd("LDAP-PWD-002", "uid=a,dc=x")], unused=[acc])
    html = report.to_html(result)
    assert "Unused acceptances" in html and "uid=typo,dc=x" in html
    rows = report.to_csv(result).splitlines()
    assert any(r.startswith("unused acceptance,") and "uid=typo,dc=x" in r and "CISO" in r for r in rows)
    buf = io.StringIO()
    monkeypatch.setattr(output, "err", Console(file=buf, width=200))
    audit_cmd._note_acceptances(result)
    assert "acceptance of LDAP-PWD-002 for uid=typo,dc=x matched no finding" in buf.getvalue()


# -- 6: duplicates compared as caseIgnoreMatch compares them -------------------------------------------------------

def _acct(uid: list[str], mail: list[str], n: int) -> Account:
    return Account(f"uid=sp-{n},dc=x", uid, [str(30000 + n)], mail, ["{SSHA}x"], None, None, None, None, None)


def test_duplicate_rules_fold_values_like_slapd_on_both_paths():
    accounts = [_acct(["chen.wei"], ["helpdesk@city.example"], 0),
                _acct(["sp-1", " Chen.Wei "], ["helpdesk@city.example "], 1),
                _acct(["sp-2", "ｃｈｅｎ.ｗｅｉ"], ["x@y"], 2),
                _acct(["lin  mei"], ["a@b"], 3), _acct(["Lin Mei"], ["c@d"], 4)]
    ctx = RuleContext(LdapRuleSettings(), NOW, ServerPosture("ldap://x"), default_policy_dn=None)
    one, many = make_rules(ctx), make_rules(ctx)
    for r in one:
        for a in accounts:
            r.account(a)
    for r in many:
        if hasattr(r, "add_many"):
            for k in range(2):  # the screened path: one value per account and block
                attr = {"uid": "uid", "uidNumber": "uid_number", "mail": "mail"}[r.attribute]
                vals = [(getattr(a, attr)[k] if len(getattr(a, attr)) > k else None) for a in accounts]
                r.add_many(vals, [a.dn for a in accounts])
    for rules in (one, many):
        found = {f.subject: f.evidence["accounts"] for r in rules for f in r.finish()}
        assert found["uid=chen.wei"] == ["uid=sp-0,dc=x", "uid=sp-1,dc=x", "uid=sp-2,dc=x"]
        assert found["uid=lin mei"] == ["uid=sp-3,dc=x", "uid=sp-4,dc=x"]
        assert found["mail=helpdesk@city.example"] == ["uid=sp-0,dc=x", "uid=sp-1,dc=x"]


# -- 7: no pwdLastSuccess after a password change is not "never bound" --------------------------------------------

def _g(days: float) -> str:
    return (NOW - timedelta(days=days)).strftime("%Y%m%d%H%M%SZ")


def test_stale_account_counts_from_the_last_password_change_when_slapd_cleared_the_last_bind():
    ctx = RuleContext(LdapRuleSettings(), NOW, ServerPosture("ldap://x"))
    rule = RULES["LDAP-ACC-001"](ctx)
    reset = Account("uid=sw-u1,dc=x", ["sw-u1"], ["1"], [], ["{SSHA}x"], _g(0.5), None, _g(542), None, None)
    assert list(rule.account(reset)) == []
    old = Account("uid=sw-u2,dc=x", ["sw-u2"], ["2"], [], ["{SSHA}x"], _g(200), None, _g(542), None, None)
    (f,) = rule.account(old)
    assert "never bound" not in f.message and "no bind recorded since the password was set 200 days ago" in f.message
    never = Account("uid=sw-u3,dc=x", ["sw-u3"], ["3"], [], ["{SSHA}x"], _g(542), None, _g(542), None, None)
    (f,) = rule.account(never)
    assert f.message == "never bound; created 542 days ago"


# -- 8, 12: report options checked before any source is read; write failures are one line ------------------------

@pytest.mark.parametrize(("names", "option", "why"), [
    (["a", "b"], "--html={d}/multi.html", "several sources are audited"),
    (["a"], "--csv={d}", "is a directory"),
    (["a"], "--csv={d}/citydc.yaml/sub/r.csv", "citydc.yaml is not a directory"),
])
def test_report_options_are_refused_before_anything_is_audited(tmp_path, names, option, why):
    cfg = write_config(tmp_path, names)
    proc = citydc(cfg, "audit", "ldap", "--no-events", option.format(d=tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert why in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr
    assert not (tmp_path / "state").exists()  # no source was even tried (a closed port records a failure)


def test_reports_in_a_directory_still_to_be_made_are_allowed(tmp_path):
    audit_cmd._check_report_paths(["a"], csv_path=str(tmp_path / "out" / "new" / "r.csv"), html_path=None)
    assert not (tmp_path / "out").exists()  # made when the report is written (atomicfile)


def test_a_report_that_cannot_be_written_is_one_line_and_fails_the_run(tmp_path, monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(output, "err", Console(file=buf, width=300))
    ok = audit_cmd._write_reports(run_json(), "city", False, csv_path=str(tmp_path), html_path=None)
    assert ok is False and "cannot write" in buf.getvalue() and len(buf.getvalue().strip().splitlines()) == 1


# -- 9: runs in the order they started ----------------------------------------------------------------------------

def test_runs_of_one_second_are_listed_in_the_order_they_started(tmp_path):
    t = datetime(2026, 12, 7, 16, 12, 44, 49000, tzinfo=UTC)
    first = run_json(started=t)
    first["run_id"] = "f" * 32  # sorts after the second by name
    second = run_json(started=t + timedelta(milliseconds=300))
    second["run_id"] = "0" * 32
    p2, p1 = runs.save_run(tmp_path, second), runs.save_run(tmp_path, first)
    assert runs.list_runs(tmp_path, "city") == [p1, p2]
    # files named with the second only (before this change): their recorded start decides
    d = runs.runs_dir(tmp_path, "old")
    d.mkdir(parents=True)
    a, b = d / "20261207T161244Z-ffffffffffff.json", d / "20261207T161244Z-000000000000.json"
    a.write_text(json.dumps({**first, "source": "old"}))
    b.write_text(json.dumps({**second, "source": "old"}))
    os.utime(a, ns=(2 * 10**18, 2 * 10**18))  # written later than b, started earlier
    os.utime(b, ns=(10**18, 10**18))
    assert runs.list_runs(tmp_path, "old") == [a, b]
    assert runs.order_problem(second, first) is not None and runs.order_problem(first, second) is None


# -- 10: bidi controls are escaped in the HTML --------------------------------------------------------------------

def test_html_escapes_bidi_and_control_characters(tmp_path):
    (acc,) = accepted_file(tmp_path, ACC.format(rule="LDAP-PWD-001", subject="uid=acc\u202ed,dc=x")
                           .replace("CISO", '"Ops \u202eOSIC"'))
    evil = fnd("LDAP-PWD-001", "uid=rtl\u202egnp.exe,dc=x", "cleartext \x1b[2J", who="a\u202eb")
    accepted = fnd("LDAP-PWD-001", "uid=acc\u202ed,dc=x")
    result = run_json([evil], accepted=[(accepted, acc)], unused=[acc])
    html = report.to_html(result)
    assert "\u202e" not in html and "\x1b" not in html
    assert "uid=rtl\\u202egnp.exe" in html and "Ops \\u202eOSIC" in html


# -- 11: run files: deep nesting and absurd scores ----------------------------------------------------------------

def test_deep_run_file_and_absurd_scores_are_refused(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match=r"deep\.json: not an audit run"):
        runs.load_run(deep)
    for score in (-5, 1e300, 101):
        p = tmp_path / "s.json"
        p.write_text(json.dumps({**OLD_RUN, "score": score}))
        with pytest.raises(ValueError, match="score: expected 0-100"):
            runs.load_run(p)


JUNK = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=10)


@given(st.sampled_from(["accepted", "expired_acceptances", "uncovered_acceptances", "findings", "started"]),
       st.one_of(JUNK, st.just(None)), st.integers(0, 6), st.sampled_from(["rule", "subject", "evidence", "x"]))
@settings(max_examples=250, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_any_mutated_run_file_loads_and_diffs_or_is_refused(tmp_path, key, junk, depth, field):
    data = copy.deepcopy(OLD_RUN)
    data["accepted"] = [dict(data["findings"][0], evidence={"accounts": ["uid=a"]})]
    if key in ("accepted", "findings") and depth % 2:
        data[key][0][field] = junk  # one field of one finding
    else:
        data[key] = junk
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    try:
        run = runs.load_run(path)
    except ValueError as exc:
        assert str(exc).startswith(f"{path}: not an")
        return
    for d in (runs.diff(OLD_RUN, run), runs.diff(run, OLD_RUN)):
        json.dumps(d.to_json())
        audit_cmd.diff_rows(d.appeared, d.resolved, d.accepted, d.acceptance_ended, d.changed)


# -- 13: accepted-risk file validation ----------------------------------------------------------------------------

def test_two_acceptances_of_one_finding_are_an_error_naming_both_lines(tmp_path):
    text = ACC.format(rule="LDAP-PWD-002", subject="uid=fs-sha,dc=x") + ACC.format(
        rule="LDAP-PWD-002", subject="UID=FS-SHA, dc=x").replace("accepted:\n", "").replace("2027-01-31", "2020-01-01")
    with pytest.raises(FileInvalid, match=r"acc.yaml:7: accepted\[1\]: the same finding .* accepted\[0\] on line 2"):
        accepted_file(tmp_path, text)


@pytest.mark.parametrize(("change", "expected"), [
    (("legacy ERP, CHG-1", '"   "'), r"acc.yaml:4: accepted\[0\]\.reason: must not be blank"),
    (("CISO", '" "'), r"acc.yaml:6: accepted\[0\]\.approved_by: must not be blank"),
    (("2027-01-31", "1798675200"), r"acc.yaml:5: accepted\[0\]\.expires: expected a date \(YYYY-MM-DD.*number"),
    (("2027-01-31", '"20270331"'), r"acc.yaml:5: accepted\[0\]\.expires: expected a date \(YYYY-MM-DD"),
    (("2027-01-31", "2027-01-31 10:00:00"), r"accepted\[0\]\.expires: expected a date .*with a time"),
    (("2027-01-31", "9999-12-31"), rf"acc.yaml:5: accepted\[0\]\.expires: 9999-12-31 is more than "
                                   rf"{MAX_ACCEPTANCE_DAYS} days after today"),
])
def test_bad_acceptances_are_refused_with_line_and_reason(tmp_path, change, expected):
    with pytest.raises(FileInvalid, match=expected):
        accepted_file(tmp_path, ACC.format(rule="LDAP-PWD-002", subject="uid=a,dc=x").replace(*change))


def test_an_expiry_within_the_bound_is_accepted(tmp_path):
    text = ACC.format(rule="LDAP-PWD-002", subject="uid=a,dc=x").replace(
        "2027-01-31", (TODAY + timedelta(days=MAX_ACCEPTANCE_DAYS)).isoformat())
    assert len(accepted_file(tmp_path, text)) == 1


@given(st.lists(st.fixed_dictionaries({}, optional={
    "rule": st.sampled_from(["LDAP-PWD-002", "LDAP-DUP-001", "SSO-CLI-001", "X"]),
    "subject": st.text(max_size=12), "reason": st.text(max_size=8), "approved_by": st.text(max_size=5),
    "expires": st.one_of(st.dates(), st.integers(), st.text(max_size=10), st.datetimes(), st.none()),
    "accounts": st.one_of(st.lists(st.text(max_size=6), max_size=3), st.integers(), st.none())}), max_size=4))
@settings(max_examples=250, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_any_mutated_accepted_file_loads_or_is_refused_with_file_invalid(tmp_path, entries):
    p = tmp_path / "acc.yaml"
    p.write_text(yaml.safe_dump({"accepted": entries}, allow_unicode=True))
    try:
        accs = load_accepted(p, today=TODAY)
    except FileInvalid as exc:
        assert str(exc).startswith(f"{p}")
        return
    findings = [fnd("LDAP-PWD-002", str(e.get("subject"))) for e in entries]
    apply_acceptances(findings, accs, TODAY)


# -- 14: what the reports hold -------------------------------------------------------------------------------------

def test_csv_and_html_hold_approver_evidence_and_ended_acceptances(tmp_path):
    (acc,) = accepted_file(tmp_path, ACC.format(rule="LDAP-PWD-002", subject="uid=a,dc=x"))
    f = fnd("LDAP-PWD-002", "uid=a,dc=x", "weak", schemes=["MD5"])
    expired = apply_acceptances([f], [acc], TODAY + timedelta(days=400))
    result = run_json(expired.active, expired=expired.expired)
    rows = list(__import__("csv").DictReader(io.StringIO(report.to_csv(result))))
    assert {"approved_by", "evidence"} <= rows[0].keys()
    assert rows[0]["status"] == "active: acceptance expired" and rows[0]["approved_by"] == "CISO"
    assert json.loads(rows[0]["evidence"]) == {"schemes": ["MD5"]}
    accepted = run_json(accepted=apply_acceptances([f], [acc], TODAY).accepted)
    (row,) = list(__import__("csv").DictReader(io.StringIO(report.to_csv(accepted))))
    assert row["status"] == "accepted" and row["approved_by"] == "CISO" and "MD5" in row["evidence"]
    html = report.to_html(result)
    assert "Acceptances that no longer hold" in html and "acceptance expired" in html


# -- 15a: without default_policy_dn, say what is known --------------------------------------------------------------

def test_no_default_policy_message_says_none_is_configured():
    ctx = RuleContext(LdapRuleSettings(), NOW, ServerPosture("ldap://x"), default_policy_dn=None)
    (f,) = RULES["LDAP-ACC-003"](ctx).account(_acct(["a"], [], 1))
    assert "server has no default policy" not in f.message and "no default_policy_dn is configured" in f.message
