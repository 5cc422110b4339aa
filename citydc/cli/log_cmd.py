"""``citydc log``: ship the spool to the store, search, count, verify the chain, run saved questions."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import NoReturn

import click
from rich.markup import escape
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

from citydc.cli import timefmt
from citydc.cli.csvout import CsvWriter
from citydc.cli.output import (
    EXIT_CONFIG,
    EXIT_FAILED,
    err,
    examples,
    fail,
    fail_write,
    load_config,
    out,
    print_json,
    progress,
    show_times,
    visible,
    wide_option,
)
from citydc.cli.table import Column, print_table, status_style
from citydc.config.loader import LoadedConfig
from citydc.seclog import open_store
from citydc.seclog.chain import ChainHead, Finding, SpoolDamaged, verify_report
from citydc.seclog.emit import spool_for
from citydc.seclog.query import ALLOWED_VALUES, MAX_LIMIT, SAVED, QueryError, build_query, parse_time, stale_backups
from citydc.seclog.spool import Spool, SpoolBusy
from citydc.seclog.store import DeliveryError, Query, Store
from citydc.seclog.store_es_template import MAPPINGS

__all__ = ["log_group"]

TABLE_COLUMNS = (("@timestamp", "@timestamp"), ("site", "labels.site"), ("dataset", "event.dataset"),
                 ("action", "event.action"), ("outcome", "event.outcome"), ("user", "user.name"),
                 ("source", "source.ip"), ("message", "message"))
# How a person sees them: the time in the config's zone, the message last and cut to fit, the
# dataset left out first when the terminal is narrow (the action names the component anyway).
PERSON_COLUMNS = (Column("time"), Column("site"), Column("dataset", drop=1), Column("action"),
                  Column("outcome", style=status_style), Column("user"), Column("source"),
                  Column("message", text=True))


def _get(doc: dict, path: str) -> str:
    value: object = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


@contextmanager
def _store(loaded: LoadedConfig, *, readonly: bool = True,
           stop: Callable[..., NoReturn] = fail) -> Iterator[Store]:
    # A store this user cannot create, read or write (StoreUnusable, which names the config field) is a
    # setup error, exit 2; a store that failed (down, rejected a batch) is a failed job, exit 1. Only
    # `log ship` (readonly=False) creates or upgrades a store: a question never alters one, and a store that
    # is not there (a wrong path) or is no citydc store is that setup error, not an empty answer.
    try:
        store = open_store(loaded, readonly=readonly)
    except DeliveryError as exc:
        stop(f"cannot open the security log store: {exc}", EXIT_CONFIG if getattr(exc, "field", None) else EXIT_FAILED)
    try:
        yield store
    except DeliveryError as exc:
        stop(f"security log store failed: {exc}", EXIT_CONFIG if getattr(exc, "field", None) else EXIT_FAILED)
    finally:
        store.close()


def _query_or_exit(**options) -> Query:
    # A --since/--until without a zone is read in the display zone (config timezone, or UTC with --utc).
    try:
        for name in ("since", "until"):
            options[name] = timefmt.local_option(options.get(name), f"--{name}")
        return build_query(show=timefmt.show, **options)
    except QueryError as exc:
        fail(str(exc), EXIT_CONFIG)


@click.group("log", epilog=examples("citydc log search --since 2h", "citydc log verify"))
def log_group() -> None:
    """The security log: ship, search, stats, verify and saved auditor questions.

    Exit codes: 0 ok, 1 findings, a broken chain or a failed delivery, 2 usage or config error.
    """


@log_group.command("ship", epilog=examples("citydc log ship", "citydc log ship --follow --textfile "
                                                            "/var/lib/node_exporter/citydc_seclog.prom"))
@click.option("--follow", is_flag=True, help="Keep shipping new events until interrupted (SIGINT/SIGTERM).")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 100_000),
              help="Events read from the spool and delivered per store request (a round's first: at most 1,000).")
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
    from citydc.seclog.spool import SpoolDamaged

    loaded = load_config(ctx)
    spool = spool_for(loaded)
    registry = CollectorRegistry()
    metrics = SeclogMetrics(registry, site=site)
    with _store(loaded, readonly=False) as store:
        shipper = Shipper(spool, store, batch_size=batch_size, metrics=metrics)
        try:
            with spool.shipping():
                if follow:
                    if textfile:  # a path that cannot be written stops the service at its start (exit 2) ...
                        _write_textfile(registry, textfile)
                    stop = threading.Event()
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        signal.signal(sig, lambda *_: stop.set())

                    def report(result) -> None:
                        if textfile:
                            try:
                                write_textfile(registry, textfile)
                            except OSError as exc:  # ... later (a full disk) it is logged, and shipping goes on
                                err.print(f"[yellow]warning:[/] --textfile: cannot write {textfile}: "
                                          f"{exc.strerror or exc}")
                        if result.delivered:
                            err.print(f"delivered {result.delivered} event(s), {result.stored} new")

                    shipper.follow(stop, poll, on_round=report)
                    return
                with _ship_progress(spool, registry):
                    result = shipper.ship()
        except SpoolBusy as exc:
            fail(str(exc), EXIT_FAILED, "only one shipper per spool; wait for it or stop it")
        except SpoolDamaged as exc:  # the message names the file and how to recover
            fail(str(exc), EXIT_FAILED)
        if textfile:
            _write_textfile(registry, textfile)
    # Each skipped line was logged once by the shipper as it met it (ERROR citydc.seclog.shipper: FILE:LINE: ...).
    backlog_events, backlog_bytes = spool.backlog()
    err.print(f"delivered {result.delivered} event(s), {result.stored} new; backlog {backlog_events} event(s), "
              f"{backlog_bytes} bytes")
    if result.error is not None:
        # A store this user cannot write (StoreUnusable names the config field) does not heal by waiting: setup.
        setup = getattr(result.error, "field", None) is not None
        fail(f"delivery failed ({result.error.reason}): {result.error}", EXIT_CONFIG if setup else EXIT_FAILED,
             _delivery_hint(result.error))
    if result.corrupt:  # damaged audit data is a finding, even though every good line was delivered
        fail(f"skipped {len(result.corrupt)} corrupted spool line(s), listed above; every other line was delivered",
             EXIT_FAILED, "a line that held an event shows in `citydc log verify` as removed")


# DeliveryError reasons of a store that refused an event itself: waiting for the store does not help.
EVENT_REFUSED = frozenset({"bad_event", "invalid_event", "rejected"})


def _delivery_hint(error: DeliveryError) -> str:
    """Given why delivery gave up, return what to do next."""
    field = getattr(error, "field", None)
    if field is not None:
        return (f"the user running `citydc log ship` must be able to create and write the file {field} names and "
                "its directory (and its -wal and -shm files); fix the permissions or the path, then ship again. "
                "The events stay in the spool")
    if error.reason in EVENT_REFUSED:
        # Not only an event: Elasticsearch also refuses its index template this way (an index named like the alias).
        return ("the store refused what it was sent (an event, named above, or the index template: the reason is "
                "above), so shipping again will not help until that is fixed; the events stay in the spool "
                "(docs/security-log.md, \"Shipping\")")
    return "the events stay in the spool; run `citydc log ship` again once the store is back"


def _write_textfile(registry, path: str) -> None:
    """Given the metrics and ``log ship --textfile``, write it; one line naming it and the reason when it
    cannot be (exit 2 for a missing or unwritable directory, 1 for a full disk), not a traceback."""
    from citydc.seclog.metrics import write_textfile

    try:
        write_textfile(registry, path)
    except OSError as exc:
        fail_write(path, exc, "--textfile")


@contextmanager
def _ship_progress(spool, registry) -> Iterator[None]:
    """On a terminal, show a bar of the backlog delivered while ``ship`` runs (from the delivered counter)."""
    if not err.is_terminal:
        yield  # piped or under cron: quiet, and no backlog scan
        return
    total = spool.backlog()[0]
    stop = threading.Event()
    with progress(enabled=total > 0) as bar:
        task = bar.add_task("shipping the spool", total=total or None)

        def poll() -> None:
            while not stop.wait(0.25):
                bar.update(task, completed=_delivered(registry))

        watcher = threading.Thread(target=poll, name="citydc-ship-progress", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()


def _delivered(registry) -> float:
    return sum(sample.value for family in registry.collect() for sample in family.samples
               if sample.name == "citydc_seclog_events_delivered_total")


def _filter_options(fn):
    for name in ("host", "kind", "source-ip", "site", "dataset", "outcome", "action", "user"):
        allowed = ALLOWED_VALUES.get(name)
        fn = click.option(f"--{name}", default=None, help=f"Only events whose {name} equals this"
                          + (f" (one of {', '.join(sorted(allowed))})." if allowed else "."))(fn)
    fn = click.option("--until", default=None, help=timefmt.time_help("End (exclusive)"))(fn)
    fn = click.option("--since", default=None, help=timefmt.time_help("Start (inclusive)"))(fn)
    return fn


def _rows(events: Iterable[dict]) -> Iterator[list[str]]:
    for doc in events:
        yield [_get(doc, path) for _, path in TABLE_COLUMNS]


@log_group.command("search", epilog=examples("citydc log search --since 2h --outcome failure",
                                               "citydc log search --since '2026-12-04 22:00' --until 1h restic"))
@_filter_options
@click.argument("text", nargs=-1)
@click.option("--limit", type=int, default=None, help="At most this many events (default 100 for the table).")
@click.option("--oldest-first", is_flag=True, help="Oldest events first (default: newest first).")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of full ECS documents (times in UTC).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV of the table's columns (times in UTC). A cell starting "
              "with = + - @ gets a leading ' so no spreadsheet reads it as a formula; control characters are "
              "escaped (\\x1b).")
@click.option("--ndjson", "as_ndjson", is_flag=True, help="One full document per line, streamed, no cap (UTC).")
@wide_option
@timefmt.utc_option
@click.pass_context
def search(ctx: click.Context, text: tuple[str, ...], limit: int | None, oldest_first: bool, as_json: bool,
           as_csv: bool, as_ndjson: bool, wide: bool, utc: bool, **filters: str | None) -> None:
    """Find events by filters and free text: every word of TEXT must occur in the message.

    A word matches a whole word of the message, ignoring case and accents (jose finds José), never part
    of one: a run of Chinese characters without spaces is one word, so 四維 does not find 四維分局. Text
    with dots, _ or other punctuation is its separate words, each found anywhere in the message, not side
    by side: 10.0.0.1 also finds "from 10.1.0.0" (filter addresses with --source-ip). Full-width forms
    (ＡＤＭＩＮ) and ß are other words than admin and ss. Text without a letter or digit is refused
    (exit 2), and so is an empty filter value (--user "").

    The table shows times in the config's timezone (--utc for UTC); JSON, CSV and NDJSON keep the
    stored UTC ISO 8601 times.
    """
    fmt = _output_format(json=as_json, csv=as_csv, ndjson=as_ndjson)
    if fmt is None and limit is None:
        limit = 100  # a terminal table is for reading; scripts use --ndjson
    loaded = load_config(ctx)
    show_times(loaded, utc)
    # The table asks for one event more than it shows: whether the limit left any out.
    fetch = limit + 1 if fmt is None and limit is not None and 1 <= limit < MAX_LIMIT else limit
    query = _query_or_exit(text=" ".join(text) or None, limit=fetch, oldest_first=oldest_first, **filters)
    # The stream ends before the store closes, however the output ends (a reader gone away, Ctrl-C).
    with _store(loaded) as store, closing(store.search(query)) as events:
        if fmt == "ndjson":
            for doc in events:
                sys.stdout.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
        elif fmt == "json":
            print_json(list(events))
        elif fmt == "csv":
            writer = CsvWriter(sys.stdout)
            writer.writeheader(name for name, _ in TABLE_COLUMNS)
            writer.writerows(_rows(events))
        else:
            rows = [_person_row(doc) for doc in events]
            shown = rows[:limit]
            print_table(out, PERSON_COLUMNS, shown, title=f"security log (times in {timefmt.zone_name()})",
                        wide=wide)
            more = len(rows) > len(shown)
            err.print(f"{len(shown)} event(s){_range_note(query)}"
                      f"{' (limit reached: more events match; use --limit or --ndjson)' if more else ''}")


def _output_format(**given: bool) -> str | None:
    """Given each format flag (json=..., csv=...), return the one given (None: the table); exit 2 for more."""
    chosen = [name for name, on in given.items() if on]
    if len(chosen) > 1:
        flags = [f"--{name}" for name in chosen]
        fail(f"{', '.join(flags[:-1])} and {flags[-1]} exclude each other: give one output format", EXIT_CONFIG)
    return chosen[0] if chosen else None


def _person_row(doc: dict) -> list[str]:
    # What events carry came from outside (log lines, directory entries, server answers): shown with its
    # control characters escaped, so a stored value cannot steer the auditor's terminal.
    cells = [visible(_get(doc, path)) for _, path in TABLE_COLUMNS]
    cells[0] = timefmt.show(cells[0], "")
    return cells


def _range_note(query: Query) -> str:
    parts = []
    if query.since is not None:
        parts.append(f"since {timefmt.show(query.since)}")
    if query.until is not None:
        parts.append(f"until {timefmt.show(query.until)}")
    return f" {' '.join(parts)} ({timefmt.zone_name()})" if parts else ""


@log_group.command("stats", epilog=examples("citydc log stats --since 24h --by event.outcome",
                                              "citydc log stats --since 7d --by labels.site --by event.action"))
@_filter_options
@click.option("--by", "by", multiple=True, required=True, help="ECS field to count by (repeat for combinations).")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of {field: value, ..., count} objects.")
@wide_option
@timefmt.utc_option
@click.pass_context
def stats(ctx: click.Context, by: tuple[str, ...], as_json: bool, wide: bool, utc: bool,
          **filters: str | None) -> None:
    """Count events per value of one or more fields over the range.

    A list field (event.category) counts each element, a boolean is true or false, a missing value is "".
    A field holding an object is refused (name one of its fields), and so is a field no counted event has,
    unless it is one citydc writes (then it is the one group ""). Ties are ordered by value, numbers before
    text. On Elasticsearch, message and error.message (free text there) cannot be counted (exit 2).
    """
    loaded = load_config(ctx)
    show_times(loaded, utc)
    query = _query_or_exit(**filters)
    with _store(loaded) as store:
        try:
            rows = store.stats(query, list(by))
        except ValueError as exc:
            fail(f"--by: {exc}", EXIT_CONFIG)
    for field in _absent(rows, by):  # a misspelt field would count every event under one empty value
        if field in KNOWN_FIELDS:  # a field citydc writes, absent in a quiet range: that is an answer, not a typo
            continue
        fail(f"--by {field}: none of the {sum(n for _, n in rows)} event(s) in the range has this field; check "
             "its spelling (ECS names such as user.name, event.outcome, labels.site)", EXIT_CONFIG)
    _print_counts(rows, by, as_json, wide)
    if not as_json and (note := _range_note(query)):
        err.print(f"{sum(n for _, n in rows)} event(s){note}")


def _leaf_fields(properties: dict, prefix: str = "") -> Iterator[str]:
    for name, spec in properties.items():
        if "properties" in spec:
            yield from _leaf_fields(spec["properties"], f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


# The ECS fields citydc writes (the Elasticsearch mapping's, which both stores hold): counting by one of them
# that no event of the range has is a group of "" (missing), not a misspelling; any other such field is refused.
KNOWN_FIELDS = frozenset(f for f in _leaf_fields(MAPPINGS["properties"]) if not f.startswith("citydc_index."))


def _absent(rows: list[tuple[tuple[str, ...], int]], by: Iterable[str]) -> list[str]:
    """Given stats rows and their fields, return the fields no counted event has (stores count a missing value
    as ""): none when nothing was counted."""
    return [field for i, field in enumerate(by) if rows and all(values[i] == "" for values, _ in rows)]


def _print_counts(rows: list[tuple[tuple[str, ...], int]], by: Iterable[str], as_json: bool,
                  wide: bool = False) -> None:
    by = list(by)
    if as_json:
        print_json([{**dict(zip(by, values, strict=True)), "count": n} for values, n in rows])
        return
    columns = [Column(name, style=status_style if name == "event.outcome" else None) for name in by]
    # Stored values (user names chosen by whoever tried to log in) with control characters escaped, as in search.
    print_table(out, [*columns, Column("count", right=True)],
                [[*map(visible, values), str(n)] for values, n in rows], wide=wide)


@log_group.command("verify", epilog=examples("citydc log verify", "citydc log verify --since 7d --json"))
@click.option("--since", default=None, help=timefmt.time_help("Verify from each writer's first event at/after"))
@click.option("--json", "as_json", is_flag=True, help="One JSON object: ok, events, spool_checked, findings, notices.")
@timefmt.utc_option
@click.pass_context
def verify(ctx: click.Context, since: str | None, as_json: bool, utc: bool) -> None:
    """Walk the hash chains in the store; report OK or the first changed, removed or inserted event,
    and events the free-text search cannot find (search-index).

    With --since, each chain is walked from its first event at or after that time to its end, anchored at
    the stored event before it, and every head the shipper delivered is looked up. With --json the answer
    is always one JSON object, also when nothing could be verified.

    A chain is a writer's (one spool's) in one incarnation of its spool: a spool re-created from
    scratch starts a new chain, reported as information with where the previous one ended, as is
    an event re-emitted after the store had it. Exit 0 when every chain is intact, 1 otherwise.
    """
    loaded = load_config(ctx)
    show_times(loaded, utc)
    stop = _json_failure if as_json else fail  # with --json, every failure is a JSON answer too
    try:
        start = parse_time(timefmt.local_option(since), "--since") if since else None
    except QueryError as exc:
        stop(str(exc), EXIT_CONFIG)
    spool_dir = loaded.resolve(loaded.config.security_log.spool_dir)

    def unreadable(exc: OSError) -> NoReturn:
        # A spool this user may not read is a setup error (docs/operations.md §5), not a broken chain.
        stop(f"cannot read the security log spool: {exc.filename or spool_dir}: {exc.strerror or exc} "
             "(security_log.spool_dir)", EXIT_CONFIG)

    # On a host without the spool (an auditor's), the store's chains are still walked, but a store
    # that lost the end of a chain, or holds events past it, cannot be told from an intact one. The
    # spool is only read: nothing created or locked, so an auditor who may read it can verify.
    try:
        spool = Spool.existing(spool_dir)
        delivered = spool.delivered_heads() if spool else {}  # read before the walk: the store holds at least these
        if spool:
            spool.emitted_heads()  # read again after the walk; a head this user cannot read stops verify now
    except OSError as exc:
        unreadable(exc)
    except SpoolDamaged as exc:
        _damaged(exc, stop)

    def emitted() -> dict[str, ChainHead]:
        try:
            return spool.emitted_heads()
        except OSError as exc:  # replaced during the walk by a writer without files.group's group
            unreadable(exc)
        except SpoolDamaged as exc:
            _damaged(exc, stop)

    if spool is None and not as_json:
        err.print(f"[yellow]warning:[/] no spool at {escape(str(spool_dir))} on this host: the chains are checked, "
                  "but not against the heads the shipper delivered (a lost tail would go unnoticed)")
    with _store(loaded, stop=stop) as store, progress(SpinnerColumn(), TextColumn("verifying the hash chains: "
                                                                      "{task.completed:,} event(s)"),
                                           TimeElapsedColumn(), enabled=not as_json) as bar:
        walked = 0
        task = bar.add_task("verify", total=None)

        def counted(events: Iterable[dict]) -> Iterator[dict]:
            nonlocal walked
            for doc in events:
                walked += 1
                if not walked % 1000:  # a large store walks millions: update the display in steps
                    bar.update(task, completed=walked)
                yield doc

        # A --since walk is anchored at the event before each chain's first one, and checks the delivered heads it
        # does not pass, by point lookups (a few indexed reads, not a walk of the rest of the store).
        lookup = getattr(store, "chain_at", None) if start is not None else None
        with closing(store.chain(start)) as chain:  # ended before the store closes, even on Ctrl-C
            report = verify_report(counted(chain), partial=start is not None, delivered=delivered,
                                   emitted=emitted if spool else None, lookup=lookup)
        index_problem = store.search_index_problem()
    findings = report.findings
    if index_problem is not None:
        findings.append(Finding("search-index", None, None, None, index_problem))
    if as_json:
        answer = {"ok": not findings, "events": walked, "spool_checked": spool is not None,
                  "findings": [f.to_json() for f in findings], "notices": [n.to_json() for n in report.notices]}
        if start is not None:
            answer["since"] = start.isoformat()
            answer["walked_from"] = [{"writer": w, "incarnation": inc, "seq": seq}
                                     for (w, inc), seq in sorted(report.firsts.items(), key=lambda kv: (kv[0][0],
                                                                                                     kv[0][1] or ""))]
        print_json(answer)
        if findings:
            sys.exit(EXIT_FAILED)
        return
    # Writer names, ids and times come from the store: whoever could write a row there must not be able to
    # steer the terminal (or print a fake "OK" line) with them.
    for notice in report.notices:
        out.print(f"info: {escape(visible(notice.format()))}", soft_wrap=True)
    if findings:
        for f in findings:
            err.print(f"[bold red]{escape(visible(f.format()))}[/]", soft_wrap=True)
        err.print(f"[bold red]BROKEN[/]: {len(findings)} finding(s) in {walked} event(s)"
                  f"{_walked_note(start, report.firsts)}", soft_wrap=True)
    else:
        out.print(f"OK: {walked} event(s){_walked_note(start, report.firsts)}, every chain intact", soft_wrap=True)
    if findings:
        sys.exit(EXIT_FAILED)


def _walked_note(start, firsts: dict[tuple[str, str | None], int]) -> str:
    """Given verify's --since time (or None) and the first seq walked of each chain, return what a --since walk
    covered: every chain from its first event at or after the time, which may hold older events after it."""
    if start is None:
        return ""
    note = f", each chain walked from its first event at or after {timefmt.show(start)}"
    if len(firsts) == 1:
        return note + f" (seq {next(iter(firsts.values()))} on)"
    if 1 < len(firsts) <= 3:
        return note + " (" + ", ".join(f"{escape(visible(w))} from seq {seq}" for (w, _), seq in sorted(
            firsts.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))) + ")"
    return note + (f" ({len(firsts)} chains)" if firsts else " (no event of any chain is that recent)")


def _json_failure(message: str, code: int = EXIT_FAILED, hint: str | None = None) -> NoReturn:
    """``fail`` for verify --json: the answer is a JSON object even when nothing could be verified."""
    print_json({"ok": False, "error": message, "events": 0, "spool_checked": None, "findings": [], "notices": []})
    fail(message, code, hint)


def _damaged(exc: SpoolDamaged, stop: Callable[..., NoReturn] = fail) -> NoReturn:
    """Given a damaged spool state file met by verify, stop with what it means for the verification."""
    stop(f"cannot verify: {exc.path} is damaged ({exc.problem}); without it the store's chains cannot be "
         "checked against what the spool wrote and delivered, so nothing was walked", EXIT_FAILED,
         "the spool's operator restores it (docs/security-log.md, \"Damaged spool files\"); then verify again")


SAVED_COLUMNS = (Column("name"), Column("question", text=True))
STALE_COLUMNS = (Column("job"), Column("last success"))


def _narrowed(query: Query, narrow: Query, now: datetime) -> Query:
    """Given a saved question's Query made at ``now`` and the one of ``saved``'s --since/--until/--site/--limit,
    return the question with those put in (a given --since replaces the question's own look-back; an --until
    alone moves that look-back to end there: failed-logins --until T asks about the 24 hours before T, where it
    asked about the 24 hours before now and refused any T more than a day ago, naming a --since never given)."""
    import dataclasses

    since = narrow.since if narrow.since is not None else query.since
    if narrow.since is None and narrow.until is not None and query.since is not None and query.until is None:
        since = narrow.until - (now - query.since)
    until = narrow.until if narrow.until is not None else query.until
    if since is not None and until is not None and since >= until:
        fail(f"--since ({timefmt.show(since)}) must be before --until ({timefmt.show(until)})", EXIT_CONFIG)
    return dataclasses.replace(query, since=since, until=until, filters={**query.filters, **narrow.filters},
                               limit=narrow.limit if narrow.limit is not None else query.limit)


@log_group.command("saved", epilog=examples("citydc log saved", "citydc log saved stale-backups",
                                              "citydc log saved failed-logins --since 7d --site siwei"))
@click.argument("name", required=False)
@click.option("--since", default=None, help=timefmt.time_help("Start (inclusive), instead of the question's own"))
@click.option("--until", default=None, help=timefmt.time_help("End (exclusive)"))
@click.option("--site", default=None, help="Only events whose site equals this.")
@click.option("--limit", type=int, default=None, help="At most this many events (questions that list events).")
@click.option("--json", "as_json", is_flag=True,
              help="The answer as JSON (its events or counted rows); without NAME, the questions.")
@wide_option
@timefmt.utc_option
@click.pass_context
def saved(ctx: click.Context, name: str | None, since: str | None, until: str | None, site: str | None,
          limit: int | None, as_json: bool, wide: bool, utc: bool) -> None:
    """List the saved auditor questions, or run one by NAME.

    --since/--until/--site narrow a question (failed-logins looks back 24 hours, from --until if given,
    unless --since says otherwise); --limit caps a question that lists events. stale-backups takes none of
    them: its window (26 hours) is what it asks about.
    """
    narrowing = {"--since": since, "--until": until, "--site": site, "--limit": limit}
    if name is None:
        if as_json:
            print_json([{"name": q.name, "description": q.description} for q in SAVED.values()])
            return
        print_table(out, SAVED_COLUMNS, [[q.name, q.description] for q in SAVED.values()],
                    title="saved questions (citydc log saved NAME)", wide=wide)
        return
    if name not in SAVED:
        fail(f"unknown saved question {name!r} (known: {', '.join(SAVED)})", EXIT_CONFIG)
    question = SAVED[name]
    given = [option for option, value in narrowing.items() if value is not None]
    if name == "stale-backups" and given:
        fail(f"{', '.join(given)}: stale-backups asks about the last 26 hours of every job; it takes no narrowing",
             EXIT_CONFIG)
    if question.by and limit is not None:
        fail(f"--limit: {name} counts events; --limit caps only questions that list them", EXIT_CONFIG)
    loaded = load_config(ctx)
    show_times(loaded, utc)
    narrow = _query_or_exit(since=since, until=until, site=site, limit=limit) if given else None
    with _store(loaded) as store:
        if name == "stale-backups":
            rows = stale_backups(store, [job.name for job in loaded.config.backup.jobs])
            if as_json:
                print_json(rows)
            else:
                print_table(out, STALE_COLUMNS, [[visible(row["job"]), visible(timefmt.show(row["last_success"]))]
                                                 for row in rows],
                            title=f"{question.description} (times in {timefmt.zone_name()})", wide=wide)
            sys.exit(EXIT_FAILED if rows else 0)
        now = datetime.now(UTC)
        query = question.make(now)
        if narrow is not None:
            query = _narrowed(query, narrow, now)
        if question.by:
            _print_counts(store.stats(query, list(question.by)), question.by, as_json, wide)
            return
        events = list(store.search(query))
    if as_json:
        print_json(events)
        return
    print_table(out, PERSON_COLUMNS, [_person_row(doc) for doc in events],
                title=f"{question.description} (times in {timefmt.zone_name()})", wide=wide)
