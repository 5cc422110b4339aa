"""``citydc play``: run the playbooks of playbooks/ through ansible-runner, every run in the security log."""

from __future__ import annotations

import getpass
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

# Light on purpose: ``play run`` starts ansible-playbook before it imports Rich, the table and the config
# (docs/playbooks.md, "Early start"); output.out/err and citydc.cli.table are imported where used.
from citydc.cli import output
from citydc.cli.output import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    config_path,
    examples,
    exit_now,
    fail,
    load_config,
    print_json,
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SITE = re.compile(r"^[a-z][a-z0-9_-]*$")
# Variable names that hold a secret (keepalived_auth_pass, ansible_become_pass, admin_password, a passphrase, an API
# token, a private key's contents): refused with -e, whose values the run's command artifact records.
_SECRET_NAME = re.compile(r"(?:^|_)(?:pass|password|passwd|passphrase|secret|token|private_key)$", re.IGNORECASE)


def default_playbooks_dir() -> Path:
    """Return $CITYDC_PLAYBOOKS, or the checkout's playbooks/ (next to the citydc package)."""
    env = os.environ.get("CITYDC_PLAYBOOKS")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "playbooks"


def resolve_inventory(playbooks_dir: Path, name: str) -> Path:
    """Given the playbooks directory and an inventory name (inventories/<name>) or path, return its path.

    Raise click.BadParameter if it does not exist."""
    candidate = playbooks_dir / "inventories" / name
    path = candidate if _NAME.match(name.replace("-", "_")) and candidate.exists() else Path(name)
    if not path.exists():
        known = sorted(p.name for p in (playbooks_dir / "inventories").glob("*") if p.is_dir())
        raise click.BadParameter(f"no inventory {name!r} (known: {', '.join(known) or 'none'}; or give a path)",
                                 param_hint="--inventory")
    return path.resolve()


def parse_extra_vars(items: tuple[str, ...]) -> dict[str, str]:
    """Given -e NAME=VALUE items, return them as a dict. Raise click.BadParameter naming the bad item, or only the
    name of one that looks secret (``_SECRET_NAME``: its value would be recorded in the run's artifacts)."""
    out_vars: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not _NAME.match(name):
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="-e/--extra-var")
        if _SECRET_NAME.search(name):
            raise click.BadParameter(
                f"{name} looks like a secret: a -e value is recorded in the run's artifacts; give it as "
                f"--secret-var {name}=env:VAR or {name}=file:PATH", param_hint="-e/--extra-var")
        out_vars[name] = value
    return out_vars


def parse_secret_vars(items: tuple[str, ...]) -> dict[str, str]:
    """Given --secret-var NAME=env:VAR|file:PATH items, return {name: value}.

    Raise click.BadParameter naming the variable (never echoing what was given after '=')."""
    values: dict[str, str] = {}
    if not items:
        return values
    from citydc.secrets import SecretRef, SecretUnavailable  # (pydantic: imported only when needed)

    for item in items:
        name, sep, ref = item.partition("=")
        if not sep or not _NAME.match(name):
            raise click.BadParameter("expected NAME=env:VAR or NAME=file:PATH", param_hint="--secret-var")
        try:
            values[name] = SecretRef.parse(ref).reveal()
        except (ValueError, SecretUnavailable) as exc:
            raise click.BadParameter(f"{name}: {exc}", param_hint="--secret-var") from None
    return values


def check_secrets(secrets: dict[str, str], *, playbooks_dir: Path | None, inventory: Path | None,
                  names: tuple[str, ...] = (), where: str = "--secret-var") -> None:
    """Given the secret extra-vars, the playbooks directory, the inventory and other host names of the run, raise
    click.BadParameter (exit 2) naming the first refused one and why (``runner.secret_problem``: too short, or part
    of a name or file text that masking it would change and point at). Never quotes a value."""
    if not secrets:
        return
    from citydc.play.runner import secret_problem

    for name, value in secrets.items():
        problem = secret_problem(value, playbooks_dir=playbooks_dir, inventory=inventory, names=names)
        if problem:
            raise click.BadParameter(f"{name}: {problem}", param_hint=where)


def _check_limit(limit: str | None) -> None:
    """Given --limit, raise click.BadParameter when it names no host: Ansible takes an empty pattern ("", " ", ",")
    as no limit at all and runs on every host, so ``--limit "$HOSTS"`` with $HOSTS unset would touch them all."""
    if limit is not None and not re.sub(r"[\s,:]", "", limit):
        raise click.BadParameter(f"{limit!r} names no host (Ansible would run on every host); leave --limit out to "
                                 "run on all hosts", param_hint="--limit")


def _playbook(playbooks_dir: Path, name: str) -> str:
    path = (playbooks_dir / name).resolve()
    if path.parent != playbooks_dir.resolve() or not path.is_file():
        from citydc.play.runner import list_playbooks

        known = ", ".join(n for n, _ in list_playbooks(playbooks_dir)) or "none"
        raise click.BadParameter(f"no playbook {name!r} in {playbooks_dir} (known: {known})", param_hint="PLAYBOOK")
    return path.name


def _user() -> str:
    user = getpass.getuser()
    sudo = os.environ.get("SUDO_USER")
    return f"{sudo} (as {user})" if sudo and sudo != user else user


@click.group("play", epilog=examples("citydc play list", "citydc play run lb-rolling.yml --site siwei"))
def play_group() -> None:
    """Ansible playbooks for the load-balancer and virtualization tiers (ansible-runner).

    Every run is recorded in the security log: a playbook-run event when it starts and when it ends
    (user, playbook, inventory, limit, check mode, git revision, per-host counts, outcome, duration)
    and one playbook-task-changed event per changed task.
    """


_playbooks_option = click.option(
    "--playbooks", "playbooks_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
    help="The playbooks directory (default: $CITYDC_PLAYBOOKS, or playbooks/ of the checkout citydc runs from; "
         "the wheel has none: docs/playbooks.md).")


@play_group.command("list", epilog=examples("citydc play list", "citydc play list --json"))
@_playbooks_option
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def list_cmd(playbooks_dir: Path | None, as_json: bool) -> None:
    """List the playbooks and the inventories they can run against."""
    from citydc.play.runner import list_playbooks

    directory = playbooks_dir or default_playbooks_dir()
    if not directory.is_dir():
        fail(f"no playbooks directory at {directory}", EXIT_CONFIG, hint="set --playbooks or $CITYDC_PLAYBOOKS")
    from citydc.cli.table import Column, print_table

    books = list_playbooks(directory)
    inventories = sorted(p.name for p in (directory / "inventories").glob("*") if p.is_dir())
    if as_json:
        print_json({"playbooks_dir": str(directory), "inventories": inventories,
                    "playbooks": [{"name": n, "summary": s} for n, s in books]})
        return
    title = f"playbooks in {directory} (inventories: {', '.join(inventories)})"
    if not output.out.is_terminal:
        # piped (less, grep) or mailed: one whole line per playbook, nothing cut to a terminal's width
        from rich.text import Text

        width = max((len(n) for n, _ in books), default=0)
        output.out.print(Text(title))
        for book, summary in books:
            output.out.print(Text(f"{book:<{width}}  {summary}"))
        return
    print_table(output.out, [Column("playbook"), Column("what it does", text=True)], books, title=title)


@play_group.command("run", epilog=examples(
    "citydc play run lb-deploy.yml --inventory lab --check --diff",
    "citydc play run lb-rolling.yml --site siwei",
    "citydc play run vm-deploy.yml --limit hv-fengshan-1 --secret-var admin_password=env:VM_ADMIN_PW"))
@click.argument("playbook")
@click.option("--site", default=None, help="Only the hosts of this site (inventory group siwei or fengshan).")
@click.option("--limit", default=None, help="Only these hosts (an Ansible host pattern).")
@click.option("--check", is_flag=True, help="Show what would change; change nothing.")
@click.option("--diff", is_flag=True,
              help="Show the differences of changed files and settings under the table (--json: each changed "
                   "task's diff), masked, at most 8000 characters per task.")
@click.option("-e", "--extra-var", "extra_vars", multiple=True, metavar="NAME=VALUE",
              help="An extra variable (recorded by name in the events, by value in the run's artifacts); a name "
                   "that looks secret (*_pass, *_password, *_passphrase, *_secret, *_token) is refused: use "
                   "--secret-var.")
@click.option("--secret-var", "secret_vars", multiple=True, metavar="NAME=env:VAR|file:PATH",
              help="A secret extra variable read from the environment or a file: it never reaches events, "
                   "logs, argv or the artifact directory (tasks using it should set no_log). Refused when shorter "
                   "than 6 characters or part of a host, group, task or file name of the run (masking it there "
                   "would show it).")
@click.option("-i", "--inventory", envvar="CITYDC_INVENTORY", default="production", show_default=True,
              help="Inventory: a name under inventories/ of the playbooks directory, or a path ($CITYDC_INVENTORY).")
@_playbooks_option
@click.option("--artifacts", "artifacts_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where each run's artifact directory is kept (default: play-artifacts next to the spool).")
@click.option("--keep-runs", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="Artifact directories kept (older ones are removed).")
@click.option("--timeout", default=None, type=click.IntRange(1), help="Stop the run after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no live view).")
@click.pass_context
def run_cmd(ctx: click.Context, playbook: str, site: str | None, limit: str | None, check: bool, diff: bool,
            extra_vars: tuple[str, ...], secret_vars: tuple[str, ...], inventory: str, playbooks_dir: Path | None,
            artifacts_dir: Path | None, keep_runs: int, timeout: int | None, as_json: bool) -> None:
    """Run PLAYBOOK (a file in playbooks/) with a live view; exit 1 if any host failed or was unreachable, or
    Ansible stopped with an error (its message is shown), or --timeout ran out; 130 when interrupted (Ctrl-C,
    SIGTERM). A run stopped either way has ansible-playbook and the task it was running stopped first.

    With alerting.alertmanager_url in citydc.yaml, the run gets -e alertmanager_url (lb-rolling.yml silences
    the servers it drains) with alerting.alertmanager_http's CA, client certificate and basic auth (the password
    as a secret variable); an alertmanager_* variable given with -e or --secret-var replaces them all."""
    directory = (playbooks_dir or default_playbooks_dir()).resolve()
    if not directory.is_dir():
        fail(f"no playbooks directory at {directory}", EXIT_CONFIG, hint="set --playbooks or $CITYDC_PLAYBOOKS")
    if site is not None and not _SITE.match(site):
        raise click.BadParameter(f"expected a site id such as siwei or fengshan, got {site!r}", param_hint="--site")
    _check_limit(limit)
    name = _playbook(directory, playbook)
    inv = resolve_inventory(directory, inventory)
    plain = parse_extra_vars(extra_vars)
    secrets = parse_secret_vars(secret_vars)
    both = sorted(set(plain) & set(secrets))
    if both:
        raise click.BadParameter(f"{', '.join(both)} given both as -e and as --secret-var", param_hint="--secret-var")
    check_secrets(secrets, playbooks_dir=directory, inventory=inv)
    result, req, facts = _execute(ctx, directory, name, inv, site=site, limit=limit, check=check, diff=diff,
                                  plain=plain, secrets=secrets, artifacts_dir=artifacts_dir, keep_runs=keep_runs,
                                  timeout=timeout, live=not as_json)
    if as_json:
        print_json({"run_id": req.run_id, "playbook": name, "inventory": facts.inventory, "limit": facts.limit,
                    "check_mode": check, "revision": facts.revision, **result.to_json()})
    else:
        _report(name, result, diffs=diff)
    # the events are fsynced and the output written: skip the interpreter's teardown (about 0.1 s after a run)
    exit_now(_exit_code(result, failed=not result.ok))


def _exit_code(result: Any, *, failed: bool) -> int:
    """Given a run's result, return the exit code: 130 when interrupted (saying so last, as every command
    does), else 1 when ``failed``, else 0."""
    if result.interrupted:
        output.err.print("interrupted")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


DRIFT_PLAYBOOK = "lb-drift.yml"


@play_group.command("drift", epilog=examples("citydc play drift", "citydc play drift --inventory lab --json"))
@click.option("-i", "--inventory", envvar="CITYDC_INVENTORY", default="production", show_default=True,
              help="Inventory: a name under inventories/ of the playbooks directory, or a path ($CITYDC_INVENTORY).")
@click.option("-e", "--extra-var", "extra_vars", multiple=True, metavar="NAME=VALUE",
              help="An extra variable for the drift run (a name that looks secret is refused: use --secret-var).")
@click.option("--secret-var", "secret_vars", multiple=True, metavar="NAME=env:VAR|file:PATH",
              help="A secret variable (e.g. ansible_ssh_private_key_passphrase) read from the environment or a "
                   "file: it never reaches events, logs, argv or the artifact directory.")
@_playbooks_option
@click.option("--artifacts", "artifacts_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the run's artifact directory is kept (default: play-artifacts next to the spool).")
@click.option("--keep-runs", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="Artifact directories kept (older ones are removed).")
@click.option("--timeout", default=None, type=click.IntRange(1), help="Stop the run after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def drift_cmd(ctx: click.Context, inventory: str, extra_vars: tuple[str, ...], secret_vars: tuple[str, ...],
              playbooks_dir: Path | None,
              artifacts_dir: Path | None, keep_runs: int, timeout: int | None, as_json: bool) -> None:
    """Report where the load balancers of Siwei and Fengshan differ, per host and setting.

    Runs lb-drift.yml in check and diff mode against both sites (it reads each HAProxy's config file and runtime
    API, and keepalived.conf on the load balancers that are VRRP nodes; it changes nothing), compares the
    settings that are not per site by nature (paths, bind addresses and server addresses are left out) and lists
    each one that differs. Exit 0 when the sites agree, 1 when a setting drifts or the run fails, 2 for usage
    errors. The run is in the security log (playbook-run) with a playbook-drift event.
    """
    from citydc.play import drift as driftmod
    from citydc.play import events

    directory = (playbooks_dir or default_playbooks_dir()).resolve()
    if not directory.is_dir():
        fail(f"no playbooks directory at {directory}", EXIT_CONFIG, hint="set --playbooks or $CITYDC_PLAYBOOKS")
    name = _playbook(directory, DRIFT_PLAYBOOK)
    inv = resolve_inventory(directory, inventory)
    plain = parse_extra_vars(extra_vars)
    secrets = parse_secret_vars(secret_vars)
    both = sorted(set(plain) & set(secrets))
    if both:
        raise click.BadParameter(f"{', '.join(both)} given both as -e and as --secret-var", param_hint="--secret-var")
    check_secrets(secrets, playbooks_dir=directory, inventory=inv)
    report: dict[str, Any] = {}

    def compare(facts: Any, result: Any) -> list[dict[str, Any]]:
        try:
            hosts = driftmod.hosts_from_stats(result.stats_data)
        except driftmod.DriftError as exc:
            report["error"] = str(exc)
            return [events.drift_report(facts, in_sync=False, hosts={}, drift=[], error=str(exc))]
        found = driftmod.compare(hosts)
        report.update(driftmod.to_json(hosts, found))
        return [events.drift_report(facts, in_sync=not found, hosts=report["hosts"], drift=report["drift"])]

    result, req, facts = _execute(ctx, directory, name, inv, site=None, limit=None, check=True, diff=True,
                                  plain=plain, secrets=secrets, artifacts_dir=artifacts_dir, keep_runs=keep_runs,
                                  timeout=timeout, live=not as_json, more_events=compare)
    failed = not result.ok or "error" in report
    if as_json:
        print_json({"run_id": req.run_id, "inventory": facts.inventory, "revision": facts.revision,
                    "run": {"status": result.status, "rc": result.rc, "meaning": result.meaning,
                            "failures": result.failures},
                    **({"error": report["error"]} if "error" in report else {}),
                    **{k: v for k, v in report.items() if k != "error"}})
    else:
        from rich.markup import escape

        if not result.ok:
            _report(name, result)
        if "error" in report:
            output.err.print(f"[bold red]error:[/] {escape(report['error'])}")
        elif report["drift"]:
            _drift_table(report)
        else:
            output.out.print(f"no drift: {len(report['hosts'])} load balancers agree on {report['settings_compared']} "
                      "settings")
    exit_now(_exit_code(result, failed=failed or bool(report.get("drift"))))  # (as play run)


def _drift_table(report: dict[str, Any]) -> None:
    from citydc.cli.table import Column, print_table

    hosts = list(report["hosts"])
    columns = [Column("setting"), *(Column(f"{h} ({report['hosts'][h]})") for h in hosts),
               Column("between")]
    rows = [[d["setting"], *("(absent)" if d["values"][h] is None else d["values"][h] or "(set)" for h in hosts),
             "sites" if d["cross_site"] else "one site's pair"] for d in report["drift"]]
    print_table(output.out, columns, rows, title=f"drift: {len(rows)} settings differ between the load balancers")



def _execute(ctx: click.Context, directory: Path, name: str, inv: Path, *, site: str | None, limit: str | None,
             check: bool, diff: bool, plain: dict[str, str], secrets: dict[str, str], artifacts_dir: Path | None,
             keep_runs: int, timeout: int | None, live: bool,
             more_events: Callable[[Any, Any], list[dict[str, Any]]] | None = None) -> tuple[Any, Any, Any]:
    """Run one playbook with its events (start before, changed tasks and end after, plus ``more_events(facts,
    result)``); return (result, request, facts). A run that does not end normally is recorded, then fails.

    ansible-playbook is started before the config is loaded and waits, before any play, until the start event is
    on disk (citydc.play.runner, "Early start"); a config that fails to load, or a start event that cannot be
    written, cancels it: it ran nothing, and nothing records it."""
    from citydc.play.runner import RUN_LOCK, PlayRequest, Tracker, git_revision, limit_pattern, start_playbook

    req = PlayRequest(playbooks_dir=directory, playbook=name, inventory=inv,
                      artifacts_dir=artifacts_dir.absolute() if artifacts_dir is not None else None, site=site,
                      limit=limit, check=check, diff=diff, extra_vars=plain, secret_vars=secrets, keep_runs=keep_runs,
                      timeout=timeout, config_file=config_path((ctx.find_root().obj or {}).get("config_path")))
    tracker = Tracker(secrets=list(secrets.values()))
    run = start_playbook(req, tracker)
    try:
        import socket
        from concurrent.futures import ThreadPoolExecutor

        # git runs while the config models load (the start event needs both)
        with ThreadPoolExecutor(max_workers=1) as pool:
            revision = pool.submit(git_revision, directory)
            from citydc.play import events
            from citydc.seclog import emit_configured

            loaded = load_config(ctx)
        _check_site(site, loaded)
        config_vars, config_secrets = _alertmanager_vars(loaded.config.alerting, {*plain, *secrets})
        _check_secret_names(loaded, secrets, config_secrets, directory, inv)
        spool = loaded.resolve(loaded.config.security_log.spool_dir)
        artifacts = req.artifacts_dir or (spool.parent / "play-artifacts").absolute()
        facts = events.RunFacts(run_id=req.run_id, user=_user(), playbook=name,
                                inventory=inv.name if inv.parent == directory / "inventories" else str(inv),
                                site=site or "all", limit=limit_pattern(site, limit), check=check, diff=diff,
                                revision=revision.result(), host=socket.gethostname(),
                                extra_vars=[*plain, *config_vars], secret_vars=[*secrets, *config_secrets],
                                artifact_dir=str(artifacts / req.run_id))
        if not check:  # held by the run until it ends; a dry run changes nothing and may overlap
            run.hold(_take_run_lock(spool.parent / RUN_LOCK,
                                    f"{name} by {facts.user}, run {req.run_id} (pid {os.getpid()})"))
        if run.interrupted:  # SIGINT/SIGTERM before the run was recorded: it never ran
            raise KeyboardInterrupt
        emit_configured(loaded, events.run_start(facts))  # on disk before anything runs
    except BaseException:
        run.cancel()  # ansible-playbook is gone when this returns, and ran nothing
        raise
    try:
        # now ansible-playbook reads them and starts its plays
        run.release(config_vars, artifacts_dir=artifacts, secret_vars=config_secrets)
        if live:
            from citydc.play.view import live_view
        with live_view(output.err, tracker, name) if live else _null():
            result = run.wait()
    except BaseException as exc:  # the run did not end normally: record it, then let it propagate
        run.cancel()  # (nothing left to stop once wait() returned or raised)
        hosts = tracker.final if tracker.final is not None else tracker.hosts
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        # what it did is recorded all the same: its changed tasks, and how long it ran
        emit_configured(loaded, [
            *(events.task_changed(facts, event_uuid=t["uuid"], target=t["host"], task=t["task"], module=t["module"],
                                  play=t["play"]) for t in tracker.changed),
            events.run_end(facts, status="error", rc=None, meaning=reason,
                           duration_seconds=(run.ended or time.monotonic()) - run.started, hosts=hosts,
                           changed_tasks=len(tracker.changed), error=reason[:500])])
        if isinstance(exc, Exception):
            fail(f"{name}: {reason}")
        raise
    batch: list[dict[str, Any]] = [
        events.task_changed(facts, event_uuid=t["uuid"], target=t["host"], task=t["task"], module=t["module"],
                            play=t["play"]) for t in result.changed_tasks]
    first_failure = result.failures[0] if result.failures else None
    error = None if result.ok else (
        f"{first_failure['host']}: {first_failure['task']}: {first_failure['message']}" if first_failure
        else result.meaning)
    batch.append(events.run_end(facts, status=result.status, rc=result.rc, meaning=result.meaning,
                                duration_seconds=result.duration_seconds, hosts=result.hosts,
                                changed_tasks=len(result.changed_tasks), error=error[:500] if error else None,
                                ok=result.ok, warnings=result.warnings))
    if more_events is not None:
        batch += more_events(facts, result)
    emit_configured(loaded, batch)
    return result, req, facts


def _take_run_lock(path: Path, holder: str) -> int:
    """Given the control node's run lock and who asks, take it and return its descriptor, or end (exit 1) naming the
    run that holds it: the started ansible-playbook is cancelled, having run nothing, and nothing is recorded."""
    from citydc.play.runner import RunLocked, take_run_lock

    try:
        return take_run_lock(path, holder)
    except RunLocked as exc:
        fail(f"another run that may change hosts is in progress on this machine: {exc}", EXIT_FAILED,
             hint="wait for it to end; a --check run does not wait")
    except OSError as exc:
        fail(f"cannot take the run lock {path}: {exc.strerror or exc}", EXIT_FAILED)


AM_VARS = ("alertmanager_url", "alertmanager_ca_file", "alertmanager_cert_file", "alertmanager_key_file",
           "alertmanager_username", "alertmanager_password")


def _alertmanager_vars(alerting: Any, given: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Given the config's alerting section and the names of the extra-vars the operator gave, return the plain and
    the secret extra-vars that let lb-rolling.yml silence the servers it drains: alertmanager_url with the
    settings of alertmanager_http (the password read from its reference). None when the operator gave any of
    them: what the command line says wins as a whole (a URL of its own with the config's password would send
    that password elsewhere)."""
    url = alerting.alertmanager_url
    if not url or given & set(AM_VARS):
        return {}, {}
    http = alerting.alertmanager_http
    plain = {"alertmanager_url": url}
    for var, value in (("alertmanager_ca_file", http.ca_file), ("alertmanager_cert_file", http.cert_file),
                       ("alertmanager_key_file", http.key_file), ("alertmanager_username", http.username)):
        if value is not None:
            plain[var] = str(value)
    secret = {}
    if http.password is not None:
        from citydc.secrets import SecretUnavailable

        try:
            secret["alertmanager_password"] = http.password.reveal()
        except SecretUnavailable as exc:
            fail(f"alerting.alertmanager_http.password: {exc}", EXIT_CONFIG)
    return plain, secret


def _check_site(site: str | None, loaded: Any) -> None:
    """Given --site and the loaded config, end with a usage error (exit 2) unless it is a site of the config:
    a pattern matching no host is an error of Ansible's only after it started (ansible-playbook is cancelled)."""
    known = [s.id for s in loaded.config.sites]
    if site is not None and site not in known:
        fail(f"--site: no site {site!r} in {loaded.path} (sites: {', '.join(known)})", EXIT_CONFIG)


def _check_secret_names(loaded: Any, secrets: dict[str, str], config_secrets: dict[str, str], directory: Path,
                        inv: Path) -> None:
    """Given the loaded config, the --secret-var values (checked against the files already) and the config's own
    secrets, end with a usage error (exit 2) when one is refused (``check_secrets``): the --secret-var ones against
    the config's site ids and device names (the production inventory's hosts and groups), the config's against
    those and the files too. The run was started: it is cancelled, having run nothing."""
    names = (*(s.id for s in loaded.config.sites), *(d.name for d in loaded.config.devices))
    try:
        check_secrets(secrets, playbooks_dir=None, inventory=None, names=names)
    except click.BadParameter as exc:
        fail(f"--secret-var {exc.message}", EXIT_CONFIG)
    try:
        check_secrets(config_secrets, playbooks_dir=directory, inventory=inv, names=names)
    except click.BadParameter as exc:
        fail(f"alerting.alertmanager_http.password ({exc.message}) in {loaded.path}", EXIT_CONFIG)


def _null():
    from contextlib import nullcontext

    return nullcontext()


def vm_drift_lines(stats_data: dict[str, Any]) -> list[str]:
    """Given a run's stats_data, return the VM drift report of vm-deploy.yml (``vm_drift``) as lines: per hypervisor,
    in sync, or its missing, undeclared and differing VMs (field: declared -> actual), those it would define again
    but another hypervisor runs (moved), and the domains it has that another hypervisor owns (foreign)."""
    lines = []
    for hypervisor, d in sorted((stats_data.get("vm_drift") or {}).items()):
        parts = []
        if d.get("missing"):
            parts.append(f"missing {', '.join(d['missing'])}")
        for vm, fields in sorted((d.get("differing") or {}).items()):
            changes = ", ".join(f"{f} {v.get('declared')} -> {v.get('actual')}" for f, v in fields.items())
            parts.append(f"{vm} differs: {changes} (declared -> actual)")
        if d.get("undeclared"):
            parts.append(f"undeclared (not removed) {', '.join(d['undeclared'])}")
        if d.get("moved"):
            parts.append("runs on another hypervisor, not defined again: "
                         + ", ".join(f"{vm} on {hv}" for vm, hv in sorted(d["moved"].items())))
        if d.get("foreign"):
            parts.append("owned by another hypervisor: "
                         + ", ".join(f"{vm} ({owner})" for vm, owner in sorted(d["foreign"].items())))
        lines.append(f"vm drift {hypervisor}: " + ("; ".join(parts) if parts else "in sync"))
    return lines


def _print_diffs(result: Any) -> None:
    """Print the diff of each changed task that has one (``runner.diff_text``: masked, bounded), under the table."""
    from rich.text import Text

    styles = {"+": "green", "-": "red", "@": "cyan"}
    for task in result.changed_tasks:
        if not task.get("diff"):
            continue
        output.out.print(Text(f"diff {task['host']}: {task['task']}", style="bold"))
        for line in task["diff"].split("\n"):
            output.out.print(Text(line, style=styles.get(line[:1], "")))


def _report(name: str, result: Any, *, diffs: bool = False) -> None:
    from rich.markup import escape

    from citydc.cli.table import Column, print_table, status_style

    columns = [Column("host"), Column("result", style=status_style), Column("ok", right=True),
               Column("changed", right=True), Column("failed", right=True), Column("unreachable", right=True),
               Column("skipped", right=True)]
    err = output.err
    rows = []
    for host in sorted(result.hosts, key=lambda h: (-(result.hosts[h]["failed"] + result.hosts[h]["unreachable"]), h)):
        c = result.hosts[host]
        word = "failure" if c["failed"] or c["unreachable"] else "changed" if c["changed"] else "ok"
        rows.append([host, word, *(str(c[k]) for k in ("ok", "changed", "failed", "unreachable", "skipped"))])
    # ansible-runner's "successful" is not the verdict when the run failed anyway (no host matched)
    status = "failed" if not result.ok and result.status == "successful" else result.status
    print_table(output.out, columns, rows, title=f"{name}: {status} in {result.duration_seconds:.1f} s")
    if diffs:
        _print_diffs(result)
    for f in result.failures:
        err.print(f"[red]failed[/] {escape(f['host'])}: {escape(f['task'])}: {escape(f['message'])}")
    if not result.ok and not result.failures:
        # no host result says why: Ansible's own words do (a playbook that does not parse, no host matched)
        for line in result.messages:
            err.print(f"[dim]ansible:[/] {escape(line)}")
    for line in vm_drift_lines(result.stats_data):
        output.out.print(escape(line))
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    if not result.ok:
        # 254 is ansible-runner's code for a stopped run, not ansible-playbook's: not shown as an exit code
        code = "" if not result.rc or result.status in ("canceled", "timeout") else f" (exit code {result.rc})"
        err.print(f"[bold red]error:[/] {escape(name)}: {escape(result.meaning)}{code}; "
                  f"artifacts in {escape(str(result.artifact_dir))}")
