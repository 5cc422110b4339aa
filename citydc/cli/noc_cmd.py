"""``citydc noc``: the NOC wall page."""

from __future__ import annotations

import signal
import sys
import urllib.parse
from pathlib import Path

import click

from citydc import web
from citydc.cli.output import EXIT_CONFIG, err, examples, fail, load_config, print_json
from citydc.hostport import parse_host_port

__all__ = ["noc_group"]


@click.group("noc", epilog=examples("citydc noc serve", "citydc noc show --json"))
def noc_group() -> None:
    """The NOC wall page: alerts, site status, link utilisation, backups and audits."""


def _url(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"{field}: expected an http:// or https:// URL", EXIT_CONFIG)
    if parts.username or parts.password:
        fail(f"{field}: credentials in the URL are not allowed", EXIT_CONFIG)
    return value


def _poller(ctx: click.Context, prometheus_url: str | None, alertmanager_url: str | None):
    from citydc.noc.api import Alertmanager, Prometheus
    from citydc.noc.poller import Poller, Settings

    loaded = load_config(ctx)
    cfg = loaded.config
    # An error names where the URL came from: the option the user gave, else the config field.
    prom = _url(prometheus_url, "--prometheus-url") or _url(cfg.alerting.prometheus_url, "alerting.prometheus_url")
    am = _url(alertmanager_url, "--alertmanager-url") or _url(cfg.alerting.alertmanager_url,
                                                                "alerting.alertmanager_url")
    if prom is None:
        fail("alerting.prometheus_url is not set in the config", EXIT_CONFIG,
             "set it (e.g. http://127.0.0.1:9090) or give --prometheus-url")
    noc = cfg.noc
    settings = Settings(
        sites=tuple((s.id, s.name) for s in cfg.sites), poll_interval=noc.poll_interval_seconds,
        stale_after=noc.stale_after_seconds, chart_seconds=noc.chart_minutes * 60.0,
        chart_step=float(noc.chart_step_seconds), links_per_site=noc.links_per_site,
        link_selector=noc.link_selector, refresh_seconds=noc.refresh_seconds,
        backup_max_age=noc.backup_max_age_hours * 3600.0, timezone=cfg.timezone,
        evaluation_delay=noc.evaluation_delay_seconds)
    timeout = noc.query_timeout_seconds
    # The *_http settings go with whichever URL is used, the option's too (the same server, reached otherwise).
    prom_access = _access(cfg.alerting.prometheus_http, "alerting.prometheus_http", prom)
    prometheus = Prometheus(prom, timeout, context=prom_access.context, headers=prom_access.headers)
    alertmanager = None
    if am:
        am_access = _access(cfg.alerting.alertmanager_http, "alerting.alertmanager_http", am)
        alertmanager = Alertmanager(am, timeout, context=am_access.context, headers=am_access.headers)
    return Poller(prometheus, alertmanager, settings), noc


def _access(settings, where: str, url: str):
    from citydc.httpaccess import HttpAccessError, http_access

    try:
        return http_access(settings, where, url)
    except HttpAccessError as exc:
        fail(str(exc), EXIT_CONFIG)


URL_OPTIONS = (
    click.option("--prometheus-url", default=None,
                 help="Prometheus to query (default: alerting.prometheus_url), reached with alerting.prometheus_http."),
    click.option("--alertmanager-url", default=None,
                 help="Alertmanager to read alerts from (default: alerting.alertmanager_url), reached with "
                      "alerting.alertmanager_http."),
)


def _url_options(fn):
    for option in reversed(URL_OPTIONS):
        fn = option(fn)
    return fn


@noc_group.command("serve", epilog=examples(
    "citydc noc serve", "citydc noc serve --listen 0.0.0.0:9097 --web.config.file /etc/citydc/noc-web.yml"))
@click.option("--listen", default=None, help="HOST:PORT to serve on (default: noc.listen in citydc.yaml).")
@click.option("--web.config.file", "web_config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TLS and basic auth, in the web config format of Prometheus' exporters (docs/security.md).")
@_url_options
@click.pass_context
def serve(ctx: click.Context, listen: str | None, web_config_file: Path | None, prometheus_url: str | None,
          alertmanager_url: str | None) -> None:
    """Serve the NOC wall page on / and its data on /api/noc.

    The server queries Prometheus and Alertmanager every noc.poll_interval_seconds and serves every
    screen from that cache, so ten wall screens cost Prometheus what one does. Data older than
    noc.stale_after_seconds shows STALE. Stop with Ctrl-C or SIGTERM.
    """
    from citydc.noc.server import make_server

    poller, noc = _poller(ctx, prometheus_url, alertmanager_url)
    try:
        host, port = parse_host_port(listen or noc.listen, default_port=9097)
    except ValueError as exc:
        fail(f"--listen: {exc}", EXIT_CONFIG)
    try:
        web_cfg = web.Web(web_config_file)
    except web.WebConfigError as exc:
        fail(str(exc), EXIT_CONFIG, "see docs/security.md for the web config file format")
    try:
        server = make_server(poller, host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}", hint="pick another port with --listen")
    web.secure(server, web_cfg)
    endpoint = web.describe(web_cfg)
    poller.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    shown = f"[{host}]" if ":" in host else host
    err.print(f"citydc NOC page on {endpoint.scheme}://{shown}:{port}/ (polling every "
              f"{noc.poll_interval_seconds:g} s{''.join(f'; {a}' for a in endpoint.auth)})")
    try:
        server.serve_forever()
    finally:
        server.server_close()
        poller.stop()


@noc_group.command("show", epilog=examples("citydc noc show", "citydc noc show --json --prometheus-url http://127.0.0.1:9090"))
@_url_options
@click.option("--json", "as_json", is_flag=True, help="Print the page's data (what /api/noc serves) as JSON.")
@click.pass_context
def show(ctx: click.Context, prometheus_url: str | None, alertmanager_url: str | None, as_json: bool) -> None:
    """Query Prometheus and Alertmanager once and print the site status matrix.

    Exit 0 only when every tier at every site is OK; 1 when one is WARNING, CRITICAL, STALE or NO DATA (a
    check pointed at the wrong Prometheus, or one that lost its scrape configs, must not pass). A tier
    citydc reads no metric for (load balancers, virtualization) is NO DATA on the page without failing
    the check, unless an alert makes it WARNING or CRITICAL.
    """
    from citydc.cli.output import out
    from citydc.cli.table import Column, print_table

    poller, _ = _poller(ctx, prometheus_url, alertmanager_url)
    poller.poll_once()
    view = poller.view()
    not_ok, unmonitored = _not_ok(view)
    if as_json:
        print_json(view)
    else:
        columns = [Column("site"), *(Column(t["en"], style=_style) for t in view["tiers"])]
        rows = [[site["name"], *(view["matrix"][site["id"]][t["id"]]["status"].upper() for t in view["tiers"])]
                for site in view["sites"]]
        print_table(out, columns, rows, title="NOC site status")
        for name, src in view["sources"].items():
            if src["error"]:
                err.print(f"{name}: {src['error']}")
        for line in not_ok:
            err.print(line, markup=False, highlight=False)
        if unmonitored:
            err.print(f"no metric read for: {', '.join(unmonitored)} (NO DATA unless an alert speaks for them; "
                      "not counted against the exit status)", markup=False, highlight=False)
    sys.exit(1 if not_ok else 0)


def _not_ok(view: dict) -> tuple[list[str], list[str]]:
    """Given the page's data, return one line per tier and site that is not OK (NO DATA included, but for
    the tiers citydc reads no metric for), and the names of those tiers."""
    from citydc.noc.queries import TIERS

    names = {site["id"]: site["name"] for site in view["sites"]}
    tiers = {tier["id"]: tier["en"] for tier in view["tiers"]}
    no_metric = {t.id for t in TIERS if t.freshness is None}
    alerts: dict[tuple[str, str], list[str]] = {}
    for a in view["alerts"]:
        for site_id in view["matrix"]:
            if a["site"] in (site_id, "all", ""):
                alerts.setdefault((site_id, a["tier"]), []).append(a["alertname"])
    lines = []
    for site_id, row in view["matrix"].items():
        for tier_id, cell in row.items():
            if cell["status"] == "ok" or (cell["status"] == "nodata" and tier_id in no_metric):
                continue
            why = cell.get("reason") or ", ".join(sorted(set(alerts.get((site_id, tier_id), []))))
            reason = f" ({why})" if why else ""
            lines.append(f"not OK: {names.get(site_id, site_id)} {tiers.get(tier_id, tier_id)}: "
                         f"{cell['status'].upper()}{reason}")
    return lines, [tiers[t] for t in tiers if t in no_metric]


def _style(value: str) -> str | None:
    return {"OK": "green", "WARNING": "yellow", "CRITICAL": "bold red", "STALE": "magenta"}.get(value)
