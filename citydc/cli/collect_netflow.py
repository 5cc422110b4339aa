"""``citydc collect netflow``: run the NetFlow v5/v9/IPFIX collector with a Prometheus endpoint."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import click
from prometheus_client import CollectorRegistry, start_http_server

from citydc.cli.output import EXIT_CONFIG, err, fail, load_config
from citydc.collectors.netflow.collector import build
from citydc.collectors.netflow.flowlog import JsonLinesFlowLog

__all__ = ["netflow", "parse_host_port"]


def parse_host_port(text: str) -> tuple[str, int]:
    """Given 'host:port', return (host, port). Raise click.BadParameter naming what was expected."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT with a port 1-65535, got {text!r}")
    return host.strip("[]"), int(port)


@click.command("netflow")
@click.option("--metrics", "metrics_address", default="127.0.0.1:9310", show_default=True,
              help="HOST:PORT of the Prometheus /metrics endpoint.")
@click.option("--flow-output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also append every flow record as a JSON line to this file (forensics; off by default).")
@click.option("--duration", type=click.FloatRange(min=0.1), default=None,
              help="Stop after this many seconds (default: run until interrupted).")
@click.option("--top", "top_n", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Top talkers exported per site.")
@click.option("--window", "window_seconds", type=click.FloatRange(min=10), default=300, show_default=True,
              help="Sliding window of the top talkers, seconds.")
@click.pass_context
def netflow(ctx: click.Context, metrics_address: str, flow_output: Path | None, duration: float | None,
            top_n: int, window_seconds: float) -> None:
    """Listen on the netflow.listeners of citydc.yaml, decode NetFlow v5/v9/IPFIX and export
    bounded aggregates (per interface, agency, protocol/service, top talkers) to Prometheus."""
    host, port = parse_host_port(metrics_address)
    cfg = load_config(ctx).config
    if not cfg.netflow.listeners:
        fail("netflow.listeners is empty in the config", EXIT_CONFIG, "add at least one {port, site} listener")
    sink = JsonLinesFlowLog(flow_output) if flow_output else None
    try:
        collector = build(cfg.netflow, flow_sink=sink, top_n=top_n, window_seconds=window_seconds)
    except OSError as exc:
        fail(str(exc), hint="is another collector bound to that port?")
    registry = CollectorRegistry()
    registry.register(collector.metrics([s.id for s in cfg.sites]))
    server, _ = start_http_server(port, host, registry=registry)
    signal.signal(signal.SIGTERM, lambda *_: collector.stop())
    names = ", ".join(f"{lst.name} ({lst.site})" for lst in collector.listeners)
    err.print(f"netflow: listening on {names}; metrics on http://{host}:{port}/metrics")
    try:
        collector.run(until=None if duration is None else time.monotonic() + duration)
    except KeyboardInterrupt:
        pass
    finally:
        collector.close()
        server.shutdown()
        if sink is not None:
            sink.close()
    stats = collector.decoder.stats
    err.print(f"netflow: {sum(stats.datagrams.values())} datagrams, {sum(stats.records.values())} records, "
              f"{sum(stats.errors.values())} decode errors")
