"""Renderings of an audit run for people: CSV and a self-contained HTML report an auditor can file.

Both work on the run's JSON (``AuditRun.to_json()`` or a saved run), so a report can be made again
later from ``<state_dir>/<source>/runs/``. The HTML has no external resource (inline CSS, no
script, no font or image fetched), so it opens the same offline, in a browser or archived as is.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from citydc.cli.csvout import CsvWriter
from citydc.cli.output import visible
from citydc.sso.model import SEVERITIES
from citydc.sso.rules import RULES
from citydc.sso.sso_rules import SSO_RULES

__all__ = ["CSV_COLUMNS", "to_csv", "to_html"]

TZ = ZoneInfo("Asia/Taipei")
CSV_COLUMNS = ("status", "severity", "rule", "title", "subject", "message", "evidence", "remediation",
               "accepted_until", "accepted_reason", "approved_by")
_COLOURS = {"critical": "#7f1d1d", "high": "#b91c1c", "medium": "#c2410c", "low": "#a16207", "info": "#475569"}


def _evidence(f: dict[str, Any]) -> str:
    return json.dumps(f["evidence"], ensure_ascii=False, sort_keys=True) if f.get("evidence") else ""


def _ended(result: dict[str, Any]) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """Given a run's JSON, return {(rule, subject): (why the acceptance no longer holds, acceptance)} for its
    active findings whose acceptance expired or does not cover the finding's accounts."""
    out: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for f in result.get("expired_acceptances") or []:
        out[(f["rule"], f["subject"])] = ("active: acceptance expired", f["acceptance"])
    for f in result.get("uncovered_acceptances") or []:
        out[(f["rule"], f["subject"])] = ("active: acceptance does not cover " + ", ".join(f.get("not_covered") or []),
                                          f["acceptance"])
    return out


def to_csv(result: dict[str, Any]) -> str:
    """Given a run's JSON, return CSV: one row per active finding (status ``active``, or ``active: acceptance
    expired`` / ``active: acceptance does not cover …`` with that acceptance's columns), then per accepted
    finding, then per unused acceptance (no finding matched it). Cells are made safe for spreadsheets and
    terminals (citydc.cli.csvout: no formula, control characters escaped)."""
    buf = io.StringIO()
    w = CsvWriter(buf, lineterminator="\n")
    w.writeheader(CSV_COLUMNS)
    ended = _ended(result)
    for f in result["findings"]:
        status, a = ended.get((f["rule"], f["subject"]), ("active", None))
        w.writerow([str(x) for x in (status, f["severity"], f["rule"], f["title"], f["subject"], f["message"],
                                     _evidence(f), f["remediation"], a["expires"] if a else "",
                                     a["reason"] if a else "", a["approved_by"] if a else "")])
    for f in result["accepted"]:
        a = f["acceptance"]
        w.writerow([str(x) for x in ("accepted", f["severity"], f["rule"], f["title"], f["subject"], f["message"],
                                     _evidence(f), f["remediation"], a["expires"], a["reason"], a["approved_by"])])
    for a in result.get("unused_acceptances") or []:
        w.writerow([str(x) for x in ("unused acceptance", "", a["rule"], "", a["subject"],
                                     "matched no finding (fixed, or a typo in the subject)", "", "", a["expires"],
                                     a["reason"], a["approved_by"])])
    return buf.getvalue()


def _e(value: Any) -> str:
    """Given text from outside (a DN, a reason, an approver), return it for HTML: control characters and bidi
    overrides (U+202E) escaped as on the terminal and in the CSV (``visible``), then HTML-escaped."""
    return escape(visible(str(value)))


def _local(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone(TZ).strftime("%Y-%m-%d %H:%M %Z")
    except ValueError:
        return iso


_CSS = """
body{font-family:system-ui,'Noto Sans CJK TC',sans-serif;margin:2rem;color:#0f172a;max-width:75rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #cbd5e1}
.meta{color:#475569} table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #cbd5e1;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f5f9} .sev{color:#fff;border-radius:.25rem;padding:0 .4rem;font-weight:600;font-size:.8rem}
.score{font-size:2.5rem;font-weight:700} .cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #cbd5e1;border-radius:.4rem;padding:.6rem 1rem;min-width:7rem}
.rid{white-space:nowrap} .subject{font-family:ui-monospace,monospace;word-break:break-all} .rem{color:#334155}
.note{background:#fef9c3;padding:.4rem .6rem;border-radius:.3rem;margin:.3rem 0}
@media print{body{margin:0}}
"""


def _sev(s: str) -> str:
    return f'<span class="sev" style="background:{_COLOURS.get(s, "#475569")}">{escape(s)}</span>'


def _rule_infos(result: dict[str, Any]) -> dict[str, Any]:
    # The run's own audit's rules: the directory's, or the SSO audit's (kind: sso).
    if result.get("kind") == "sso":
        return {rid: r.info for rid, r in SSO_RULES.items()}
    return {rid: cls.info for rid, cls in RULES.items()}


def to_html(result: dict[str, Any], title: str | None = None) -> str:
    """Given a run's JSON, return a complete HTML document (no external resources)."""
    r = result
    sso = r.get("kind") == "sso"
    title = title or ("SSO (Keycloak) audit" if sso else "LDAP directory audit")
    infos = _rule_infos(r)
    counts = (f'{r["accounts"]} users, {r["policies"]} realms, {r["groups"]} clients' if sso else
              f'{r["accounts"]} accounts, {r["policies"]} password policies, {r["groups"]} privileged groups')
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{_e(title)}: {_e(r['source'])}</title>", f"<style>{_CSS}</style></head><body>",
           f"<h1>{_e(title)}: {_e(r['source'])} ({_e(r['site'])})</h1>",
           f'<p class="meta">{_e(r["url"])} · run {_e(r["run_id"][:12])} · {_e(_local(r["started"]))} · '
           f'{counts} · {r["duration_seconds"]:.1f} s</p>',
           '<div class="cards">',
           f'<div class="card"><div>Posture score</div><div class="score">{int(r["score"])}</div></div>']
    for s in reversed(SEVERITIES):
        out.append(f'<div class="card"><div>{_sev(s)}</div><div class="score">{r["by_severity"].get(s, 0)}</div></div>')
    out.append(f'<div class="card"><div>accepted</div><div class="score">{len(r["accepted"])}</div></div></div>')
    for note in r.get("notes", []):
        out.append(f'<p class="note">{_e(note)}</p>')
    out += ["<h2>Summary by rule</h2>", "<table><tr><th>rule</th><th>severity</th><th>title</th>"
            "<th>findings</th><th>remediation</th></tr>"]
    for rid, n in sorted(r["by_rule"].items()):
        info = infos.get(rid)
        out.append(f'<tr><td class="rid">{_e(rid)}</td><td>{_sev(info.severity) if info else ""}</td>'
                   f"<td>{escape(info.title) if info else ''}</td><td>{n}</td>"
                   f'<td class="rem">{escape(info.remediation) if info else ""}</td></tr>')
    if not r["by_rule"]:
        out.append('<tr><td colspan="5">No active finding.</td></tr>')
    out += ["</table>", "<h2>Findings</h2>", "<table><tr><th>severity</th><th>rule</th><th>subject</th>"
            "<th>finding</th><th>remediation</th></tr>"]
    ended = _ended(r)
    for f in r["findings"]:
        evidence = _e(_evidence(f))
        why = ended.get((f["rule"], f["subject"]))
        out.append(f"<tr><td>{_sev(f['severity'])}</td><td>{_e(f['rule'])}<br>{_e(f['title'])}</td>"
                   f'<td class="subject">{_e(f["subject"])}</td><td>{_e(f["message"])}'
                   + (f'<br><small class="rem">{evidence}</small>' if evidence else "")
                   + (f"<br><b>{_e(why[0])}</b>" if why else "")
                   + f'</td><td class="rem">{_e(f["remediation"])}</td></tr>')
    out.append("</table>")
    if r["accepted"]:
        out += ["<h2>Accepted risks</h2>", "<table><tr><th>rule</th><th>subject</th><th>finding</th><th>reason</th>"
                "<th>approved by</th><th>until</th></tr>"]
        for f in r["accepted"]:
            a = f["acceptance"]
            evidence = _e(_evidence(f))
            out.append(f"<tr><td>{_e(f['rule'])}</td><td class=\"subject\">{_e(f['subject'])}</td>"
                       f"<td>{_e(f['message'])}" + (f'<br><small class="rem">{evidence}</small>' if evidence else "")
                       + f"</td><td>{_e(a['reason'])}</td><td>{_e(a['approved_by'])}</td>"
                       f"<td>{_e(a['expires'])}</td></tr>")
        out.append("</table>")
    if ended:
        out += ["<h2>Acceptances that no longer hold</h2>",
                "<p>These findings are active again (listed above) and count for the score.</p>",
                "<table><tr><th>rule</th><th>subject</th><th>why</th><th>reason</th><th>approved by</th>"
                "<th>until</th></tr>"]
        for (rule_id, subject), (why, a) in ended.items():
            out.append(f"<tr><td>{_e(rule_id)}</td><td class=\"subject\">{_e(subject)}</td><td>{_e(why)}</td>"
                       f"<td>{_e(a['reason'])}</td><td>{_e(a['approved_by'])}</td><td>{_e(a['expires'])}</td></tr>")
        out.append("</table>")
    if r.get("unused_acceptances"):
        out += ["<h2>Unused acceptances</h2>",
                "<p>No finding matched these acceptances: the problem was fixed, or the subject has a typo.</p>",
                "<table><tr><th>rule</th><th>subject</th><th>reason</th><th>approved by</th><th>until</th></tr>"]
        for a in r["unused_acceptances"]:
            out.append(f"<tr><td>{_e(a['rule'])}</td><td class=\"subject\">{_e(a['subject'])}</td>"
                       f"<td>{_e(a['reason'])}</td><td>{_e(a['approved_by'])}</td><td>{_e(a['expires'])}</td></tr>")
        out.append("</table>")
    out += ["<h2>Rules</h2>", "<table><tr><th>rule</th><th>severity</th><th>what it checks</th></tr>"]
    for rid, info in sorted(infos.items()):
        out.append(f"<tr><td>{escape(rid)}</td><td>{_sev(info.severity)}</td>"
                   f"<td><b>{escape(info.title)}</b>. {escape(info.description)}</td></tr>")
    out += ["</table>", f'<p class="meta">Generated by citydc audit {"sso" if sso else "ldap"}. '
            'Times in Asia/Taipei.</p>',
            "</body></html>", ""]
    return "\n".join(out)
