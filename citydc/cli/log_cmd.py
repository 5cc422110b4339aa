"""``citydc log``: ship the spool to the store, search, count, verify the chain, run saved questions."""

from __future__ import annotations

import csv
import json
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import click
from rich.markup import escape
from rich.table import Table

from citydc.cli.output import EXIT_CONFIG, EXIT_FAILED, err, fail, load_config, out, print_json
from citydc.config.loader import LoadedConfig
from citydc.seclog import open_store
from citydc.seclog.chain import verify_report
from citydc.seclog.emit import spool_for
from citydc.seclog.query import SAVED, QueryError, build_query, parse_time, stale_backups
from citydc.seclog.spool import SpoolBusy
from citydc.seclog.store import DeliveryError, Query, Store

__all__ = ["log_group"]

TABLE_COLUMNS = (("@timestamp", "@timestamp"), ("site", "labels.site"), ("dataset", "event.dataset"),
                 ("action", "event.action"), ("outcome", "event.outcome"), ("user", "user.name"),
                 ("source", "source.ip"), ("message", "message"))


def _get(doc: dict, path: str) -> str:
    value: object = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


@contextmanager
def _store(loaded: LoadedConfig) -> Iterator[Store]:
    try:
        store = open_store(loaded)
    except DeliveryError as exc:
        fail(f"cannot open the security log store: {exc}", EXIT_FAILED)
    try:
        yield store
    except DeliveryError as exc:
        fail(f"security log store failed: {exc}", EXIT_FAILED)
    finally:
        store.close()


def _query_or_exit(**options) -> Query:
    try:
        return build_query(**options)
    except QueryError as exc:
        fail(str(exc), EXIT_CONFIG)


@click.group("log")
def log_group() -> None:
    """The security log: ship, search, stats, verify and saved auditor questions.

    Exit codes: 0 ok, 1 findings, a broken chain or a failed delivery, 2 usage or config error.
    """


@log_group.command("ship")
@click.option("--follow", is_flag=True, help="Keep shipping new events until interrupted (SIGINT/SIGTERM).")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(0.05, 60),
              help="Seconds between looks at the spool with --follow.")
@click.option("--textfile", type=click.Path(dir_okay=False), default=None,
              help="Write the metrics here as a node_exporter textfile (.prom), atomically.")
@click.option("--site", envvar="CITYDC_SITE", default="unknown", show_default=True,
              help="Site of this host, the site label of the spool's metrics ($CITYDC_SITE).")
@click.pass_context
def ship(ctx: click.Context, follow: bool, batch_size: int, poll: float, textfile: str | None, site: str) -> None:
    """Deliver the spool to the store; acknowledge only what the store acknowledged."""
    from prometheus_client import CollectorRegistry

    from citydc.seclog.metrics import SeclogMetrics, write_textfile
    from citydc.seclog.shipper import Shipper

    loaded = load_config(ctx)
    spool = spool_for(loaded)
    registry = CollectorRegistry()
    metrics = SeclogMetrics(registry, site=site)
    with _store(loaded) as store:
        shipper = Shipper(spool, store, batch_size=batch_size, metrics=metrics)
        try:
            with spool.shipping():
                if follow:
                    stop = threading.Event()
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        signal.signal(sig, lambda *_: stop.set())

                    def report(result) -> None:
                        if textfile:
                            write_textfile(registry, textfile)
                        if result.delivered:
                            err.print(f"delivered {result.delivered} event(s), {result.stored} new")

                    shipper.follow(stop, poll, on_round=report)
                    return
                result = shipper.ship()
        except SpoolBusy as exc:
            fail(str(exc), EXIT_FAILED, "only one shipper per spool; wait for it or stop it")
        if textfile:
            write_textfile(registry, textfile)
    for bad in result.corrupt:
        err.print(f"[yellow]{escape(bad.format())}[/]")
    backlog_events, backlog_bytes = spool.backlog()
    err.print(f"delivered {result.delivered} event(s), {result.stored} new; backlog {backlog_events} event(s), "
              f"{backlog_bytes} bytes")
    if result.error is not None:
        fail(f"delivery failed ({result.error.reason}): {result.error}", EXIT_FAILED,
             "the events stay in the spool; run `citydc log ship` again once the store is back")


def _filter_options(fn):
    for name in ("host", "kind", "source-ip", "site", "dataset", "outcome", "action", "user"):
        fn = click.option(f"--{name}", default=None, help=f"Only events whose {name} equals this.")(fn)
    fn = click.option("--until", default=None, help="End (exclusive): ISO-8601 with timezone, or 15m/24h/7d ago.")(fn)
    fn = click.option("--since", default=None, help="Start (inclusive): ISO-8601 with timezone, or 15m/24h/7d.")(fn)
    return fn


def _rows(events: Iterable[dict]) -> Iterator[list[str]]:
    for doc in events:
        yield [_get(doc, path) for _, path in TABLE_COLUMNS]


@log_group.command("search")
@_filter_options
@click.argument("text", nargs=-1)
@click.option("--limit", type=int, default=None, help="At most this many events (default 100 for the table).")
@click.option("--oldest-first", is_flag=True, help="Oldest events first (default: newest first).")
@click.option("--json", "fmt", flag_value="json", help="A JSON array of full ECS documents.")
@click.option("--csv", "fmt", flag_value="csv", help="CSV of the table's columns.")
@click.option("--ndjson", "fmt", flag_value="ndjson", help="One full document per line, streamed, no cap.")
@click.pass_context
def search(ctx: click.Context, text: tuple[str, ...], limit: int | None, oldest_first: bool, fmt: str | None,
           **filters: str | None) -> None:
    """Find events by filters and free text (every word must occur in the message)."""
    if fmt is None and limit is None:
        limit = 100  # a terminal table is for reading; scripts use --ndjson
    query = _query_or_exit(text=" ".join(text) or None, limit=limit, oldest_first=oldest_first, **filters)
    with _store(load_config(ctx)) as store:
        events = store.search(query)
        if fmt == "ndjson":
            for doc in events:
                sys.stdout.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
        elif fmt == "json":
            print_json(list(events))
        elif fmt == "csv":
            writer = csv.writer(sys.stdout)
            writer.writerow([name for name, _ in TABLE_COLUMNS])
            writer.writerows(_rows(events))
        else:
            table = Table(title="security log", show_lines=False)
            for name, _ in TABLE_COLUMNS:
                table.add_column(name, overflow="fold")
            n = 0
            for row in _rows(events):
                table.add_row(*(escape(c) for c in row))
                n += 1
            out.print(table)
            err.print(f"{n} event(s){' (limit reached; use --limit or --ndjson)' if n == limit else ''}")


@log_group.command("stats")
@_filter_options
@click.option("--by", "by", multiple=True, required=True, help="ECS field to count by (repeat for combinations).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def stats(ctx: click.Context, by: tuple[str, ...], as_json: bool, **filters: str | None) -> None:
    """Count events per value of one or more fields over the range."""
    query = _query_or_exit(**filters)
    with _store(load_config(ctx)) as store:
        try:
            rows = store.stats(query, list(by))
        except ValueError as exc:
            fail(f"--by: {exc}", EXIT_CONFIG)
    _print_counts(rows, by, as_json)


def _print_counts(rows: list[tuple[tuple[str, ...], int]], by: Iterable[str], as_json: bool) -> None:
    by = list(by)
    if as_json:
        print_json([{**dict(zip(by, values, strict=True)), "count": n} for values, n in rows])
        return
    table = Table()
    for name in [*by, "count"]:
        table.add_column(name, justify="right" if name == "count" else "left")
    for values, n in rows:
        table.add_row(*(escape(v) for v in values), str(n))
    out.print(table)


@log_group.command("verify")
@click.option("--since", default=None, help="Verify from each writer's first event at/after this time.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify(ctx: click.Context, since: str | None, as_json: bool) -> None:
    """Walk the hash chains in the store; report OK or the first changed, removed or inserted event.

    A chain is a writer's (one spool's) in one incarnation of its spool: a spool re-created from
    scratch starts a new chain, reported as information with where the previous one ended, as is
    an event re-emitted after the store had it. Exit 0 when every chain is intact, 1 otherwise.
    """
    try:
        start = parse_time(since, "--since") if since else None
    except QueryError as exc:
        fail(str(exc), EXIT_CONFIG)
    loaded = load_config(ctx)
    spool_dir = loaded.resolve(loaded.config.security_log.spool_dir)
    # On a host without the spool (an auditor's), the store's chains are still walked, but a store
    # that lost the end of a chain, or holds events past it, cannot be told from an intact one.
    spool = spool_for(loaded) if spool_dir.is_dir() else None
    delivered = spool.delivered_heads() if spool else {}  # read before the walk: the store holds at least these
    if spool is None and not as_json:
        err.print(f"[yellow]warning:[/] no spool at {escape(str(spool_dir))} on this host: the chains are checked, "
                  "but not against the heads the shipper delivered (a lost tail would go unnoticed)")
    with _store(loaded) as store:
        walked = 0

        def counted(events: Iterable[dict]) -> Iterator[dict]:
            nonlocal walked
            for doc in events:
                walked += 1
                yield doc

        report = verify_report(counted(store.chain(start)), partial=start is not None, delivered=delivered,
                               emitted=spool.emitted_heads if spool else None)
    findings = report.findings
    if as_json:
        print_json({"ok": not findings, "events": walked, "spool_checked": spool is not None,
                    "findings": [f.to_json() for f in findings], "notices": [n.to_json() for n in report.notices]})
        if findings:
            sys.exit(EXIT_FAILED)
        return
    for notice in report.notices:
        out.print(f"info: {escape(notice.format())}", soft_wrap=True)
    if findings:
        for f in findings:
            err.print(f"[bold red]{escape(f.format())}[/]", soft_wrap=True)
    else:
        out.print(f"OK: {walked} event(s), every chain intact")
    if findings:
        sys.exit(EXIT_FAILED)


@log_group.command("saved")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def saved(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """List the saved auditor questions, or run one by NAME."""
    if name is None:
        if as_json:
            print_json([{"name": q.name, "description": q.description} for q in SAVED.values()])
            return
        table = Table(title="saved questions (citydc log saved NAME)")
        table.add_column("name")
        table.add_column("question")
        for q in SAVED.values():
            table.add_row(q.name, q.description)
        out.print(table)
        return
    if name not in SAVED:
        fail(f"unknown saved question {name!r} (known: {', '.join(SAVED)})", EXIT_CONFIG)
    loaded = load_config(ctx)
    question = SAVED[name]
    with _store(loaded) as store:
        if name == "stale-backups":
            rows = stale_backups(store, [job.name for job in loaded.config.backup.jobs])
            if as_json:
                print_json(rows)
            else:
                table = Table(title=question.description)
                table.add_column("job")
                table.add_column("last success")
                for row in rows:
                    table.add_row(escape(row["job"]), row["last_success"] or "never")
                out.print(table)
            sys.exit(EXIT_FAILED if rows else 0)
        from datetime import UTC, datetime

        query = question.make(datetime.now(UTC))
        if question.by:
            _print_counts(store.stats(query, list(question.by)), question.by, as_json)
            return
        events = list(store.search(query))
    if as_json:
        print_json(events)
        return
    table = Table(title=question.description)
    for col, _ in TABLE_COLUMNS:
        table.add_column(col, overflow="fold")
    for row in _rows(events):
        table.add_row(*(escape(c) for c in row))
    out.print(table)
