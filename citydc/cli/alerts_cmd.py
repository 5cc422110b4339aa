"""``citydc alerts``: Alertmanager's config generated from citydc.yaml, and the webhook receiver that
records every notification in the security log (docs/alerting.md)."""

from __future__ import annotations

import signal
import socket
import tempfile
from pathlib import Path

import click

from citydc import amconfig, atomicfile, execute, web
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
    try:
        files = amconfig.secret_files(cfg, secrets_dir.absolute() if secrets_dir else None)
        text = amconfig.render(cfg, secrets_dir.absolute() if secrets_dir else None)
        written = amconfig.write_secret_files(files)
    except ValueError as exc:
        fail(str(exc), EXIT_CONFIG)
    except SecretUnavailable as exc:
        fail(str(exc), EXIT_CONFIG, "set the variable the password references, then run again")
    except OSError as exc:
        fail(f"cannot write the password file: {exc.strerror}: {exc.filename}")
    if written:
        err.print(f"amconfig: {len(written)} password file(s) written under {secrets_dir}")
    for sf in files.values():
        if not sf.generated and sf.path.exists():
            problem = sf.ref.file_problem()
            if problem:
                err.print(f"[yellow]warning:[/] {problem}")
    if output is None:
        click.echo(text, nl=False)
        target = None
    else:
        target = output.absolute()
        try:
            atomicfile.write(target, text, 0o600)  # (a temporary file that fails is removed)
        except OSError as exc:
            fail_write(target, exc, "--output")
        err.print(f"amconfig: wrote {target}")
    if check:
        _check(cfg.tools.amtool, text, target)


def _check(amtool: str, text: str, target: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="citydc-amconfig-") as tmp:
        path = target
        if path is None:
            path = Path(tmp) / "alertmanager.yml"
            path.write_text(text, encoding="utf-8")
        try:
            result = execute.run("amtool", amconfig.check_config_argv(path, amtool), timeout=60)
        except execute.ToolFailed as exc:
            fail(str(exc), EXIT_FAILED, "amtool is in the Debian package prometheus-alertmanager")
    if not result.ok:
        err.print(result.stdout + result.stderr)
        fail("amtool check-config refused the generated config", EXIT_FAILED)
    err.print("amconfig: amtool check-config: SUCCESS")


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
    receiver = Receiver(ledger, lambda events: emit_configured(loaded, events))
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
