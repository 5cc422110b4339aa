"""``citydc collect netflow``: run the NetFlow v5/v9/IPFIX collector with a Prometheus endpoint."""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from pathlib import Path

import click
from prometheus_client import CollectorRegistry

from citydc import web
from citydc.cli.output import EXIT_CONFIG, err, examples, exit_now, fail, load_config
from citydc.collectors.netflow.collector import build
from citydc.collectors.netflow.flowlog import JsonLinesFlowLog
from citydc.collectors.netflow.snmp_feed import SnmpFeed, SnmpPoller, links

__all__ = ["decode_error_reasons", "netflow", "parse_host_port"]


def parse_host_port(text: str) -> tuple[str, int]:
    """Given 'host:port', return (host, port). Raise click.BadParameter naming what was expected."""
    from citydc import hostport

    try:
        return hostport.parse_host_port(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def decode_error_reasons(errors: Mapping[tuple[str, str, str], int], top: int = 3) -> str:
    """Given decode error counts by (site, exporter, reason), return ``reason from exporter (site): n, …``
    naming the most frequent ones first, or '' when there were none: the reason beside the count."""
    worst = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{reason} from {exporter} ({site}): {n}" for (site, exporter, reason), n in worst[:top])
    return f"{shown}{', …' if len(worst) > top else ''}"


@click.command("netflow", epilog=examples("citydc collect netflow", "citydc collect netflow --site fengshan --metrics "
                                                                   "127.0.0.1:9311"))
@click.option("--metrics", "metrics_address", default="127.0.0.1:9310", show_default=True,
              help="HOST:PORT of the Prometheus /metrics endpoint.")
@click.option("--flow-output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also append every flow record as a JSON line to this file (forensics; off by default; SIGHUP "
                   "reopens it for logrotate).")
@click.option("--duration", type=click.FloatRange(min=0.1), default=None,
              help="Stop after this many seconds (default: run until interrupted).")
@click.option("--top", "top_n", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Top talkers exported per site.")
@click.option("--window", "window_seconds", type=click.FloatRange(min=10), default=300, show_default=True,
              help="Sliding window of the top talkers, seconds.")
@click.option("--no-snmp", is_flag=True, default=False,
              help="Do not poll the exporters' SNMP devices (no ifName labels, no flow-vs-SNMP ratio).")
@click.option("--snmp-interval", type=click.FloatRange(min=1), default=60, show_default=True,
              help="Seconds between SNMP polls of the exporters' devices.")
@click.option("--snmp-window", type=click.FloatRange(min=1), default=300, show_default=True,
              help="Window of the flow-vs-SNMP byte ratio, seconds (at least --snmp-interval).")
@click.option("--web.config.file", "web_config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TLS and basic auth for /metrics, in the web config format of Prometheus' exporters "
                   "(docs/security.md).")
@click.option("--site", "only_site", default=None, metavar="SITE",
              help="Bind only this site's listeners and poll only its devices (one collector per site, one "
                   "shared citydc.yaml).")
@click.pass_context
def netflow(ctx: click.Context, metrics_address: str, flow_output: Path | None, duration: float | None,
            top_n: int, window_seconds: float, no_snmp: bool, snmp_interval: float, snmp_window: float,
            only_site: str | None, web_config_file: Path | None) -> None:
    """Listen on the netflow.listeners of citydc.yaml, decode NetFlow v5/v9/IPFIX and export
    bounded aggregates (per interface, agency, protocol/service, top talkers) to Prometheus.

    Exporters linked to an SNMP device (netflow.exporters[].snmp_device, or a device at the same
    address) get ifName interface labels and citydc_netflow_snmp_bytes_ratio (docs/netflow.md)."""
    host, port = parse_host_port(metrics_address)
    cfg = load_config(ctx).config
    try:
        web_cfg = web.Web(web_config_file)
    except web.WebConfigError as exc:
        fail(str(exc), EXIT_CONFIG, "see docs/security.md for the web config file format")
    if not cfg.netflow.listeners:
        fail("netflow.listeners is empty in the config", EXIT_CONFIG, "add at least one {port, site} listener")
    sites = [s.id for s in cfg.sites]
    if only_site is not None:
        listeners = [lst for lst in cfg.netflow.listeners if lst.site == only_site]
        if not listeners:
            with_listeners = sorted({lst.site for lst in cfg.netflow.listeners})
            fail(f"--site {only_site}: no netflow.listeners of that site (listeners exist for: "
                 f"{', '.join(with_listeners)})", EXIT_CONFIG)
        cfg = cfg.model_copy(update={"netflow": cfg.netflow.model_copy(update={"listeners": listeners})})
        sites = [only_site]
    if snmp_window < snmp_interval:
        fail(f"--snmp-window {snmp_window:g} is shorter than --snmp-interval {snmp_interval:g}", EXIT_CONFIG)
    try:
        feed_links = [] if no_snmp else [k for k in links(cfg) if only_site in (None, k.device.site)]
    except ValueError as exc:
        fail(str(exc), EXIT_CONFIG, "name a device of devices[] that has an snmp_auth profile")
    try:
        sink = JsonLinesFlowLog(flow_output) if flow_output else None
    except OSError as exc:
        fail(f"--flow-output {flow_output}: cannot open: {exc.strerror}")
    feed = poller = None
    if feed_links:
        poller = SnmpPoller(cfg)
        feed = SnmpFeed(feed_links, poller, interval=snmp_interval, window=snmp_window)
    try:
        collector = build(cfg.netflow, ifname=feed.ifname if feed else None, flow_sink=sink, top_n=top_n,
                          window_seconds=window_seconds)
    except OSError as exc:
        fail(str(exc), hint="is another collector bound to that port?")
    registry = CollectorRegistry()
    registry.register(collector.metrics(sites))
    if feed is not None:
        registry.register(feed)
        # One poll round before the first datagram is decoded (they wait in the socket buffers), so
        # interfaces are labelled with their ifName from the start.
        feed.start(collector.aggregator.interface_snapshot, collector.aggregator.name_interfaces)
        err.print(f"netflow: SNMP feed for {', '.join(f'{k.exporter} ({k.device.name})' for k in feed_links)}")
        if feed.skipped:
            err.print(f"netflow: {len(feed.skipped)} exporter-device links over the cap are not polled")
    try:
        server = web.metrics_server(registry, host, port, title="citydc NetFlow collector")
    except OSError as exc:
        collector.close()
        fail(f"cannot serve metrics on {host}:{port}: {exc.strerror}", hint="pick another port with --metrics")
    web.secure(server, web_cfg)
    web.serve_in_thread(server)
    endpoint = web.describe(web_cfg)
    signal.signal(signal.SIGTERM, lambda *_: collector.stop())
    if sink is not None:
        signal.signal(signal.SIGHUP, lambda *_: sink.reopen())  # logrotate: postrotate kill -HUP
    names = ", ".join(f"{lst.name} ({lst.site})" for lst in collector.listeners)
    err.print(f"netflow: listening on {names}; metrics on {endpoint.scheme}://{host}:{port}/metrics"
              f"{''.join(f' ({a})' for a in endpoint.auth)}")
    try:
        collector.run(until=None if duration is None else time.monotonic() + duration)
    except KeyboardInterrupt:
        pass
    finally:
        collector.close()
        server.shutdown()
        if feed is not None:
            feed.stop()
        if poller is not None:
            poller.close()
        if sink is not None:
            sink.close()
    stats = collector.decoder.stats
    err.print(f"netflow: {sum(stats.datagrams.values())} datagrams, {sum(stats.records.values())} records, "
              f"{sum(stats.errors.values())} decode errors")
    if stats.errors:  # its own line: the summary line above is parsed by the demo
        err.print(f"netflow: decode errors by reason: {decode_error_reasons(stats.errors)}")
    exit_now(0)  # everything is flushed and closed: skip the interpreter's teardown
