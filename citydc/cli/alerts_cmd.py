"""``citydc alerts``: Alertmanager's config generated from citydc.yaml, and the webhook receiver that
records every notification in the security log (docs/alerting.md)."""

from __future__ import annotations

import grp
import os
import signal
import socket
import stat
import tempfile
from pathlib import Path

import click
from rich.markup import escape

from citydc import amconfig, atomicfile, execute, files, web
from citydc.cli.output import EXIT_CONFIG, EXIT_FAILED, err, examples, fail, fail_write, load_config
from citydc.hostport import parse_host_port
from citydc.secrets import SecretUnavailable

__all__ = ["alerts_group"]


@click.group("alerts", epilog=examples("citydc alerts amconfig --output /etc/prometheus/alertmanager.yml --check",
                                       "citydc alerts webhook --web.config.file /etc/citydc/web.yml"))
def alerts_group() -> None:
    """Alertmanager config from citydc.yaml, and the webhook that records notifications."""


@alerts_group.command("amconfig", epilog=examples(
    "citydc alerts amconfig",
    "citydc alerts amconfig --output /etc/prometheus/alertmanager.yml --check",
    "citydc alerts amconfig --home-site fengshan --output am-fengshan.yml --secrets-dir /etc/prometheus/am-secrets"))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write alertmanager.yml here (atomically, 0600) instead of stdout.")
@click.option("--secrets-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the password files of env: references are written (0700; default: <output dir>/secrets).")
@click.option("--home-site", default=None, metavar="SITE",
              help="Generate for the Alertmanager of this site (default: alerting.home_site).")
@click.option("--check", is_flag=True, help="Also run `amtool check-config` on the result; exit 1 if it refuses.")
@click.pass_context
def amconfig_cmd(ctx: click.Context, output: Path | None, secrets_dir: Path | None, home_site: str | None,
                 check: bool) -> None:
    """Generate Alertmanager's alertmanager.yml from the alerting: section of citydc.yaml: receivers,
    routes by severity and site, grouping and the inhibitions across the two sites. Passwords are
    referenced by password_file, never written into the YAML."""
    loaded = load_config(ctx)
    cfg = loaded.config
    if home_site is not None:
        known = [s.id for s in cfg.sites]
        if home_site not in known:
            fail(f"--home-site {home_site}: unknown site (known: {', '.join(known)})", EXIT_CONFIG)
        cfg = cfg.model_copy(update={"alerting": cfg.alerting.model_copy(update={"home_site": home_site})})
    if secrets_dir is None and output is not None:
        secrets_dir = output.absolute().parent / "secrets"
    secrets_dir = secrets_dir.absolute() if secrets_dir else None
    try:
        files_ = amconfig.secret_files(cfg, secrets_dir)
        text = amconfig.render(cfg, secrets_dir)
    except ValueError as exc:
        fail(str(exc), EXIT_CONFIG)
    _warn_config(cfg, files_)
    if secrets_dir is not None and any(sf.generated for sf in files_.values()):
        problem = amconfig.secrets_dir_problem(secrets_dir)
        if problem:  # before anything is written: an existing shared directory is never chmod'ed
            fail(f"--secrets-dir {problem}", EXIT_CONFIG,
                 "it is left as it is (never chmod'ed): give a directory of its own for the password files, "
                 "e.g. /etc/prometheus/am-secrets")
    target = output.absolute() if output is not None else None
    staged = _stage(target, text) if target is not None else None
    try:
        if check:
            _check(cfg.tools.amtool, text, staged, target)
        written = _write_secrets(files_, secrets_dir)
        if staged is None:
            click.echo(text, nl=False)
            return
        try:
            staged.replace(target)  # only now: a refused or unwritable config leaves the old file in place
            atomicfile.fsync_dir(target.parent)
        except OSError as exc:
            fail_write(target, exc, "--output")
    finally:
        if staged is not None:
            staged.unlink(missing_ok=True)
    err.print(f"amconfig: wrote {target}")
    _report_access([target, *written])


def _warn_config(cfg, files_: dict) -> None:
    """Given the config and its password files, warn about what Alertmanager accepts but gets wrong:
    routes an earlier route takes alerts from, no receiver at all, unusable password files."""
    for warning in amconfig.shadowed_routes(cfg):
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    empty = amconfig.empty_receivers_warning(cfg)
    if empty:
        err.print(f"[yellow]warning:[/] {escape(empty)}")
    for sf in files_.values():
        problem = None if sf.generated else sf.ref.file_problem()  # missing too: Alertmanager reads it at send time
        if problem:
            err.print(f"[yellow]warning:[/] {escape(problem)}")


def _stage(target: Path, text: str) -> Path:
    """Given the output path and the config, write it to a temporary file in the same directory
    (0600, or 0640 while files.group is in effect; fsynced) and return that file."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=files.private_modes()[1])
        return atomicfile.stage(target, text, files.private_modes()[0])
    except OSError as exc:
        fail_write(target, exc, "--output")


def _write_secrets(files_: dict, secrets_dir: Path | None) -> list[Path]:
    try:
        written = amconfig.write_secret_files(files_)
    except amconfig.SecretsDirShared as exc:
        fail(f"--secrets-dir {exc}", EXIT_CONFIG)
    except SecretUnavailable as exc:
        fail(str(exc), EXIT_CONFIG, "set the variable the password references, then run again")
    except OSError as exc:
        fail(f"cannot write the password file: {exc.strerror}: {exc.filename}")
    if written:
        err.print(f"amconfig: {len(written)} password file(s) written under {secrets_dir}")
    return written


def _check(amtool: str, text: str, staged: Path | None, target: Path | None) -> None:
    """Given amtool, the config and its staged file (None: stdout), run amtool check-config on it;
    exit 1 naming amtool's error if it refuses (the target is not replaced)."""
    with tempfile.TemporaryDirectory(prefix="citydc-amconfig-") as tmp:
        path = staged
        if path is None:
            path = Path(tmp) / "alertmanager.yml"
            path.write_text(text, encoding="utf-8")
        try:
            result = execute.run("amtool", amconfig.check_config_argv(path, amtool), timeout=60)
        except execute.ToolFailed as exc:
            fail(str(exc), EXIT_FAILED, "amtool is in the Debian package prometheus-alertmanager")
    if not result.ok:
        said = (result.stdout + result.stderr).replace(str(path), "the generated config").strip()
        reason = next((line.split("FAILED:", 1)[1].strip() for line in said.splitlines() if "FAILED:" in line),
                      said.splitlines()[-1] if said else f"exit {result.returncode}")
        where = f"{target} left unchanged" if target is not None else "nothing printed"
        fail(f"amtool check-config refused the generated config ({where}): {reason}", EXIT_FAILED)
    err.print("amconfig: amtool check-config: SUCCESS")


def _group_gap(path: Path, gid: int) -> str | None:
    """Given a file and a group, return what keeps that group from reading it (the file's group or
    mode, or a directory on the way it cannot enter), else None."""
    st = path.stat()
    if not (st.st_mode & 0o004 or (st.st_gid == gid and st.st_mode & 0o040)):
        return f"{path} ({stat.S_IMODE(st.st_mode):04o} {_group_name(st.st_gid)})"
    for directory in path.parents:
        dst = directory.stat()
        if not (dst.st_mode & 0o001 or (dst.st_gid == gid and dst.st_mode & 0o010)):
            return f"{directory} ({stat.S_IMODE(dst.st_mode):04o} {_group_name(dst.st_gid)})"
    return None


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _report_access(paths: list[Path]) -> None:
    """Given the files written, say who can read them: Alertmanager runs as its own user (Debian:
    prometheus) and reads them through files.group; root alone reading them fails its reload."""
    gid = os.getegid()
    gaps = list(dict.fromkeys(gap for p in paths if (gap := _group_gap(p, gid))))
    modes = ", ".join(f"{p.name} {stat.S_IMODE(p.stat().st_mode):04o}" for p in paths)
    if not gaps:
        err.print(f"amconfig: group {_group_name(gid)} can read them ({modes})")
    elif os.geteuid() == 0:
        err.print(f"[yellow]warning:[/] only root can read {'; '.join(gaps)}: Alertmanager (Debian: user "
                  "prometheus) cannot load it; set files.group: prometheus in citydc.yaml and run amconfig "
                  "with that group (sg prometheus -c '...'), docs/alerting.md")
    else:
        err.print(f"amconfig: readable by their owner only ({modes}); files.group gives a group read access")


def _resolvable(host: str, where: str) -> None:
    """Given the host to serve on and the option or field naming it, exit 2 if the name does not resolve:
    a wrong address, like a port out of range, before anything is opened."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:  # the resolver is down for now: the bind says so, a failed start
            return
        fail(f"{where}: cannot resolve {host!r}: {exc.strerror}", EXIT_CONFIG,
             "give HOST:PORT with an address or a name of this host")
    except UnicodeError:  # not even a host name (an empty or over-long label: a..b): the IDNA encoding refuses it
        fail(f"{where}: {host!r} is not a host name or an address", EXIT_CONFIG,
             "give HOST:PORT with an address or a name of this host")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # systemd's SIGTERM ends serve_forever like Ctrl-C


@alerts_group.command("webhook", epilog=examples(
    "citydc alerts webhook",
    "citydc alerts webhook --listen 10.10.0.30:9095 --web.config.file /etc/citydc/web.yml"))
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Address to serve on (default: alerting.webhook.listen, 127.0.0.1:9095).")
@click.option("--web.config.file", "web_config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TLS and basic auth, in the web config format of Prometheus' exporters (docs/security.md). "
                   "With basic_auth_users, posts without valid credentials get 401 and are recorded.")
@click.pass_context
def webhook_cmd(ctx: click.Context, listen: str | None, web_config_file: Path | None) -> None:
    """Receive Alertmanager's webhook posts on /alerts and record every notification (firing and
    resolved, one per alert) in the security log exactly once: `citydc log search --action
    alert-notification`. Refused posts are recorded as alert-webhook-denied."""
    from citydc.alert_ledger import Ledger
    from citydc.alert_webhook import PATH, Receiver, server
    from citydc.seclog import emit_configured

    loaded = load_config(ctx)
    cfg = loaded.config
    try:
        host, port = parse_host_port(listen or cfg.alerting.webhook.listen, default_port=9095)
    except ValueError as exc:
        fail(f"--listen: {exc}", EXIT_CONFIG)
    _resolvable(host, "--listen" if listen else "alerting.webhook.listen")
    receiver_box: list[Receiver] = []
    try:
        web_cfg = web.Web(web_config_file, on_denied=lambda peer, reason: receiver_box[0].denied(peer, reason))
    except web.WebConfigError as exc:
        fail(str(exc), EXIT_CONFIG, "see docs/security.md for the web config file format")
    if not web_cfg.config.basic_auth_users:
        err.print("[yellow]warning:[/] no basic_auth_users in a web config file: any post is accepted "
                  "(give --web.config.file; docs/alerting.md)")
    state = cfg.alerting.webhook.state_dir
    try:
        ledger = Ledger(state / "ledger.db")
    except OSError as exc:
        fail(f"alerting.webhook.state_dir {state}: cannot open the ledger: {exc.strerror}")
    receiver = Receiver(ledger, lambda events: emit_configured(loaded, events),
                        spool=str(loaded.resolve(cfg.security_log.spool_dir)))
    receiver_box.append(receiver)
    try:
        srv = server(receiver, host, port)
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc.strerror}", hint="pick another address with --listen")
    web.secure(srv, web_cfg)
    endpoint = web.describe(web_cfg)
    signal.signal(signal.SIGTERM, _interrupt)
    err.print(f"webhook: receiving on {endpoint.scheme}://{host}:{port}{PATH}"
              f"{''.join(f' ({a})' for a in endpoint.auth)}; ledger {state / 'ledger.db'}")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
        ledger.close()
