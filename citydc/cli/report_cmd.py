"""``citydc report``: the monthly 95th-percentile bandwidth report (citydc.report)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.markup import escape

from citydc.cli import timefmt
from citydc.cli.csvout import CsvWriter
from citydc.cli.output import (
    EXIT_CONFIG,
    EXIT_FAILED,
    err,
    examples,
    fail,
    load_config,
    out,
    print_json,
    show_times,
    wide_option,
)
from citydc.cli.table import Column, print_table
from citydc.config.loader import LoadedConfig
from citydc.config.units import format_bit_rate, parse_bit_rate

__all__ = ["report_group"]

CSV_HEADER = ("subject_kind", "subject", "month", "timezone", "direction", "p95_bps", "average_bps", "peak_bps",
              "peak_at", "committed_bps", "overage_bps", "samples", "expected_samples")


@click.group("report", epilog=examples("citydc report bandwidth --link siwei-internet --month 2026-11"))
def report_group() -> None:
    """Reports for auditors and the NOC, read from Prometheus."""


def _subject(loaded: LoadedConfig, link: str | None, agency: str | None, site: str | None):
    from citydc.report.bandwidth import Subject

    chosen = [(k, v) for k, v in (("link", link), ("agency", agency), ("site", site)) if v is not None]
    if len(chosen) != 1:
        fail("give exactly one of --link, --agency or --site", EXIT_CONFIG,
             "e.g. citydc report bandwidth --link siwei-internet --month 2026-11")
    kind, name = chosen[0]
    cfg = loaded.config.report

    def rate(text: str | None) -> float | None:
        return None if text is None else parse_bit_rate(text)

    if kind == "link":
        for item in cfg.links:
            if item.name == name:
                return Subject("link", name, item.device, item.interface, rate(item.committed_rate),
                               item.committed_rate)
        device, sep, interface = name.partition(":")
        if not sep or not device or not interface:
            known = ", ".join(item.name for item in cfg.links) or "none in report.links"
            fail(f'unknown link "{name}" (report.links: {known})', EXIT_CONFIG,
                 "name a link of report.links, or give DEVICE:IFNAME, e.g. sw-siwei-core1:Te1/1/1")
        # A typo in the device would only show as "no samples" after a month-long query: say it now.
        devices = sorted(d.name for d in loaded.config.devices)
        if device not in devices:
            fail(f'unknown device "{device}" in --link {name} (devices: {", ".join(devices) or "none"})',
                 EXIT_CONFIG, "give DEVICE:IFNAME with DEVICE a name of devices[] in the config")
        return Subject("link", name, device, interface)
    if kind == "agency":
        agencies = {a.name for a in loaded.config.netflow.agencies}
        if name not in agencies:
            fail(f'unknown agency "{name}" (netflow.agencies: {", ".join(sorted(agencies)) or "none"})', EXIT_CONFIG)
        item = next((a for a in cfg.agencies if a.name == name), None)
        text = item.committed_rate if item else None
        return Subject("agency", name, committed_bps=rate(text), committed_text=text)
    sites = {s.id for s in loaded.config.sites}
    if name not in sites:
        fail(f'unknown site "{name}" (sites: {", ".join(sorted(sites))})', EXIT_CONFIG)
    item = next((s for s in cfg.sites if s.id == name), None)
    text = item.committed_rate if item else None
    return Subject("site", name, committed_bps=rate(text), committed_text=text)


@report_group.command("bandwidth", epilog=examples(
    "citydc report bandwidth --link siwei-internet --month 2026-11",
    "citydc report bandwidth --agency police --month 2026-11 --png police-2026-11.png",
    "citydc report bandwidth --site fengshan --month 2026-11 --csv > fengshan-2026-11.csv"))
@click.option("--link", default=None, help="A link of report.links, or DEVICE:IFNAME (e.g. sw-siwei-core1:Te1/1/1).")
@click.option("--agency", default=None, help="An agency of netflow.agencies (NetFlow: in = to its prefixes).")
@click.option("--site", default=None, help="A site id: the sum of its uplinks (interfaces whose ifAlias says uplink).")
@click.option("--month", required=True, help="Calendar month YYYY-MM in the config's timezone (default Asia/Taipei).")
@click.option("--json", "fmt", flag_value="json", help="The report as JSON (times in UTC, rates in bit/s).")
@click.option("--csv", "fmt", flag_value="csv", help="One CSV row per direction (times in UTC, rates in bit/s); "
              "a text cell starting with = + - @ gets a leading ' (no spreadsheet formula).")
@click.option("--png", "png", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG chart of the month's samples to this file (needs citydc[report]).")
@timefmt.utc_show_option
@wide_option
@click.pass_context
def bandwidth(ctx: click.Context, link: str | None, agency: str | None, site: str | None, month: str,
              fmt: str | None, png: str | None, utc: bool, wide: bool) -> None:
    """95th percentile (nearest rank), average and peak of a month's 5-minute samples, in and out.

    The samples are the recording rules of alerts/ (link:citydc_snmp_if_bits:rate5m,
    agency:citydc_netflow_agency_bits:rate5m, site_uplink:citydc_snmp_if_bits:sum_rate5m) read from
    report.prometheus_url (default alerting.prometheus_url). The month is a calendar month in the
    config's timezone (Asia/Taipei: 2026-11 is 2026-11-01 00:00 +08:00 to 2026-12-01 00:00 +08:00);
    the sample at T is the rate over the 5 minutes before T. With a committed rate in report:, the
    overage is how far the 95th percentile is above it. Exit 0 with a report; 1 when Prometheus fails,
    holds no samples of a direction, or answers a sample that is not a rate (NaN, infinite, negative:
    never billed); 2 for a usage or config error. Warnings (samples missing, an agency's site or a site's
    uplink not scraped, Prometheus's own warnings) go to stderr in every format and into the JSON.
    """
    from citydc.report.bandwidth import BadSample, NoData, build_report, parse_month
    from citydc.report.promapi import PrometheusClient, PrometheusError

    loaded = load_config(ctx)
    show_times(loaded, utc)
    try:
        the_month = parse_month(month, loaded.config.timezone)
    except ValueError as exc:
        fail(str(exc), EXIT_CONFIG)
    subject = _subject(loaded, link, agency, site)
    from citydc.httpaccess import HttpAccessError, http_access

    cfg = loaded.config
    url, http, where = cfg.report.prometheus_url, cfg.report.prometheus_http, "report.prometheus_http"
    if not url:
        url, http, where = cfg.alerting.prometheus_url, cfg.alerting.prometheus_http, "alerting.prometheus_http"
    if not url:
        fail("no Prometheus to read from", EXIT_CONFIG, "set report.prometheus_url or alerting.prometheus_url")
    try:
        access = http_access(http, where, url)
    except HttpAccessError as exc:
        fail(str(exc), EXIT_CONFIG)
    client = PrometheusClient(url, timeout=cfg.report.timeout_seconds, context=access.context,
                              headers=access.headers)
    try:
        report = build_report(client, subject, the_month, now=time.time())
    except (PrometheusError, NoData, BadSample) as exc:
        fail(str(exc), EXIT_FAILED)
    if png:
        from citydc.report.chart import ChartUnavailable, write_png

        try:
            write_png(report, Path(png))
        except ChartUnavailable as exc:
            fail(str(exc), EXIT_CONFIG)
        except OSError as exc:
            fail(f"cannot write {png}: {exc.strerror or exc}", EXIT_FAILED)
    if fmt == "json":
        print_json(report.to_json())
    elif fmt == "csv":
        _csv(report)
    else:
        _table(report, wide)
        if png:
            err.print(f"chart written to {escape(png)}")
    # On stderr in every format: a script billing from --csv or --json must hear of a month half missing too.
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")


def _csv(report) -> None:
    writer = CsvWriter(sys.stdout)
    writer.writeheader(CSV_HEADER)
    for row in report.to_json()["directions"]:
        writer.writerow([report.subject.kind, report.subject.name, report.month.label, report.month.zone,
                         row["direction"], *("" if row[k] is None else row[k] for k in CSV_HEADER[5:])])


def _table(report, wide: bool) -> None:
    committed = report.subject.committed_bps is not None
    columns = [Column("direction"), Column("95th pct", right=True), Column("average", right=True),
               Column("peak", right=True), Column("peak at"), Column("committed", right=True),
               Column("overage", right=True), Column("samples", right=True, drop=1)]
    rows = []
    for r in report.rows:
        rows.append([r.direction, format_bit_rate(r.p95_bps), format_bit_rate(r.average_bps),
                     format_bit_rate(r.peak_bps), timefmt.show(r.peak_at, missing="-"),
                     format_bit_rate(r.committed_bps) if committed else "",
                     format_bit_rate(r.overage_bps) if committed else "", f"{r.samples}/{r.expected}"])
    month = report.month
    title = (f"Bandwidth of {report.subject.title}, {month.label}: {timefmt.show(month.start)} to "
             f"{timefmt.show(month.end)} ({timefmt.zone_name()}), 95th percentile (nearest rank) of 5-minute "
             f"samples from {report.prometheus_url}")
    print_table(out, columns, rows, title=title, wide=wide)
    if committed:
        out.print(f"billable (higher 95th percentile): {format_bit_rate(report.billable_p95_bps)}; "
                  f"committed {format_bit_rate(report.subject.committed_bps)}; "
                  f"overage {format_bit_rate(report.billable_overage_bps)}")
