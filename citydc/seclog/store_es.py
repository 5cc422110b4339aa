"""The Elasticsearch security-log store, through the official ``elasticsearch`` 9.x client.

Events are written with bulk ``create`` and ``_id`` = event.id into monthly indices behind a read
alias (store_es_template.py), so a retried batch never duplicates: a 409 conflict means the
event is already stored. Throttling (429), server errors (5xx) and connection failures are retried
with exponential backoff; when the budget is spent the batch fails with DeliveryError and the
shipper keeps it in the spool. Queries page with ``search_after`` on (@timestamp, event.id),
which is unique, so a search streams every hit without a cap and in the SQLite store's order.

An event re-emitted after the spool forgot its id arrives with an event.id the store holds at another
chain position: the conflict is looked up, and the new chain position is kept in the index
``<prefix>.reemitted`` (outside the read alias, so searches show the event once) for ``chain()``.

Credentials are revealed only to build the client and never appear in messages: every error
text passes through ``execute.mask`` with the secret values.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import elastic_transport
import orjson
from elasticsearch import ApiError, Elasticsearch

from citydc.config.models import ElasticsearchSink
from citydc.execute import mask
from citydc.seclog.chain import AlreadyStored
from citydc.seclog.event import EventInvalid, format_timestamp_ms
from citydc.seclog.pacing import let_others_run
from citydc.seclog.spool_scan import SpooledLine
from citydc.seclog.store import FILTER_FIELDS, DeliveryError, Query, storable_timestamp
from citydc.seclog.store_es_query import (
    WORDS_FIELD,
    bool_query,
    chain_sort,
    composite_sources,
    message_words,
    search_sort,
)
from citydc.seclog.store_es_template import MAPPINGS, index_for, template_body, template_name, template_version
from citydc.secrets import SecretUnavailable

__all__ = ["ElasticsearchStore", "ElasticsearchStoreError", "PreparedBatch", "RetryPolicy"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Bulk answers only what put() needs: per-item status and error (smaller responses to parse).
_BULK_FILTER = ["errors", "items.*.status", "items.*.error.type", "items.*.error.reason"]
# What an index answers (HTTP 400) when its dynamic mapping cannot take a document: a field of another shape than
# the index fixed for it, or a field beyond index.mapping.total_fields.limit (both seen on 9.2.4; the second
# name is the one of earlier versions). Any other refusal is the event's own fault: rejected, as before.
_MAPPING_ERRORS = frozenset({"document_parsing_exception", "mapper_parsing_exception"})
# The start of a bulk action line up to the end of its index name (group 1; group 2 the name): put_unmapped's.
_UNMAPPED_HEAD = re.compile(rb'^(\{"create":\{"_index":"([^"]+))"')


class PreparedBatch(list):
    """A batch's bulk lines, (event id, NDJSON bytes) per event, built by ``ElasticsearchStore.prepare``
    for a later ``put`` of that store. It holds no event dicts: the shipper drops them once their
    lines are built, before the garbage collector would walk them."""

    __slots__ = ("store",)

    @property
    def lines(self) -> list[tuple[str, bytes]]:
        return self


class ElasticsearchStoreError(DeliveryError):
    """The cluster could not be used. ``reason`` is a bounded metric label; ``retriable`` says whether
    trying again later may help (the cluster was down or busy) or a person must fix something."""

    def __init__(self, message: str, reason: str, *, retriable: bool):
        super().__init__(message, reason)
        self.retriable = retriable


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for 429/5xx/connection errors, bounded in attempts and time."""

    attempts: int = 6
    base_seconds: float = 0.25
    max_seconds: float = 5.0
    deadline_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        """Given the 0-based number of the failed attempt, return the pause before the next one."""
        return min(self.max_seconds, self.base_seconds * 2 ** attempt) * random.uniform(0.5, 1.0)  # noqa: S311


class ElasticsearchStore:
    """A Store (citydc.seclog.store) on an Elasticsearch cluster."""

    DEFAULT_BULK_EVENTS = 1000  # events per bulk request (bench/seclog.py --bulk-events compares sizes)
    # The shipper may hand over SpooledLine objects (spool_scan.py): the line is the document sent, and
    # the few fields needed here come with it, so intact lines need not be parsed at all.
    takes_spooled_lines = True

    def __init__(
        self,
        client: Elasticsearch,
        *,
        endpoint: str,
        index_prefix: str = "citydc-seclog",
        secrets: Sequence[str] = (),
        hints: dict[str, str] | None = None,
        retry: RetryPolicy = RetryPolicy(),
        refresh_on_put: bool | str = False,
        refresh_before_read: bool = True,
        page_size: int = 1000,
        bulk_events: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client = client
        self.endpoint = endpoint
        self.prefix = index_prefix
        self.retry = retry
        # "wait_for" makes a batch searchable before put() returns (slow: up to refresh_interval);
        # the default instead refreshes once before a read, which is what an auditor needs.
        self.refresh_on_put = refresh_on_put
        self.refresh_before_read = refresh_before_read
        self.page_size = page_size
        self.bulk_events = bulk_events or self.DEFAULT_BULK_EVENTS
        self._executor: ThreadPoolExecutor | None = None
        self._secrets = tuple(s for s in secrets if s)
        self._hints = {"tls": "check security_log.sink.ca_file (the CA that signed the server certificate) "
                              "and that the URL's host name is in the certificate",
                       "auth": "check security_log.sink.username and the secret its password/api_key "
                               "reference points to",
                       **(hints or {})}
        self._sleep = sleep
        self._template_ready = False
        # Action-line starts per @timestamp month ("YYYY-MM"): one index name check per month, not per event.
        self._index_heads: dict[str, bytes] = {}
        # Lines the cluster answered 409 to during the current put(): redeliveries or re-emissions.
        self._conflicts: list[tuple[str, bytes]] = []
        # Lines its monthly index refused with HTTP 400 during the current put() (see _put_unmapped).
        self._unmapped: list[tuple[str, bytes]] = []

    @property
    def reemitted_index(self) -> str:
        """The index of re-emitted chain positions: outside ``<prefix>-*``, so outside the read alias."""
        return f"{self.prefix}.reemitted"

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_config(cls, sink: ElasticsearchSink, base_dir: Path, **options: Any) -> ElasticsearchStore:
        """Given the sink config and the config file's directory, return a store.

        ``ca_file`` is resolved relative to ``base_dir``. Raise ElasticsearchStoreError (reason
        ``credentials``) if a secret reference cannot be read; the message names the reference only.
        """
        kwargs: dict[str, Any] = {"request_timeout": 30, "max_retries": 0, "retry_on_timeout": False}
        secrets: list[str] = []
        ca_file = None
        if sink.ca_file is not None:
            ca_file = sink.ca_file if sink.ca_file.is_absolute() else (base_dir / sink.ca_file)
            if not ca_file.is_file():
                raise ElasticsearchStoreError(
                    f"security_log.sink.ca_file: {ca_file} is not a readable file", "tls", retriable=False)
            kwargs["ca_certs"] = str(ca_file)
        try:
            if sink.api_key is not None:
                kwargs["api_key"] = sink.api_key.reveal()
                secrets.append(kwargs["api_key"])
                auth_hint = f"check the API key that security_log.sink.api_key ({sink.api_key.reference}) holds"
            elif sink.password is not None and sink.username is not None:
                password = sink.password.reveal()
                kwargs["basic_auth"] = (sink.username, password)
                # And the form the Authorization header carries (base64 of user:password, as the client encodes
                # it): a proxy that echoes the request's headers in its error body (seen: HTTP 403) leaked it.
                secrets.extend((password, base64.b64encode(f"{sink.username}:{password}".encode()).decode("ascii")))
                auth_hint = (f"check security_log.sink.username ({sink.username}) and the password that "
                             f"{sink.password.reference} holds")
            else:
                auth_hint = "the cluster wants credentials: set security_log.sink.username/password or api_key"
        except SecretUnavailable as exc:
            raise ElasticsearchStoreError(f"Elasticsearch credentials for {sink.url}: {exc}", "credentials",
                                          retriable=False) from None
        tls_hint = (f"check security_log.sink.ca_file ({ca_file}): it must hold the CA that signed the "
                    f"certificate of {sink.url}, whose names must include the URL's host"
                    if ca_file else "set security_log.sink.ca_file to the CA that signed the server certificate")
        client = Elasticsearch(sink.url, **kwargs)
        return cls(client, endpoint=sink.url, index_prefix=sink.index_prefix, secrets=secrets,
                   hints={"tls": tls_hint, "auth": auth_hint}, **options)

    # -- error handling ----------------------------------------------------------------------

    def _error(self, exc: Exception, doing: str) -> ElasticsearchStoreError:
        """Given a client exception, return the store error that says what to check."""
        where = f"Elasticsearch at {self.endpoint}"
        if isinstance(exc, elastic_transport.TlsError):
            err = ElasticsearchStoreError(
                f"{doing}: TLS verification failed for {where} ({_short(exc)}); {self._hints['tls']}",
                "tls", retriable=False)
        elif isinstance(exc, elastic_transport.ConnectionTimeout):
            err = ElasticsearchStoreError(f"{doing}: {where} did not answer in time", "timeout", retriable=True)
        elif isinstance(exc, elastic_transport.ConnectionError):
            err = ElasticsearchStoreError(f"{doing}: cannot connect to {where} ({_short(exc)})", "unavailable",
                                          retriable=True)
        elif isinstance(exc, ApiError) and exc.status_code == 401:
            err = ElasticsearchStoreError(f"{doing}: {where} rejected the credentials (HTTP 401); "
                                          f"{self._hints['auth']}", "auth", retriable=False)
        elif isinstance(exc, ApiError) and exc.status_code == 403:
            err = ElasticsearchStoreError(f"{doing}: {where} refused the operation (HTTP 403): the user or API "
                                          f"key lacks privileges on {self.prefix}-* ({_short(exc)})", "forbidden",
                                          retriable=False)
        elif isinstance(exc, ApiError) and _retriable_status(exc.status_code):
            reason = "overloaded" if exc.status_code == 429 else "server_error"
            err = ElasticsearchStoreError(f"{doing}: {where} answered HTTP {exc.status_code} ({_short(exc)})",
                                          reason, retriable=True)
        elif isinstance(exc, ApiError):
            err = ElasticsearchStoreError(f"{doing}: {where} answered HTTP {exc.status_code} ({_short(exc)})",
                                          "rejected", retriable=False)
        else:
            err = ElasticsearchStoreError(f"{doing}: {where}: {type(exc).__name__}: {_short(exc)}", "client",
                                          retriable=False)
        # Belt and braces: a server or proxy could echo a header; never let a secret through.
        err.args = (mask(str(err), self._secrets),)
        return err

    def _call(self, doing: str, fn: Callable[[], T]) -> T:
        """Run one client call with the retry policy. Raise ElasticsearchStoreError when giving up."""
        started = time.monotonic()
        for attempt in range(self.retry.attempts):
            try:
                return fn()
            except (elastic_transport.TransportError, ApiError) as exc:
                err = self._error(exc, doing)
            if not err.retriable or attempt + 1 >= self.retry.attempts:
                break
            pause = self.retry.delay(attempt)
            if time.monotonic() - started + pause > self.retry.deadline_seconds:
                break
            log.info("%s; retrying in %.2f s", err, pause)
            self._sleep(pause)
        if err.retriable:
            err.args = (f"{err} (gave up after {attempt + 1} attempt(s) in {time.monotonic() - started:.1f} s)",)
        raise err

    # -- writing -----------------------------------------------------------------------------

    def ensure_template(self) -> None:
        """Install the index template unless the cluster holds this very version. Done once per store
        before its first put; reading the template first means an unchanged one is never rewritten."""
        if self._template_ready:
            return
        name = template_name(self.prefix)
        resp = self._call("reading the index template", lambda: self.client.options(ignore_status=404).indices
                          .get_index_template(name=name))
        have = [t["index_template"].get("_meta", {}).get("citydc_template_version")
                for t in resp.get("index_templates", [])]
        if have != [template_version()]:
            self._call("installing the index template", lambda: self.client.indices.put_index_template(
                name=name, **template_body(self.prefix)))
        self._template_ready = True

    def put(self, events: Sequence[dict]) -> int:
        """Given a batch of events, store those not yet stored; return how many were new.

        The batch goes out as bulk requests of ``bulk_events`` events, one at a time; the next
        request is serialized while the previous one is in flight. Items refused with 429/5xx are
        retried with backoff. Raise ElasticsearchStoreError (a DeliveryError) if the batch could not
        be stored in full within the retry policy; a retry later is safe because ids are deterministic.
        """
        if not events:
            return 0
        prepared = events if isinstance(events, PreparedBatch) else None
        if prepared is not None and prepared.store is not self:
            raise ValueError("a PreparedBatch goes to the store that prepared it (its lines name that store's "
                             "indices)")
        heads = None if prepared is not None else [self._head(i, ev) for i, ev in enumerate(events)]  # refuse a
        self.ensure_template()  # bad event before sending any
        started = time.monotonic()
        self._conflicts, self._unmapped = [], []
        new, pending, worst = self._send_pipelined(events, heads, prepared)
        attempt = 0
        while pending:
            pause = self.retry.delay(attempt)
            attempt += 1
            if attempt >= self.retry.attempts or time.monotonic() - started + pause > self.retry.deadline_seconds:
                status, text = worst or (0, "")
                raise ElasticsearchStoreError(
                    f"Elasticsearch at {self.endpoint} kept refusing {len(pending)} event(s) with HTTP {status} "
                    f"({text}); gave up after {attempt} attempt(s)",
                    "overloaded" if status == 429 else "server_error", retriable=True)
            self._sleep(pause)
            again: list[tuple[str, bytes]] = []
            for i in range(0, len(pending), self.bulk_events):
                chunk = pending[i:i + self.bulk_events]
                last = i + self.bulk_events >= len(pending)
                n, retry_these, worst_now = self._tally(chunk, self._bulk(chunk, last))
                new += n
                again += retry_these
                worst = worst_now or worst
            pending = again
        if self._unmapped:
            new += self._put_unmapped(self._unmapped)
        if self._conflicts:
            self._keep_reemitted(self._conflicts)
        return new

    def _keep_reemitted(self, conflicts: Sequence[tuple[str, bytes]]) -> None:
        """Given the lines answered 409 (their id was stored), keep those whose chain position differs from the
        stored event's (a re-emission; a redelivery has the stored hash) in ``reemitted_index``, for the chain.

        Raise ElasticsearchStoreError if that fails: the batch is then not acknowledged and is sent again.
        """
        docs, hashes = [], []
        for event_id, line in conflicts:
            doc = line[line.index(b"\n") + 1:].rstrip(b"\n")
            hsh = orjson.loads(doc).get("event", {}).get("hash")
            if isinstance(hsh, str):  # an event without chain fields has no chain position to keep
                docs.append((event_id, doc))
                hashes.append(hsh)
        if not docs:
            return
        self.refresh()  # the stored twin may have come in this very batch
        ids = sorted({event_id for event_id, _ in docs})
        # Every stored copy's hash, paged: one search of at most 10,000 hits (as until 2026-12-08) answered a
        # redelivered batch of more than 10,000 events (log ship --batch-size, killed before its ack) for only
        # some of them; the rest were kept as re-emitted, and verify then called them duplicate sequence numbers.
        # Copies with the same id and hash may share a sort value and be skipped by search_after: harmless here.
        stored: set[str] = set()
        for i in range(0, len(ids), self.page_size):
            for doc in self._hits("looking up stored events", {"ids": {"values": ids[i:i + self.page_size]}},
                                  [{"event.id": "asc"}, {"event.hash": "asc"}], None, source=["event.hash"]):
                event = doc.get("event")
                if isinstance(event, dict) and isinstance(event.get("hash"), str):
                    stored.add(event["hash"])
        keep = [(h, doc) for (_, doc), h in zip(docs, hashes, strict=True) if h not in stored]
        if not keep:
            return
        # One index for every month and component: a field no mapping names is kept in _source only (dynamic
        # false), or a component field that changed shape would be refused here at every attempt, and the batch
        # with it. The chain walk reads only mapped fields (chain_sort).
        self._call("creating the re-emitted index", lambda: self.client.options(ignore_status=400).indices.create(
            index=self.reemitted_index, mappings={**MAPPINGS, "dynamic": False},
            settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"}))
        head = b'{"create":{"_index":"%s","_id":' % self.reemitted_index.encode()
        body = b"".join(b"".join((head, orjson.dumps(h), b"}}\n", doc, b"\n")) for h, doc in keep)
        resp = self._call(f"keeping {len(keep)} re-emitted chain position(s)", lambda: self.client.bulk(
            operations=body, refresh=False, filter_path=_BULK_FILTER))
        for item in resp.get("items", []):
            status = item["create"]["status"]
            if status not in (201, 409):  # 409: kept by an earlier delivery of this batch
                raise ElasticsearchStoreError(
                    f"Elasticsearch at {self.endpoint} refused a re-emitted chain position (HTTP {status}: "
                    f"{_item_error(item['create'])})", "server_error", retriable=True)

    def _put_unmapped(self, lines: Sequence[tuple[str, bytes]]) -> int:
        """Given lines their monthly index's mapping could not take (HTTP 400), store them in ``<index>.unmapped``;
        return how many were new.

        What such an index refuses is a field whose shape the index's dynamic mapping fixed otherwise (a
        component's ``citydc.backup.job`` once a string, now an object), or one field too many: the same line
        is refused again at every attempt, and every event spooled after it waits behind it for good. The
        ``.unmapped`` index (``<prefix>-*``: the template's mappings and the read alias) maps no field of its
        own (``dynamic: false``): the template's fields are searched as everywhere, any other field is kept
        in ``_source`` only, so the event is stored byte for byte and its chain verifies. Raise
        ElasticsearchStoreError (``rejected``) if that index refuses a line too.
        """
        moved = [(event_id, _UNMAPPED_HEAD.sub(rb'\1.unmapped"', line, count=1)) for event_id, line in lines]
        for index in sorted({_UNMAPPED_HEAD.match(line).group(2) for _, line in moved}):  # type: ignore[union-attr]
            name = index.decode()
            self._call(f"creating {name}", lambda name=name: self.client.options(ignore_status=400).indices.create(
                index=name, mappings={"dynamic": False}))  # 400: it exists already
        new, again, worst = self._tally(moved, self._bulk(moved, True), fallback=True)
        if again:
            status, text = worst or (0, "")
            raise ElasticsearchStoreError(f"Elasticsearch at {self.endpoint} refused {len(again)} event(s) with "
                                          f"HTTP {status} ({text})", "overloaded" if status == 429 else
                                          "server_error", retriable=True)
        return new

    def _bulk(self, lines: Sequence[tuple[str, bytes]], last: bool) -> dict:
        body = b"".join(line for _, line in lines)
        # A refresh covers every earlier request too, so only the batch's last request waits for it.
        refresh = self.refresh_on_put if last else False
        return self._call(f"storing {len(lines)} event(s)", lambda: self.client.bulk(
            operations=body, refresh=refresh, filter_path=_BULK_FILTER))

    def prepare(self, events: Sequence[dict]) -> PreparedBatch:
        """Given a batch, return its bulk lines, for a later ``put`` of this store.

        The shipper calls this in its read-ahead thread, while the previous batch is in flight, so
        ``put`` can send at once. Raise ElasticsearchStoreError as ``put`` would for a bad event.
        """
        heads = [self._head(i, ev) for i, ev in enumerate(events)]
        batch = PreparedBatch()
        batch.store = self
        for i, (head, ev) in enumerate(zip(heads, events, strict=True)):
            let_others_run(i)  # runs beside the thread waiting for the previous batch's answers
            batch.append((head[0], self._line(head[1], ev)))
        return batch

    def _send_pipelined(self, events: Sequence[dict], heads: Sequence[tuple[str, bytes]] | None,
                        prepared: Sequence[tuple[str, bytes]] | None = None,
                        ) -> tuple[int, list[tuple[str, bytes]], tuple[int, str] | None]:
        """Send every event once; return (new, items to retry, worst retriable status seen).

        Lines come from ``prepared`` (sent one request after the other), or are built from ``heads``
        while the previous request is in flight.
        """
        new, again, worst = 0, [], None
        if prepared is not None:  # nothing left to build: send from this thread, one request after the other
            for start in range(0, len(prepared), self.bulk_events):
                chunk = prepared[start:start + self.bulk_events]
                n, retry_these, worst_now = self._tally(chunk, self._bulk(chunk, start + self.bulk_events
                                                                          >= len(prepared)))
                new, again, worst = new + n, again + retry_these, worst_now or worst
            return new, again, worst
        in_flight: tuple[Future, list[tuple[str, bytes]]] | None = None
        try:
            for start in range(0, len(events), self.bulk_events):
                chunk = [(heads[i][0], self._line(heads[i][1], events[i]))  # type: ignore[index]
                         for i in range(start, min(start + self.bulk_events, len(events)))]
                if in_flight is not None:  # at most one request in flight, as a plain bulk client
                    future, lines, in_flight = *in_flight, None
                    n, retry_these, worst_now = self._tally(lines, future.result())
                    new, again, worst = new + n, again + retry_these, worst_now or worst
                last = start + self.bulk_events >= len(events)
                in_flight = (self._sender().submit(self._bulk, chunk, last), chunk)
            future, lines, in_flight = *in_flight, None
            n, retry_these, worst_now = self._tally(lines, future.result())
            return new + n, again + retry_these, worst_now or worst
        finally:
            if in_flight is not None:  # never leave a request running behind the caller's back
                wait([in_flight[0]])

    def _sender(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="citydc-es-bulk")
        return self._executor

    def _tally(self, lines: Sequence[tuple[str, bytes]], resp: dict, *, fallback: bool = False,
               ) -> tuple[int, list[tuple[str, bytes]], tuple[int, str] | None]:
        """Given sent lines and the bulk response, return (new, lines to retry, worst retriable status). A line
        its monthly index's mapping could not take (HTTP 400, ``_MAPPING_ERRORS``) is kept for ``_put_unmapped``
        (unless these are its lines).

        Raise ElasticsearchStoreError naming the event if one was refused for good (not 409/429/5xx).
        """
        items = resp["items"]
        if resp.get("errors") is False and len(items) == len(lines):
            return len(lines), [], None  # no item failed: every create was new (a 409 is an error item)
        new, again, worst = 0, [], None
        for (event_id, line), item in zip(lines, items, strict=True):
            result = item["create"]
            status = result["status"]
            if status == 201:
                new += 1
            elif status == 409:
                self._conflicts.append((event_id, line))  # already stored: a retry, or a re-emission (put() looks)
            elif _retriable_status(status):
                again.append((event_id, line))
                worst = (status, _item_error(result))
            elif status == 400 and not fallback and (result.get("error") or {}).get("type") in _MAPPING_ERRORS:
                log.warning("event %s: its monthly index refused it (%s); storing it in that index's .unmapped "
                            "twin, where its fields outside the index template are kept but not searched",
                            event_id, _item_error(result))
                self._unmapped.append((event_id, line))
            else:
                raise ElasticsearchStoreError(
                    f"Elasticsearch at {self.endpoint} refused event {event_id} (HTTP {status}: "
                    f"{_item_error(result)})", "rejected", retriable=False)
        return new, again, worst

    def _head(self, position: int, event: dict) -> tuple[str, bytes]:
        """Given an event and its position in the batch, return (its id, its bulk action line).

        Raise ElasticsearchStoreError if a store cannot keep it (store.storable_timestamp names the field).
        """
        if type(event) is SpooledLine:  # intact: its hash verified, so it is the event validated when emitted
            event_id, timestamp = event.event_id, event.timestamp
        else:
            try:
                storable_timestamp(event)  # the checks the SQLite store makes of every event, and the shipper's
            except (EventInvalid, AttributeError) as exc:
                raise ElasticsearchStoreError(f"event {position} of the batch cannot be stored: {exc}",
                                              "invalid_event", retriable=False) from None
            event_id, timestamp = event["event"]["id"], event["@timestamp"]
        start = self._index_heads.get(timestamp[:7])
        if start is None:
            try:
                index = index_for(self.prefix, timestamp)
            except ValueError as exc:
                raise ElasticsearchStoreError(f"event {event_id}: {exc}", "invalid_event", retriable=False) from None
            # index_for looks at the first 7 characters only: every timestamp sharing them has this index.
            start = self._index_heads[timestamp[:7]] = b'{"create":{"_index":"%s","_id":' % index.encode()
        return event_id, b"".join((start, orjson.dumps(event_id), b"}}\n"))

    @staticmethod
    def _line(head: bytes, event: dict) -> bytes:
        """Given the action line and the event, return both NDJSON lines with the search aid spliced in."""
        # orjson: serializing is most of the client's CPU per event, and on a small machine the
        # client's CPU is taken from Elasticsearch's (bench/seclog.py measures it).
        if type(event) is SpooledLine:  # an intact spool line (its hash verified): sent as it is
            doc, message = event.line, event.message
        else:
            doc = getattr(event, "line", None)  # read from the spool: its line is already this event's JSON
            if doc is None and getattr(event, "raw", None) is not None:
                doc = event.raw.encode("utf-8")
            if doc is None or not doc.endswith(b"}"):
                try:
                    doc = orjson.dumps(event)
                except (orjson.JSONEncodeError, TypeError):
                    doc = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()  # ints > 64 bits
            message = str(event.get("message", ""))
        words = message_words(message)
        # Splice the search aid into the JSON text (the event dict is not copied or changed). Words are
        # letters and digits only (unicode61 tokens), never a quote, backslash or control character, so
        # joining them is their JSON encoding, at a fraction of a general encoder's cost per event.
        aid = ',"citydc_index":{"words":["' + '","'.join(words) + '"]}}\n' if words else \
            ',"citydc_index":{"words":[]}}\n'
        return b"".join((head, doc[:-1], aid.encode()))

    def _action(self, position: int, event: dict) -> tuple[str, bytes]:
        """Given an event and its position in the batch, return (id, its two NDJSON bulk lines)."""
        event_id, head = self._head(position, event)
        return event_id, self._line(head, event)

    # -- reading -----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Make everything stored so far searchable."""
        self._call("refreshing", lambda: self.client.indices.refresh(
            index=f"{self.prefix},{self.reemitted_index}", ignore_unavailable=True, allow_no_indices=True))

    def _before_read(self) -> None:
        if not self.refresh_before_read:
            return
        try:
            self.refresh()
        except ElasticsearchStoreError as exc:
            if exc.reason != "forbidden":
                raise
            # A read-only auditor key may lack the maintenance privilege: search what the
            # cluster's own refresh (1 s) made visible instead of failing the question.
            log.warning("not refreshing before reads: %s", exc)
            self.refresh_before_read = False

    def _hits(self, doing: str, query: dict, sort: list[dict], limit: int | None, *, index: str | None = None,
              whole: bool = False, source: list[str] | None = None) -> Iterator[dict]:
        """Yield the _source of every hit (the hit itself with ``whole``), page by page with search_after, up to
        ``limit``, from ``index`` (default: the read alias); only the ``source`` fields of it, if given."""
        after: list | None = None
        left = limit
        while left is None or left > 0:
            size = self.page_size if left is None else min(self.page_size, left)
            extra: dict[str, Any] = {"search_after": after} if after is not None else {}
            if source is not None:
                extra["source"] = source
            resp = self._call(doing, lambda size=size, extra=extra: self.client.search(
                index=index or self.prefix, query=query, sort=sort, size=size, track_total_hits=False,
                ignore_unavailable=True, allow_no_indices=True, **extra))
            hits = resp["hits"]["hits"]
            for hit in hits:
                yield hit if whole else hit["_source"]
            if left is not None:
                left -= len(hits)
            if len(hits) < size:
                return
            after = hits[-1]["sort"]

    def search(self, query: Query) -> Iterator[dict]:
        """Given a Query, yield the matching events ordered by @timestamp then event.id (newest first if
        asked). Raise ElasticsearchStoreError if the cluster cannot be queried."""
        self._before_read()
        yield from self._hits("searching", bool_query(query), search_sort(query.newest_first), query.limit)

    def stats(self, query: Query, by: Sequence[str]) -> list[tuple[tuple[str, ...], int]]:
        """Given a Query and ECS fields, return (values, count) per combination, largest count first
        (ties by values ascending). A missing value is "" (as in the SQLite store)."""
        sources = composite_sources(by)
        for name in by:
            if name in _TEXT_FIELDS:  # Elasticsearch answers HTTP 400 (no fielddata): say why, as a usage error
                raise ValueError(f"{name} is free text (a text field in Elasticsearch), which cannot be counted "
                                 "there: search its words with `citydc log search WORDS`, or count by a keyword field")
        self._before_read()
        for name in by:
            if self._holds_objects(query, name):
                # As the SQLite store: an object cannot be counted (its terms aggregation would count nothing).
                raise ValueError(f"{name} holds an object (or a list of them) in the counted events, which cannot "
                                 f"be counted: name one of its fields ({name}.NAME)")
        counts: list[tuple[tuple[str, ...], int]] = []
        after: dict | None = None
        while True:
            composite: dict = {"sources": sources, "size": 1000}
            if after is not None:
                composite["after"] = after
            resp = self._call("counting", lambda composite=composite: self.client.search(
                index=self.prefix, query=bool_query(query), size=0, track_total_hits=False,
                ignore_unavailable=True, allow_no_indices=True, aggregations={"by": {"composite": composite}}))
            agg = resp.get("aggregations", {}).get("by", {})
            for bucket in agg.get("buckets", []):
                key = tuple(_key_value(bucket["key"][f"f{i}"], name) for i, name in enumerate(by))
                counts.append((key, bucket["doc_count"]))
            after = agg.get("after_key")
            if not agg.get("buckets") or after is None:
                break
        # Several buckets may fold into one key ("" for missing); merge them, then order as SQLite: count
        # descending, then the values ascending as SQLite compares them (numbers by value, before any text:
        # 2 < 1002 < 10002 < "", not "" < "10002" < "1002" < "2" as their texts would sort).
        merged: dict[tuple[str | int | float, ...], int] = {}
        for key, n in counts:
            merged[key] = merged.get(key, 0) + n
        ordered = sorted(merged.items(), key=lambda kc: (-kc[1], tuple(map(_sqlite_order, kc[0]))))
        return [(tuple(map(str, key)), n) for key, n in ordered]

    def _holds_objects(self, query: Query, name: str) -> bool:
        """Given a Query and a --by field, return whether any matching event has fields under it (an object)."""
        if name in FILTER_FIELDS.values():
            return False  # keyword fields of every event
        try:
            resp = self._call("counting", lambda: self.client.search(
                index=self.prefix, size=0, terminate_after=1, track_total_hits=1, ignore_unavailable=True,
                allow_no_indices=True,
                query={"bool": {"filter": [bool_query(query), {"exists": {"field": f"{name}.*"}}]}}))
        except ElasticsearchStoreError as exc:
            if exc.retriable:
                raise
            return False  # a cluster that cannot tell: counted as before, never refused on a guess
        total = resp.get("hits", {}).get("total", 0)
        return (total.get("value", 0) if isinstance(total, dict) else total) > 0

    def chain(self, since: datetime | None = None) -> Iterator[dict]:
        """Yield stored events ordered by (writer, seq); with ``since``, each writer from its first event
        at or after ``since`` on (as the SQLite store does), so a partial walk has no holes."""
        self._before_read()
        query: dict = {"match_all": {}}
        if since is not None:
            starts = self._chain_starts(since)
            if not starts:
                return
            query = {"bool": {"should": [
                {"bool": {"filter": [{"term": {"citydc.chain.writer": writer}},
                                     {"range": {"citydc.chain.seq": {"gte": seq}}}]}}
                for writer, seq in sorted(starts.items())], "minimum_should_match": 1}}
        kept = self.reemitted_index
        for hit in self._hits("reading the chain", query, chain_sort(), None, index=f"{self.prefix},{kept}",
                              whole=True):
            yield AlreadyStored(hit["_source"]) if hit["_index"] == kept else hit["_source"]

    def _chain_starts(self, since: datetime) -> dict[str, int]:
        """Given a time, return each writer's lowest seq among its events at or after it."""
        starts: dict[str, int] = {}
        after: dict | None = None
        while True:
            composite: dict = {"sources": [{"writer": {"terms": {"field": "citydc.chain.writer"}}}], "size": 500}
            if after is not None:
                composite["after"] = after
            resp = self._call("reading the chain", lambda composite=composite: self.client.search(
                index=f"{self.prefix},{self.reemitted_index}", query=bool_query(Query(), since=since), size=0,
                track_total_hits=False, ignore_unavailable=True, allow_no_indices=True,
                aggregations={"w": {"composite": composite,
                                    "aggregations": {"first": {"min": {"field": "citydc.chain.seq"}}}}}))
            agg = resp.get("aggregations", {}).get("w", {})
            for bucket in agg.get("buckets", []):
                starts[bucket["key"]["writer"]] = int(bucket["first"]["value"])
            after = agg.get("after_key")
            if not agg.get("buckets") or after is None:
                return starts

    def chain_at(self, writer: str, incarnation: str | None, seq: int) -> dict | None:
        """Given a chain position, return the event stored there (or re-emitted there), or None: one search, for
        ``verify --since`` (a partial walk's anchor, a delivered head), as the SQLite store's ``chain_at``."""
        self._before_read()
        query = {"bool": {"filter": [{"term": {"citydc.chain.writer": writer}},
                                     {"term": {"citydc.chain.seq": seq}}]}}
        kept = self.reemitted_index
        for hit in self._hits("reading the chain", query, chain_sort(), 100, index=f"{self.prefix},{kept}",
                              whole=True):
            doc = hit["_source"]
            chain = doc.get("citydc", {}).get("chain", {}) if isinstance(doc.get("citydc"), dict) else {}
            if isinstance(chain, dict) and chain.get("incarnation") == incarnation:
                return AlreadyStored(doc) if hit["_index"] == kept else doc
        return None

    def search_index_problem(self) -> str | None:
        """Return how many stored events a free-text search cannot find because they lack their search words, or
        None when none does (for ``verify``). There is no separate index to fall out of step with the events (the
        SQLite store's can): the words are part of each document, indexed with it, but not of its ``_source``.

        The words (``citydc_index.words``) are sent with each event and kept out of ``_source``, so a document
        indexed again from its ``_source`` (``_reindex`` into a new mapping, an update, a document put back by
        hand) has none: it still verifies, filters still find it, and free text silently does not (seen on a
        real node: one event re-put from its own _source). Candidates are the events with a message and no
        words; only those whose message has words (letters or digits) count.
        """
        self._before_read()
        query = {"bool": {"filter": [{"exists": {"field": "message"}}],
                          "must_not": [{"exists": {"field": WORDS_FIELD}}]}}
        missing, example = 0, None
        for doc in self._hits("checking the search words", query, [{"event.id": "asc"}, {"event.hash": "asc"}], None,
                              source=["message", "event.id"]):
            if isinstance(doc.get("message"), str) and message_words(doc["message"]):
                missing += 1
                event = doc.get("event")
                example = example or (event.get("id") if isinstance(event, dict) else None)
        if not missing:
            return None
        return (f"{missing} event(s) lack their search words ({WORDS_FIELD}; e.g. event.id {example}): a free-text "
                "search does not find them, filters do; they were indexed again from their _source (a _reindex, an "
                "update), which the shipper's search words are not part of. The events themselves are checked by the "
                "chain walk; move events between indices only with citydc, not with _reindex")

    def count(self) -> int:
        """Return how many events are stored."""
        self._before_read()
        resp = self._call("counting", lambda: self.client.count(
            index=self.prefix, ignore_unavailable=True, allow_no_indices=True))
        return int(resp["count"])

    def health(self) -> dict:
        """Return the cluster's health and version (``GET /`` may be absent, see lab/elasticsearch.py)."""
        health = self._call("checking the cluster", lambda: self.client.cluster.health())
        nodes = self._call("checking the cluster", lambda: self.client.nodes.info(filter_path="nodes.*.version"))
        versions = sorted({n.get("version", "") for n in nodes.get("nodes", {}).values()})
        return {"status": health["status"], "cluster": health["cluster_name"], "versions": versions}

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.client.close()


def _retriable_status(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def _item_error(result: dict) -> str:
    error = result.get("error") or {}
    return f"{error.get('type', '?')}: {str(error.get('reason', ''))[:300]}"


def _short(exc: Exception) -> str:
    """Given a client exception, return a one-line summary (its body may be long)."""
    if isinstance(exc, ApiError):
        info = exc.info if isinstance(exc.info, dict) else {}
        err = info.get("error")
        if isinstance(err, dict):
            text = f"{err.get('type', '')}: {str(err.get('reason', ''))[:300]}"
            # The cause says what to fix: "template after composition is invalid" alone hid "an index exists
            # with the same name as the alias" (an index named like index_prefix, made by hand or by a shipper
            # that ran before the template existed).
            cause = err.get("caused_by")
            while isinstance(cause, dict) and isinstance(cause.get("caused_by"), dict):
                cause = cause["caused_by"]
            if isinstance(cause, dict) and cause.get("reason"):
                text += f" (caused by {cause.get('type', '')}: {str(cause['reason'])[:300]})"
            return text
        return str(exc.message)[:300]
    # TransportError's str() is a generic "TLS error"; the first argument holds the cause.
    text = str(exc.args[0]) if exc.args else str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return text[text.index("certificate verify failed"):].split(" (_ssl")[0]
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _key_value(value: Any, field: str) -> str | int | float:
    """Given a composite bucket's key value and its field, return the value the SQLite store counts under: a
    string ("" for missing, true/false for a boolean, a date's @timestamp text) or a number."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if field in _DATE_FIELDS and isinstance(value, int):  # a date's key is its epoch milliseconds
        return format_timestamp_ms(value)
    if isinstance(value, int | float):
        return value
    return str(value)


def _sqlite_order(value: str | int | float) -> tuple[int, str | int | float]:
    """Given a counted value, return its sort key as SQLite orders values: numbers before text."""
    return (0, value) if isinstance(value, int | float) else (1, value)


def _leaf_types(properties: dict, prefix: str = "") -> Iterator[tuple[str, str]]:
    for name, spec in properties.items():
        if "properties" in spec:
            yield from _leaf_types(spec["properties"], f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", spec.get("type", "")


# Mapped date fields (date detection is off: no other field becomes a date) and text fields (not aggregatable).
_DATE_FIELDS = frozenset(f for f, kind in _leaf_types(MAPPINGS["properties"]) if kind == "date")
_TEXT_FIELDS = frozenset(f for f, kind in _leaf_types(MAPPINGS["properties"]) if kind == "text")
