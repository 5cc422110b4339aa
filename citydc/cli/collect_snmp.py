"""``citydc collect snmp`` (the multi-target exporter) and ``citydc collect snmp-targets`` (file_sd)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

from citydc import web
from citydc.cli.output import EXIT_CONFIG, err, examples, fail, fail_write, load_config, out
from citydc.collectors.snmp.exporter import Exporter, serve
from citydc.collectors.snmp.modules import build_modules
from citydc.collectors.snmp.poller import parse_address
from citydc.collectors.snmp.targets import check_scrape_settings, file_sd, scrape_config, write_atomic
from citydc.config.models import SNMP_EXPORTER_PORT
from citydc.hostport import parse_host_port

__all__ = ["snmp", "snmp_targets"]


@click.command("snmp", epilog=examples("citydc collect snmp", "citydc collect snmp --listen 127.0.0.1:9117"))
@click.option("--listen", default=None,
              help="HOST[:PORT] to serve on; without a port, 9116 (the snmp_exporter's port) "
                   "(default: snmp.listen in citydc.yaml).")
@click.option("--web.config.file", "web_config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TLS and basic auth, in the web config format of Prometheus' exporters (docs/security.md).")
@click.pass_context
def snmp(ctx: click.Context, listen: str | None, web_config_file: Path | None) -> None:
    """Serve the SNMP exporter: GET /snmp?target=HOST[:PORT]&module=if_mib&auth=PROFILE, and /metrics.

    Prometheus schedules the polls (see `citydc collect snmp-targets`); a dead device gives
    citydc_snmp_up 0 for that scrape only, and its reason's message (e.g. the OID an agent answered
    genErr for) is logged at info level: `citydc -v collect snmp`. Stop with Ctrl-C or SIGTERM. Counter
    wrap carries are saved in snmp.state_dir and continue after a restart when the device did not
    reboot meanwhile.
    """
    loaded = load_config(ctx)
    cfg = loaded.config
    try:
        build_modules(cfg.snmp.modules)
    except ValueError as exc:
        fail(str(exc), EXIT_CONFIG)
    try:
        host, port = parse_address(listen or cfg.snmp.listen, default_port=SNMP_EXPORTER_PORT)
    except ValueError as exc:
        # Name where the bad address came from: the option, or the config when the option is absent.
        fail(f"{'--listen' if listen else 'snmp.listen'}: {exc}", EXIT_CONFIG)
    try:
        web_cfg = web.Web(web_config_file)
    except web.WebConfigError as exc:
        fail(str(exc), EXIT_CONFIG, "see docs/security.md for the web config file format")
    state_path = None
    if cfg.snmp.state_dir is not None:
        state_path = loaded.resolve(cfg.snmp.state_dir) / state_file_name(host, port)
    exporter = Exporter(cfg, state_path=state_path)
    exporter.start()
    try:
        server = serve(exporter, host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}", hint="pick another port with --listen")
    web.secure(server, web_cfg)
    endpoint = web.describe(web_cfg)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    err.print(f"citydc SNMP exporter on {endpoint.scheme}://{host}:{port}/snmp ({len(cfg.devices)} devices, "
              f"modules: {', '.join(sorted(exporter.modules))}{''.join(f'; {a}' for a in endpoint.auth)})")
    try:
        server.serve_forever()
    finally:
        server.server_close()
        exporter.stop()


def state_file_name(host: str, port: int) -> str:
    """Given the listen address, return the state file name: one file per exporter process on a host."""
    return f"counters-{host.replace(':', '_').strip('[]')}-{port}.json"


@click.command("snmp-targets", epilog=examples("citydc collect snmp-targets -o /etc/prometheus/citydc-snmp.json"))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the file_sd JSON here (atomically); default: print it.")
@click.option("--exporter", "exporter_address", default=None,
              help="HOST:PORT Prometheus reaches the exporter on (default: snmp.listen).")
@click.option("--scrape-interval", default="30s", show_default=True,
              help="scrape_interval of the printed scrape config (a Prometheus duration).")
@click.option("--scrape-timeout", default="20s", show_default=True,
              help="scrape_timeout of the printed scrape config, at most the interval; the exporter's own poll "
                   "budget is the lower of it (minus 0.5 s) and snmp.scrape_timeout_seconds.")
@click.pass_context
def snmp_targets(ctx: click.Context, output: Path | None, exporter_address: str | None, scrape_interval: str,
                 scrape_timeout: str) -> None:
    """Write Prometheus file_sd targets for every device of citydc.yaml with an snmp_auth; print the scrape config."""
    cfg = load_config(ctx).config
    # What Prometheus would refuse is refused here, before a file is written (exit 2).
    problem = check_scrape_settings(scrape_interval, scrape_timeout)
    if problem is not None:
        fail(problem, EXIT_CONFIG)
    try:
        # Prometheus needs the port in __address__: --exporter must name it; snmp.listen's is 9116 if unsaid.
        if exporter_address is not None:
            host, port = parse_host_port(exporter_address)
        else:
            host, port = parse_host_port(cfg.snmp.listen, SNMP_EXPORTER_PORT)
    except ValueError as exc:
        fail(f"--exporter: {exc}", EXIT_CONFIG)
    groups = file_sd(cfg.devices)
    if output is None:
        out.print(json.dumps(groups, indent=2, ensure_ascii=False), markup=False)
        path: str | Path = "citydc-snmp-targets.json"
    else:
        try:
            write_atomic(output, groups)
        except OSError as exc:
            fail_write(output, exc, "--output")
        path = output.resolve()
        err.print(f"wrote {len(groups)} targets to {output}")
    err.print("# add to prometheus.yml under scrape_configs:")
    click.echo(scrape_config(path, f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                             scrape_interval=scrape_interval,
                             scrape_timeout=scrape_timeout), err=output is None)
