"""``citydc audit``: the LDAP directory audit, the authentication-log audit, night-to-night diffs.

Exit codes: 0 nothing at or above ``--fail-on``; 1 such a finding or detection, or the directory /
log could not be read; 2 the config, a baseline or accepted-risk file, or the options are wrong.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from citydc.cli import output, timefmt
from citydc.cli.output import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    escape,
    examples,
    exit_now,
    fail,
    load_config,
    print_json,
    show_times,
    visible,
    wide_option,
)
from citydc.cli.table import Column, print_table
from citydc.config.loader import LoadedConfig
from citydc.config.models import LdapSource
from citydc.secrets import SecretUnavailable

__all__ = ["audit_group"]

SWITCH_INTERVAL = 0.0005  # s, while `audit auth` runs (the interpreter's default is 0.005)
SEVERITY_CHOICE = click.Choice(["info", "low", "medium", "high", "critical", "none"])
_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}


def severity_style(value: str) -> str | None:
    return _STYLE.get(value)


# Severity, rule ids and subjects are never cut; the finding's message takes the remaining width.
FINDING_COLUMNS = (Column("severity", style=severity_style), Column("rule"), Column("subject"),
                   Column("finding", text=True))
# A change that is a regression (exit 1) in red: a finding new, back from an acceptance, or with more accounts.
_REGRESSION = ("new", "acceptance ended", "changed")
DIFF_COLUMNS = (Column("change", style=lambda v: "red" if v in _REGRESSION else "green"), *FINDING_COLUMNS)
DETECTION_COLUMNS = (Column("time"), Column("detection"), Column("source"), Column("what", text=True))


# Subjects, messages and detections carry text from outside (DNs from slapd's log or the directory, Keycloak's
# client and user names): every cell is shown with its control characters escaped (output.visible). Events and
# --json keep the original text, JSON-encoded.
def finding_rows(findings: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [[visible(str(f[k])) for k in ("severity", "rule", "subject", "message")] for f in findings]


def diff_rows(appeared: Sequence[dict[str, Any]], resolved: Sequence[dict[str, Any]],
              accepted: Sequence[dict[str, Any]] = (), ended: Sequence[dict[str, Any]] = (),
              changed: Sequence[dict[str, Any]] = ()) -> list[list[str]]:
    """Rows of ``audit diff``: new, acceptance ended, changed (a set of accounts grew: the accounts added are
    named), accepted (still there, not resolved), resolved."""
    grown = [{**f, "message": f"{f['message']} (added: {', '.join(f.get('added_accounts') or [])})"}
             for f in changed]
    return ([["new", *row] for row in finding_rows(appeared)]
            + [["acceptance ended", *row] for row in finding_rows(ended)]
            + [["changed", *row] for row in finding_rows(grown)]
            + [["accepted", *row] for row in finding_rows(accepted)]
            + [["resolved", *row] for row in finding_rows(resolved)])


def detection_rows(detections: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [[timefmt.show(d["when"]), visible(d["action"]), visible(d["source_ip"] or "-"), visible(d["message"])]
            for d in detections]


def socket_hostname() -> str:
    import socket  # here: the audits start their reads before anything they need only at the end is imported

    return socket.gethostname()


def _sources(loaded: LoadedConfig, name: str | None) -> list[LdapSource]:
    sources = loaded.config.ldap
    if not sources:
        fail("no ldap sources in the config", EXIT_CONFIG, hint="add an `ldap:` entry (see docs/ldap-audit.md)")
    if name is None:
        return list(sources)
    for s in sources:
        if s.name == name:
            return [s]
    fail(f"unknown ldap source {name!r} (known: {', '.join(s.name for s in sources)})", EXIT_CONFIG)


def _state_dir(loaded: LoadedConfig, src: LdapSource) -> Path:
    return loaded.resolve(src.state_dir)


def _state_path(loaded: LoadedConfig, src: LdapSource) -> Path:
    return _state_dir(loaded, src) / src.name / "state.json"


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _record(loaded: LoadedConfig, src: LdapSource, *, attempt: float, result: dict | None,
            error: str | None) -> None:
    """Update the source's state (0600) and rewrite the textfile metrics of every source in that directory."""
    from citydc.sso import metrics

    path = _state_path(loaded, src)
    st = _read_state(path)
    st.update({"site": src.site, "last_attempt": attempt, "last_error": error})
    if result is not None:
        st["last_success"] = time.time()
        st["result"] = {k: result[k] for k in ("score", "by_severity", "by_rule", "accounts", "duration_seconds",
                                                "run_id", "started")}
        st["result"]["accepted"] = len(result["accepted"])
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    from citydc import atomicfile

    atomicfile.write(path, json.dumps(st, indent=1), mode=0o600)
    if src.textfile_dir is not None:
        states = {s.name: _read_state(_state_path(loaded, s)) for s in loaded.config.ldap
                  if s.textfile_dir == src.textfile_dir}
        metrics.write(loaded.resolve(src.textfile_dir), {k: v for k, v in states.items() if v})


def print_findings(result: dict[str, Any], limit: int, wide: bool) -> None:
    print_table(output.out, FINDING_COLUMNS, finding_rows(result["findings"][:limit]), wide=wide,
                title=f"LDAP audit {result['source']} ({result['site']}): score {result['score']}, "
                      f"{len(result['findings'])} findings, {len(result['accepted'])} accepted")


def _output_path(template: str | None, source: str, many: bool) -> Path | None:
    if template is None:
        return None
    if many and "{source}" not in template:
        fail(f"{template}: several sources are audited; put {{source}} in the file name", EXIT_CONFIG)
    return Path(template.replace("{source}", source))


def _check_report_paths(names: Sequence[str], *, csv_path: str | None, html_path: str | None) -> None:
    """Refuse (exit 2) report options that could not be written, before any source is read: a name without
    {source} for several sources, a directory, a missing or unwritable directory, an unwritable file."""
    import os

    many = len(names) > 1
    for option, template in (("--csv", csv_path), ("--html", html_path)):
        for name in names:
            p = _output_path(template, name, many)
            if p is None:
                break
            where = p.parent  # missing directories are made (0700): the nearest existing one must take them
            while not where.exists() and where != where.parent:
                where = where.parent
            why = ("is a directory: name a file" if p.is_dir()
                   else f"{where} is not a directory" if not where.is_dir()
                   else f"directory {where} is not writable" if not os.access(where, os.W_OK | os.X_OK)
                   else "is not writable" if p.exists() and not os.access(p, os.W_OK)
                   else None)
            if why is not None:
                fail(f"{option} {visible(str(p))}: {why}", EXIT_CONFIG)


def _write_reports(result: dict[str, Any], source: str, many: bool, *, csv_path: str | None,
                   html_path: str | None) -> bool:
    """Write one source's audit result as CSV and as HTML where ``--csv`` / ``--html`` ask for them.
    Return False (after one line on stderr) if one could not be written."""
    from citydc.sso import report
    ok = True
    for template, render in ((csv_path, report.to_csv), (html_path, report.to_html)):
        if (p := _output_path(template, source, many)) is not None:
            try:
                _write_private(p, render(result))
            except OSError as exc:
                output.err.print(f"[bold red]error:[/] cannot write {escape(visible(str(p)))}: "
                                 f"{escape(exc.strerror or str(exc))}")
                ok = False
    return ok


def _note_acceptances(result: dict[str, Any]) -> None:
    """Say on stderr which acceptances matched no finding (the problem was fixed, or the subject has a typo)."""
    for a in result.get("unused_acceptances") or []:
        output.err.print(f"[yellow]note:[/] acceptance of {escape(visible(a['rule']))} for "
                         f"{escape(visible(a['subject']))} matched no finding (fixed, or a typo in the subject)")


def _write_private(path: Path, text: str) -> None:
    # Reports name accounts and weaknesses: owner-only, like every file citydc writes.
    from citydc import atomicfile

    atomicfile.write(path, text, mode=0o600)


@click.group("audit", epilog=examples("citydc audit ldap", "citydc audit sso", "citydc audit auth --json"))
def audit_group() -> None:
    """Audits of the LDAP directory (accounts, policies, privileged groups, server), of its binds, and of
    Keycloak (realm posture, clients, administrators, leavers)."""


@audit_group.command("ldap", epilog=examples("citydc audit ldap",
                                             "citydc audit ldap --html audit-{source}.html --fail-on high"))
@click.option("--source", "source_name", help="Only this ldap source (default: every one).")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@click.option("--csv", "csv_path", metavar="FILE", help="Write the findings as CSV ({source} in the name for several).")
@click.option("--html", "html_path", metavar="FILE",
              help="Write the self-contained HTML report ({source} in the name for several).")
@click.option("--fail-on", type=SEVERITY_CHOICE, default="high", show_default=True,
              help="Exit 1 when an active finding has this severity or worse (none: never).")
@click.option("--no-events", is_flag=True, help="Do not write findings to the security log.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Findings shown in the table (all of them are in --json/--csv/--html).")
@click.option("--reader", type=click.Choice(["ldapsearch", "ldap3"]), help="Override the sources' bulk_reader.")
@wide_option
@click.pass_context
def ldap_cmd(ctx: click.Context, source_name: str | None, as_json: bool, csv_path: str | None, html_path: str | None,
             fail_on: str, no_events: bool, limit: int, reader: str | None, wide: bool) -> None:
    """Audit the directory: password storage, stale accounts, password age and policies, privileged groups
    against the baseline, duplicates, server posture. Accepted risks are suppressed until they expire."""
    # The cyclic collector stays paused for the whole audit (its imports and the bulk read make many
    # objects and no garbage cycles of note; docs/ldap-audit.md, "Performance"); on again when it ends.
    gc.disable()
    try:
        _ldap(ctx, source_name, as_json, csv_path, html_path, fail_on, no_events, limit, reader, wide)
    finally:
        gc.enable()


def _ldap(ctx: click.Context, source_name: str | None, as_json: bool, csv_path: str | None, html_path: str | None,
          fail_on: str, no_events: bool, limit: int, reader: str | None, wide: bool) -> None:
    # Only what starts the bulk search is imported before it runs: ldap3, the rules and the reports load
    # while slapd and ldapsearch already work (docs/ldap-audit.md, "Performance").
    from citydc.sso import files
    from citydc.sso.bulk_search import DirectoryError, prepare

    loaded = load_config(ctx)
    sources = _sources(loaded, source_name)
    _check_report_paths([s.name for s in sources], csv_path=csv_path, html_path=html_path)
    results, failed = [], False
    for src in sources:
        if reader is not None:
            src = src.model_copy(update={"bulk_reader": reader})
        attempt, started = time.time(), time.monotonic()
        try:
            password = src.bind_password.reveal()
        except SecretUnavailable as exc:
            fail(f"ldap source {src.name}: bind_password: {exc}", EXIT_CONFIG)
        try:
            prepared = prepare(src, password, loaded.resolve)  # the reviewed files, then the search starts
        except files.FileInvalid as exc:
            fail(f"ldap source {src.name}: {exc}", EXIT_CONFIG)
        except DirectoryError as exc:
            _record(loaded, src, attempt=attempt, result=None, error=str(exc))
            output.err.print(f"[bold red]ldap source {escape(src.name)}:[/] {escape(visible(str(exc)))}")
            failed = True
            continue
        try:
            from citydc.sso import events, metrics, report, runs  # noqa: F401 (metrics: for _record, after the read)
            from citydc.sso.ldap_audit import run_audit
            from citydc.sso.model import severity_rank
            if not no_events:
                from citydc.seclog import emit_configured  # here, not after the read: its imports take time
        except BaseException:
            prepared.close()
            raise
        try:
            run = run_audit(src, password, resolve=loaded.resolve, prepared=prepared, started=started)
        except DirectoryError as exc:
            _record(loaded, src, attempt=attempt, result=None, error=str(exc))
            output.err.print(f"[bold red]ldap source {escape(src.name)}:[/] {escape(visible(str(exc)))}")
            failed = True
            continue
        result = run.to_json()
        runs.save_run(_state_dir(loaded, src), result)
        if not no_events:
            host = socket_hostname()
            when = datetime.now(UTC)
            evs = [events.finding_event(f, source=src.name, site=src.site, run_id=run.run_id, when=when, host=host)
                   for f in run.findings]
            evs.append(events.posture_event(result, site=src.site, when=when, host=host))
            emit_configured(loaded, evs)
        _record(loaded, src, attempt=attempt, result=result, error=None)
        many = len(sources) > 1
        if not _write_reports(result, src.name, many, csv_path=csv_path, html_path=html_path):
            failed = True
        results.append(result)
        if fail_on != "none" and run.worst() is not None and severity_rank(run.worst()) >= severity_rank(fail_on):
            failed = True
    if as_json:
        print_json({"runs": results})
    else:
        for result in results:
            print_findings(result, limit, wide)
            hidden = len(result["findings"]) - limit
            if hidden > 0:
                output.out.print(f"… {hidden} more findings (use --csv, --html or --json)")
            sev = ", ".join(f"{k} {v}" for k, v in result["by_severity"].items() if v) or "none"
            output.out.print(f"{result['accounts']} accounts in {result['duration_seconds']:.1f} s; findings: {sev}")
            for note in result["notes"]:
                output.err.print(f"[yellow]note:[/] {escape(visible(note))}")
            _note_acceptances(result)
    # Everything is written, synced and closed: the interpreter's teardown would free a 100k-account read's
    # objects one by one (about 0.13 s after the output on bench/ldap_audit.py's directory).
    exit_now(EXIT_FAILED if failed else EXIT_OK)


@audit_group.command("diff", epilog=examples("citydc audit diff", "citydc audit diff --source city-directory --json"))
@click.argument("runs_given", nargs=-1, type=click.Path(dir_okay=False, exists=True), metavar="[OLD NEW]")
@click.option("--source", "source_name", help="ldap or keycloak source whose last two runs are compared.")
@click.option("--json", "as_json", is_flag=True, help="Print the difference as JSON.")
@wide_option
@click.pass_context
def diff_cmd(ctx: click.Context, runs_given: Sequence[str], source_name: str | None, as_json: bool,
             wide: bool) -> None:
    """Compare two audit runs (default: the source's last two): findings that appeared, were resolved, were
    newly accepted, came back when their acceptance ended, or gained accounts, and the posture score change.
    Exit 1 when findings appeared, came back or grew, or the score dropped, and when the source has fewer than
    two saved runs (the first night)."""
    from citydc.sso import runs

    if runs_given and len(runs_given) != 2:
        fail("give two run files (OLD NEW) or none", EXIT_CONFIG)
    if runs_given:
        paths = [Path(p) for p in runs_given]
    else:
        loaded = load_config(ctx)
        sso = [s for s in loaded.config.sso if s.name == source_name and getattr(s, "kind", "") == "keycloak"]
        if sso:  # a Keycloak source of `citydc audit sso`
            state_dir, name = loaded.resolve(sso[0].state_dir), sso[0].name
        else:
            srcs = _sources(loaded, source_name)
            if len(srcs) > 1:
                fail("several ldap sources: choose one with --source", EXIT_CONFIG)
            state_dir, name = _state_dir(loaded, srcs[0]), srcs[0].name
        paths = runs.list_runs(state_dir, name)[-2:]
        if len(paths) < 2:
            fail(f"source {name} has {len(paths)} saved run(s); a diff needs two", EXIT_FAILED,
                 hint="run `citydc audit ldap` (or `audit sso`) again")
    try:
        old, new = runs.load_run(paths[0]), runs.load_run(paths[1])
    except ValueError as exc:
        fail(visible(str(exc)), EXIT_CONFIG)
    if (why := runs.comparable(old, new)) is not None:
        fail(visible(why), EXIT_CONFIG)
    if (why := runs.order_problem(old, new)) is not None:
        fail(visible(why), EXIT_CONFIG)
    d = runs.diff(old, new)
    if as_json:
        print_json(d.to_json())
    else:
        print_table(output.out, DIFF_COLUMNS, diff_rows(d.appeared, d.resolved, d.accepted, d.acceptance_ended,
                                                        d.changed), wide=wide,
                    title=f"audit diff: score {d.old['score']} → {d.new['score']} ({d.score_change:+d})")
    # A risk newly accepted is no regression; an acceptance that ended is a finding appearing again.
    ctx.exit(EXIT_FAILED if d.regressed else EXIT_OK)


def _privileged(loaded: LoadedConfig, src: LdapSource) -> list[str]:
    """Return the privileged DNs for the off-hours detection: every member in the baseline file."""
    from citydc.sso import files

    if src.baseline_file is None:
        return []
    try:
        return [m for members in files.load_baseline(loaded.resolve(src.baseline_file)).values() for m in members]
    except files.FileInvalid as exc:
        fail(f"ldap source {src.name}: {exc}", EXIT_CONFIG)


@dataclass
class _AuthGroup:
    """What one detector sees: a directory and the Keycloak servers federated to it (read through the admin API
    or from their logs), or a Keycloak alone."""

    name: str
    ldap: LdapSource | None
    log: Path | None
    keycloaks: list[Any]
    state: Path
    kc_logs: list[Any]

    def settings(self) -> Any:
        if self.ldap is not None:
            return self.ldap.auth
        return (self.keycloaks or self.kc_logs)[0].auth


def _auth_groups(loaded: LoadedConfig, name: str | None, log_path: str | None) -> list[_AuthGroup]:
    from citydc.config.models import KeycloakSource, SsoLogSource

    logs = [s for s in loaded.config.sso if isinstance(s, SsoLogSource)]
    if log_path and name is None and len(loaded.config.ldap) > 1:
        # One file is one directory's log: given to every source, each bind would count once per directory.
        fail(f"--log {log_path}: several ldap sources ({', '.join(s.name for s in loaded.config.ldap)}); "
             "name the one this log belongs to with --source", EXIT_CONFIG)
    kcs = [s for s in loaded.config.sso if isinstance(s, KeycloakSource) and s.events]
    ldaps = {s.name: s for s in loaded.config.ldap}
    groups: list[_AuthGroup] = []
    for src in loaded.config.ldap:
        linked = [k for k in kcs if k.ldap_source == src.name]
        linked_logs = [s for s in logs if s.ldap_source == src.name]
        if src.stats_log is None and not log_path and not linked and not linked_logs:
            continue
        log = Path(log_path) if log_path else (loaded.resolve(src.stats_log) if src.stats_log else None)
        groups.append(_AuthGroup(src.name, src, log, linked, _state_dir(loaded, src) / src.name / "authlog.json",
                                 linked_logs))
    for k in kcs:
        if k.ldap_source is None or k.ldap_source not in ldaps:
            groups.append(_AuthGroup(k.name, None, None, [k], loaded.resolve(k.state_dir) / k.name / "events.json",
                                     []))
    for s in logs:
        if s.ldap_source is None or s.ldap_source not in ldaps:
            groups.append(_AuthGroup(s.name, None, None, [], loaded.resolve(s.state_dir) / s.name / "events.json",
                                     [s]))
    if name is not None:
        groups = [g for g in groups if g.name == name or any(s.name == name for s in [*g.keycloaks, *g.kc_logs])]
        if not groups:
            fail(f"no ldap source with a stats_log and no sso source named {name!r}", EXIT_CONFIG)
    if not groups:
        fail("nothing to read: no ldap source has a stats_log and no sso source reads events", EXIT_CONFIG,
             hint="set ldap[].stats_log, pass --log, or add an `sso:` entry (kind: keycloak, or kind: log with "
                  "Keycloak's log file)")
    return groups


@audit_group.command("auth", epilog=examples("citydc audit auth", "citydc audit auth --from-start --json"))
@click.option("--source", "source_name",
              help="Only this ldap or sso source (an sso source federated to a directory brings its "
                   "directory's group).")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), help="Read this stats log instead of stats_log.")
@click.option("--from-start", is_flag=True,
              help="Forget where the last run stopped; read the whole log and every stored event again.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts and detections as JSON.")
@wide_option
@timefmt.utc_show_option
@click.pass_context
def auth_cmd(ctx: click.Context, source_name: str | None, log_path: str | None, from_start: bool,
             as_json: bool, wide: bool, utc: bool) -> None:
    """Read the directory's binds from slapd's stats log and Keycloak's login and admin events, stored (through
    the admin API) or logged (sso sources of kind log: Keycloak's log file), each resuming where the last run
    stopped; record each as an ECS event (ldap-bind, sso-login, iam-*), and
    detect brute force, password spraying, success after failures and privileged logins outside working
    hours across a directory and the Keycloak servers federated to it together. Exit 1 when something was
    detected or a source could not be read."""
    # Tens of thousands of events pass through in batches: the collector would scan the imported modules and
    # each pending batch again and again (about a sixth of the run, bench/sso_events.py). The modules' objects
    # are frozen out of its scans and it runs less often, but it runs: a long first read stays bounded.
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(10_000, 10, 10)
    # Keycloak's pages are fetched in a thread of its own, which needs the interpreter only briefly (a chunk of
    # an answer) but waits for it behind the mapping, up to a switch interval each time: 5 ms by default made
    # each page wait longer for the interpreter than for Keycloak (bench/sso_events.py). A shorter interval
    # lets it in sooner.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        _auth(ctx, source_name, log_path, from_start, as_json, wide, utc)
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _auth(ctx: click.Context, source_name: str | None, log_path: str | None, from_start: bool, as_json: bool,
          wide: bool, utc: bool) -> None:
    from citydc.seclog import emit_configured
    from citydc.sso.auth_audit import KeycloakFeed, KeycloakLogFeed, LdapFeed, run_auth
    from citydc.sso.keycloak import Keycloak

    loaded = load_config(ctx)
    show_times(loaded, utc)
    reports, detected = [], False
    for g in _auth_groups(loaded, source_name, log_path):
        feeds = []
        for k in g.keycloaks:
            try:
                secret = k.client_secret.reveal()
            except SecretUnavailable as exc:
                fail(f"sso source {k.name}: client_secret: {exc}", EXIT_CONFIG)
            client = Keycloak(k.base_url, k.client_id, secret, auth_realm=k.auth_realm or "master",
                              ca_file=loaded.resolve(k.ca_file) if k.ca_file else None, timeout=k.timeout_seconds)
            feeds.append(KeycloakFeed(k.name, k.site, k.realms, client, k.page_size))
        ldap = LdapFeed(g.ldap.name, g.ldap.site, g.log) if g.ldap is not None and g.log is not None else None
        kc_logs = [KeycloakLogFeed(s.name, s.site, loaded.resolve(s.log_path), s.format) for s in g.kc_logs]
        try:
            report = run_auth(group=g.name, ldap=ldap, keycloaks=feeds, settings=g.settings(), state_path=g.state,
                              emit=lambda evs: emit_configured(loaded, evs),
                              privileged=_privileged(loaded, g.ldap) if g.ldap is not None else (),
                              from_start=from_start, kc_logs=kc_logs)
        except OSError as exc:  # the state (an unreadable log is in the report's errors)
            output.err.print(f"[bold red]{escape(g.name)}:[/] cannot write {escape(str(exc.filename or g.state))}: "
                             f"{escape(exc.strerror or str(exc))}")
            detected = True
            continue
        finally:
            for f in feeds:
                f.client.close()
        if report.get("long_lines"):
            from citydc.sso.authlog import MAX_LINE

            at = report["long_lines"]
            output.err.print(f"[yellow]warning:[/] {escape(str(g.log))}: {len(at)}{'+' if len(at) >= 100 else ''} "
                             f"line(s) longer than {MAX_LINE} bytes skipped, the first at byte offset {at[0]}")
        for w in report.get("warnings", []):
            output.err.print(f"[yellow]warning:[/] {escape(visible(w))}")
        unread = _warn_unknown_format(report)
        for name, c in (report.get("sso") or {}).items():
            unread = _warn_unread_lines(name, c) or unread
        for e in report.get("errors", []):  # each names its source (run_auth)
            output.err.print(f"[bold red]error:[/] {escape(visible(e))}")
        # Event lines of a Keycloak log that could not be read are logins not audited: the run says so in its
        # exit code too, as for a source that could not be read.
        detected = detected or bool(report["detections"]) or bool(report.get("errors")) or unread
        reports.append(report)
    if as_json:
        print_json({"sources": reports})
    else:
        for r in reports:
            if r["log"] is not None and r.get("log_failed"):
                output.out.print(f"{r['source']}: stats log not read (see the error above)")
            elif r["log"] is not None:
                output.out.print(f"{r['source']}: {r['binds']} binds ({r['success']} ok, {r['failure']} failed"
                          + (f", {r['relayed']} relayed by SSO" if r["relayed"] else "") + f") from {r['log']}"
                          + (" (log rotated: read from its start)" if r["log_restarted"] else ""))
            for name, c in (r.get("sso") or {}).items():
                if c.get("failed"):  # its error is on stderr; a count of what was read would read as "no logins"
                    output.out.print(f"{name}: SSO events not read completely (see the error above)")
                    continue
                output.out.print(f"{name}: {c['logins']} SSO logins ({c['success']} ok, {c['failure']} failed), "
                          f"{c['events']} other user events, {c['admin_events']} admin events"
                          + (f" from {c['log']}" if c.get("log") else "")
                          + (" (log rotated: read from its start)" if c.get("log_restarted") else ""))
            if r["detections"]:
                print_table(output.out, DETECTION_COLUMNS, detection_rows(r["detections"]), wide=wide,
                            title=f"detections ({r['source']}), times {timefmt.zone_name()}")
    exit_now(EXIT_FAILED if detected else EXIT_OK)  # all written and synced: no teardown (as audit ldap)


def _warn_unknown_format(report: dict[str, Any]) -> bool:
    """Say so when the stats log's lines were read and none was in a format the parser knows (rsyslog's
    traditional "Dec  8 10:00:00 host slapd[1]:" lines, say): "0 binds" read as a quiet directory, not as an
    audit that read nothing. Return whether it was so (the run then exits 1, as for a log not read)."""
    unknown = report.get("skipped_lines", 0) - len(report.get("long_lines") or [])
    if report.get("log") is None or report.get("binds") or unknown <= 0:
        return False
    output.err.print(f"[yellow]warning:[/] {escape(visible(report['log']))}: {unknown} line(s) and no bind in a "
                     "format citydc reads (slapd -d stats, or syslog lines with an RFC 3339 time such as rsyslog's "
                     "RSYSLOG_FileFormat): nothing was audited; see docs/ldap-audit.md")
    return True


def _warn_unread_lines(name: str, counts: dict[str, Any]) -> bool:
    """Say which lines of a Keycloak log (kind: log) were skipped: unreadable event lines and over-long lines.
    Return whether any event line was unreadable."""
    from citydc.sso.authlog import MAX_LINE

    if counts.get("unreadable_lines"):
        first = counts["unreadable"][0]
        output.err.print(f"[yellow]warning:[/] sso source {escape(name)}: {escape(str(counts['log']))}: "
                         f"{counts['unreadable_lines']} event line(s) unreadable, the first at byte offset "
                         f"{first['offset']}: {escape(visible(first['why']))}")
    if at := counts.get("long_lines"):
        output.err.print(f"[yellow]warning:[/] sso source {escape(name)}: {escape(str(counts['log']))}: "
                         f"{len(at)}{'+' if len(at) >= 100 else ''} line(s) longer than {MAX_LINE} bytes skipped, "
                         f"the first at byte offset {at[0]}")
    return bool(counts.get("unreadable_lines"))


def _keycloak_sources(loaded: LoadedConfig, name: str | None) -> list[Any]:
    from citydc.config.models import KeycloakSource

    sources = [s for s in loaded.config.sso if isinstance(s, KeycloakSource)]
    if not sources:
        fail("no keycloak sources in the config", EXIT_CONFIG,
             hint="add an `sso:` entry with kind: keycloak (see docs/sso-audit.md)")
    if name is None:
        return sources
    for s in sources:
        if s.name == name:
            return [s]
    fail(f"unknown keycloak source {name!r} (known: {', '.join(s.name for s in sources)})", EXIT_CONFIG)


@audit_group.command("sso", epilog=examples("citydc audit sso",
                                            "citydc audit sso --html sso-{source}.html --fail-on high"))
@click.option("--source", "source_name", help="Only this keycloak source (default: every one).")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@click.option("--csv", "csv_path", metavar="FILE", help="Write the findings as CSV ({source} in the name for several).")
@click.option("--html", "html_path", metavar="FILE",
              help="Write the self-contained HTML report ({source} in the name for several).")
@click.option("--fail-on", type=SEVERITY_CHOICE, default="high", show_default=True,
              help="Exit 1 when an active finding has this severity or worse (none: never).")
@click.option("--no-events", is_flag=True, help="Do not write findings to the security log.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Findings shown in the table (all of them are in --json/--csv/--html).")
@wide_option
@click.pass_context
def sso_cmd(ctx: click.Context, source_name: str | None, as_json: bool, csv_path: str | None, html_path: str | None,
            fail_on: str, no_events: bool, limit: int, wide: bool) -> None:
    """Audit Keycloak through its admin API: realm posture (brute-force detection, password policy, event
    saving, admin events, token and session lifespans), clients (redirect URIs, public clients with direct
    access grants), administrators without OTP, LDAP federation without TLS, and leavers (disabled or missing
    in the ldap_source directory) still enabled in Keycloak. Same accepted risks, reports, score and exit code
    as `citydc audit ldap`."""
    from citydc.sso import events, files, runs
    from citydc.sso.directory import DirectoryError
    from citydc.sso.keycloak import KeycloakError
    from citydc.sso.model import severity_rank
    from citydc.sso.sso_audit import result_json, run_sso_audit

    loaded = load_config(ctx)
    sources = _keycloak_sources(loaded, source_name)
    _check_report_paths([s.name for s in sources], csv_path=csv_path, html_path=html_path)
    results, failed = [], False
    said: set[str] = set()
    for src in sources:
        try:
            secret = src.client_secret.reveal()
        except SecretUnavailable as exc:
            fail(f"sso source {src.name}: client_secret: {exc}", EXIT_CONFIG)
        ldap = None
        if src.ldap_source is not None:
            lsrc = next(s for s in loaded.config.ldap if s.name == src.ldap_source)
            try:
                ldap = (lsrc, lsrc.bind_password.reveal())
            except SecretUnavailable as exc:
                fail(f"ldap source {lsrc.name}: bind_password: {exc}", EXIT_CONFIG)
        try:
            run = run_sso_audit(src, secret, resolve=loaded.resolve, ldap=ldap)
        except files.FileInvalid as exc:
            fail(f"sso source {src.name}: {exc}", EXIT_CONFIG)
        except (KeycloakError, DirectoryError) as exc:
            output.err.print(f"[bold red]sso source {escape(src.name)}:[/] {escape(visible(str(exc)))}")
            failed = True
            continue
        result = result_json(run)
        said.update(run.unchecked)
        for why in run.unchecked:  # a check that could not run: said as an error, and the run exits 1
            output.err.print(f"[bold red]sso source {escape(src.name)}:[/] {escape(visible(why))}")
            failed = True
        runs.save_run(loaded.resolve(src.state_dir), result)
        if not no_events:
            from citydc.seclog import emit_configured

            host = socket_hostname()
            when = datetime.now(UTC)
            evs = [events.finding_event(f, source=src.name, site=src.site, run_id=run.run_id, when=when, host=host,
                                        action="sso-audit-finding", dataset=events.SSO_AUDIT_DATASET)
                   for f in run.findings]
            evs.append(events.posture_event(result, site=src.site, when=when, host=host,
                                            action="sso-audit-posture", dataset=events.SSO_AUDIT_DATASET))
            emit_configured(loaded, evs)
        many = len(sources) > 1
        if not _write_reports(result, src.name, many, csv_path=csv_path, html_path=html_path):
            failed = True
        results.append(result)
        if fail_on != "none" and run.worst() is not None and severity_rank(run.worst()) >= severity_rank(fail_on):
            failed = True
    if as_json:
        print_json({"runs": results})
    else:
        for result in results:
            print_table(output.out, FINDING_COLUMNS, finding_rows(result["findings"][:limit]), wide=wide,
                        title=f"SSO audit {result['source']} ({result['site']}): score {result['score']}, "
                              f"{len(result['findings'])} findings, {len(result['accepted'])} accepted")
            hidden = len(result["findings"]) - limit
            if hidden > 0:
                output.out.print(f"… {hidden} more findings (use --csv, --html or --json)")
            sev = ", ".join(f"{k} {v}" for k, v in result["by_severity"].items() if v) or "none"
            output.out.print(f"{result['accounts']} users in {result['policies']} realms, "
                             f"{result['duration_seconds']:.1f} s; findings: {sev}")
            for note in result["notes"]:
                if note in said:
                    continue  # an unchecked rule: already an error line
                output.err.print(f"[yellow]note:[/] {escape(visible(note))}")
            _note_acceptances(result)
    ctx.exit(EXIT_FAILED if failed else EXIT_OK)
