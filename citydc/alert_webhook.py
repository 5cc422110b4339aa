"""The Alertmanager webhook receiver (``citydc alerts webhook``): the notification history.

Alertmanager keeps no history of what it notified. This receiver records every notification it is
sent (firing and resolved, one per alert) in the security log as an ECS event with action
``alert-notification`` (fingerprint, receiver, status, labels, startsAt/endsAt, groupKey), exactly
once even when Alertmanager retries (``citydc.alert_ledger``).

A post is answered only after its events are in the spool: 200 when recorded (or already recorded),
400 naming the field when the payload is not an Alertmanager version 4 webhook message (Alertmanager
does not retry a 4xx), 500 when the spool could not be written (Alertmanager retries). Posts without
valid credentials (the web config's ``basic_auth_users``) get 401 and are recorded as
``alert-webhook-denied`` events with the peer address and the reason, never the password; at most
``DENIED_PER_MINUTE`` such events a minute, the rest counted in the next one.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import choose_encoder
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from citydc import web
from citydc.alert_ledger import AFTER, Ledger, LedgerKey
from citydc.seclog.event import format_timestamp, make_event

__all__ = ["DATASET", "DENIED_PER_MINUTE", "PATH", "Payload", "PayloadInvalid", "Receiver", "denied_event",
           "notification_event", "parse_payload", "server"]

log = logging.getLogger(__name__)

DATASET = "citydc.alerts"
PATH = "/alerts"
DENIED_PER_MINUTE = 60
MAX_BODY = 4 << 20  # a bigger post gets 413, which Alertmanager does not retry: max_alerts keeps posts below it
MAX_ALERTS = 10_000
MAX_CONNECTIONS = 64  # connections served at once; more are closed at once (Alertmanager retries those)
_SITE = re.compile(r"^[a-z][a-z0-9_-]*$")


class PayloadInvalid(ValueError):
    """The body is not an Alertmanager webhook message; the message names the field, ``reason`` is
    the bounded label it is counted under (``invalid``, ``too_many_alerts``)."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


class _Model(BaseModel):
    # Alertmanager may add fields in later versions: unknown ones are ignored, known ones checked.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=False)


# Alertmanager writes times as RFC 3339 strings with a time of day: a number or a bare date is not from it.
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


class WebhookAlert(_Model):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(pattern=r"^[0-9a-f]{1,64}$")

    @field_validator("startsAt", "endsAt", mode="before")
    @classmethod
    def rfc3339(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, str) or not _RFC3339.match(value):
            raise ValueError("expected an RFC 3339 time such as 2026-12-05T01:00:00Z")
        return value


class Payload(_Model):
    version: Literal["4"]
    groupKey: str = Field(min_length=1, max_length=4096)
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = Field(min_length=1, max_length=256)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[WebhookAlert] = Field(min_length=1, max_length=MAX_ALERTS)


def _loc(loc: Sequence[Any]) -> str:
    """Given pydantic's error location, return the field path, each key escaped and shortened: a
    label key is the peer's text and goes into the log and the answer."""
    out = ""
    for part in loc:
        key = web.printable(str(part), 64)
        out += f"[{part}]" if isinstance(part, int) else (f".{key}" if out else key)
    return out or "(body)"


def parse_payload(body: bytes) -> Payload:
    """Given a POST body, return the validated webhook message. Raise PayloadInvalid naming the field."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadInvalid(f"(body): not JSON ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise PayloadInvalid(f"(body): expected a JSON object, got {type(raw).__name__}")
    try:
        return Payload.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        reason = "too_many_alerts" if tuple(first["loc"]) == ("alerts",) and first["type"] == "too_long" else "invalid"
        raise PayloadInvalid(f"{_loc(first['loc'])}: {web.printable(first['msg'])}{more}", reason) from None
    except RecursionError:
        raise PayloadInvalid("(body): nested too deeply") from None


def _time(value: datetime | None) -> str:
    if value is None or value.year <= 1:  # Go's zero time: Alertmanager's "not ended"
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def key_of(receiver: str, alert: WebhookAlert) -> LedgerKey:
    """Given the receiver and an alert, return its ledger key: a firing alert is one notification
    however often it is re-sent (its endsAt moves on), a resolved one another."""
    ends = _time(alert.endsAt) if alert.status == "resolved" else ""
    return receiver, alert.fingerprint, alert.status, _time(alert.startsAt), ends


def site_of(labels: Mapping[str, str], default: str = "all") -> str:
    site = labels.get("site", "")
    if _SITE.match(site):
        return site
    # Site ids are lower case; a label written "Siwei" is that site, not every site.
    lowered = site.strip().lower()
    return lowered if _SITE.match(lowered) else default


def notification_event(payload: Payload, alert: WebhookAlert, *, now: datetime | None = None,
                       key: LedgerKey | None = None) -> dict:
    """Given the webhook message and one of its alerts (and its ledger key, when the ledger chose it: a
    firing again after a recorded resolution), return the ``alert-notification`` ECS event."""
    key = key or key_of(payload.receiver, alert)
    name = alert.labels.get("alertname", "(no alertname)")
    site = site_of(alert.labels)
    summary = alert.annotations.get("summary", "")
    details = {"receiver": payload.receiver, "fingerprint": alert.fingerprint, "status": alert.status,
               "labels": dict(alert.labels), "annotations": dict(alert.annotations),
               "starts_at": key[3], "ends_at": _time(alert.endsAt), "group_key": payload.groupKey,
               "generator_url": alert.generatorURL, "external_url": payload.externalURL}
    if key[4].startswith(AFTER):  # fires again, same startsAt, after this recorded resolution
        details["fires_again_after"] = key[4][len(AFTER):]
    if payload.truncatedAlerts:  # the group had more alerts than the receiver's max_alerts let through
        details["truncated_alerts"] = payload.truncatedAlerts
    return make_event(
        action="alert-notification", dataset=DATASET, kind="alert", category=[], type=["info"], outcome="success",
        message=f"{alert.status} {name} ({site}) to {payload.receiver}" + (f": {summary}" if summary else ""),
        site=site, id_key="\x1f".join(key), rule={"name": name[:256]}, details=details, timestamp=now)


def denied_event(peer: str, reason: str, *, suppressed: int = 0, now: datetime | None = None,
                 seq: int = 0) -> dict:
    """Given a refused post's peer address and reason, return the ``alert-webhook-denied`` event."""
    now = now or datetime.now(UTC)
    details: dict[str, Any] = {"reason": reason}
    if suppressed:
        details["suppressed_before"] = suppressed
    return make_event(
        action="alert-webhook-denied", dataset=DATASET, kind="event", category=["authentication"], type=["start"],
        outcome="failure", message=f"webhook post from {peer} refused: {reason}"
        + (f" ({suppressed} more refused since the last one recorded)" if suppressed else ""),
        site="all", id_key=f"{peer}\x1f{reason}\x1f{time.time_ns()}\x1f{seq}", source_ip=peer, details=details,
        timestamp=now)


class Metrics:
    def __init__(self, registry: CollectorRegistry):
        self.notifications = Counter("citydc_alert_webhook_notifications", "Notifications recorded, by status",
                                     ["status"], registry=registry)
        self.duplicates = Counter("citydc_alert_webhook_duplicates",
                                  "Notifications received again (retries, re-sends) and not recorded again",
                                  registry=registry)
        self.bad_requests = Counter("citydc_alert_webhook_bad_requests",
                                    "Posts refused with 400, 411 or 413 (Alertmanager does not retry them), by reason",
                                    ["reason"], registry=registry)
        self.truncated = Counter("citydc_alert_webhook_truncated_alerts",
                                 "Alerts Alertmanager left out of posts (truncatedAlerts: the receiver's max_alerts)",
                                 registry=registry)
        self.connections_refused = Counter("citydc_alert_webhook_connections_refused",
                                           f"Connections closed unserved: {MAX_CONNECTIONS} already open",
                                           registry=registry)
        self.denied = Counter("citydc_alert_webhook_denied", "Posts refused for missing or wrong credentials",
                              ["reason"], registry=registry)
        self.errors = Counter("citydc_alert_webhook_errors", "Posts answered 500 (spool not written)",
                              registry=registry)
        for status in ("firing", "resolved"):
            self.notifications.labels(status)
        for reason in ("invalid", "too_many_alerts", web.TOO_LARGE, web.LENGTH_REQUIRED, web.BAD_LENGTH):
            self.bad_requests.labels(reason)


def failure(exc: BaseException, where: str = "") -> str:
    """Given why the spool was not written (and the spool it is), return one line naming the cause:
    the OS's reason and file for an OSError (full disk, permissions), else the exception's class
    (its text may hold the events)."""
    if isinstance(exc, OSError) and exc.strerror:
        what = exc.strerror + (f" ({exc.filename})" if exc.filename else "")
    else:
        what = exc.__class__.__name__
    return f"spool {where}: {what}" if where else what


class Receiver:
    """Given the ledger and an ``emit`` function (events → spool), record webhook messages;
    ``spool`` names where ``emit`` writes, for the log lines of a failed write."""

    def __init__(self, ledger: Ledger, emit: Callable[[list[dict]], Any], registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time, spool: str = ""):
        self.ledger = ledger
        self.emit = emit
        self.spool = spool
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.clock = clock
        self._denied_lock = threading.Lock()
        self._window = (0, 0)  # (minute, events recorded in it)
        self._suppressed = 0
        self._seq = 0

    def receive(self, payload: Payload) -> tuple[int, int]:
        """Given a valid message, record its new notifications; return (recorded, duplicates).

        Raise whatever ``emit`` raises (then nothing is marked in the ledger)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        with self.ledger.lock:
            keys = [self.ledger.firing_key(key_of(payload.receiver, a)) for a in payload.alerts]
            new = set(self.ledger.unrecorded(keys))
            fresh: list[tuple[LedgerKey, Any]] = []
            for key, alert in zip(keys, payload.alerts, strict=True):
                if key in new:
                    new.discard(key)
                    fresh.append((key, alert))
            events = [notification_event(payload, alert, now=now, key=key) for key, alert in fresh]
            if events:
                self.emit(events)
                stamp = format_timestamp(now)
                self.ledger.record([(key, payload.groupKey, ev["event"]["id"], stamp)
                                    for (key, _), ev in zip(fresh, events, strict=True)])
        for _, alert in fresh:
            self.metrics.notifications.labels(alert.status).inc()
        dup = len(keys) - len(fresh)
        self.metrics.duplicates.inc(dup)
        return len(fresh), dup

    def denied(self, peer: str, reason: str) -> None:
        """Record a refused post (rate-limited: DENIED_PER_MINUTE events a minute, the rest counted)."""
        self.metrics.denied.labels(reason).inc()
        with self._denied_lock:
            minute = int(self.clock() // 60)
            start, used = self._window
            if start != minute:
                start, used = minute, 0
            if used >= DENIED_PER_MINUTE:
                self._suppressed += 1
                self._window = (start, used)
                return
            self._window = (start, used + 1)
            suppressed, self._suppressed = self._suppressed, 0
            self._seq += 1
            seq = self._seq
        try:
            self.emit([denied_event(peer, reason, suppressed=suppressed,
                                    now=datetime.fromtimestamp(self.clock(), UTC), seq=seq)])
        except Exception as exc:  # the refusal stands; the failure is logged, never the request's content
            log.error("refused webhook post from %s not recorded: %s", peer, failure(exc, self.spool))


class _Handler(BaseHTTPRequestHandler):
    receiver: Receiver
    server_version = "citydc-alert-webhook"
    timeout = web.READ_TIMEOUT_SECONDS  # a stalled client is dropped, not kept on a thread

    def _answer(self, status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != PATH:
            self.close_connection = True
            self._answer(404, f"not found: post Alertmanager webhook messages to {PATH}\n")
            return
        body = web.read_body(self, limit=MAX_BODY, on_refused=self._refused)
        if body is None:
            return
        try:
            payload = parse_payload(body)
        except PayloadInvalid as exc:
            self._refused(exc.reason, str(exc))
            self._answer(400, f"bad request: {exc}\n")
            return
        if payload.truncatedAlerts:
            self.receiver.metrics.truncated.inc(payload.truncatedAlerts)
            log.warning("webhook post to %s left out %d alert(s) (truncatedAlerts; the receiver's max_alerts): "
                        "they are not recorded", web.printable(payload.receiver, 64), payload.truncatedAlerts)
        try:
            recorded, dup = self.receiver.receive(payload)
        except Exception as exc:  # the spool could not be written: 500, Alertmanager retries
            self.receiver.metrics.errors.inc()
            log.error("webhook post not recorded: %s; Alertmanager will retry", failure(exc, self.receiver.spool))
            self._answer(500, "not recorded; retry\n")
            return
        self._answer(200, json.dumps({"recorded": recorded, "duplicates": dup}) + "\n", "application/json")

    def _refused(self, reason: str, detail: str) -> None:
        """Count and log a post refused with 4xx: Alertmanager does not retry it, the notification is lost."""
        self.receiver.metrics.bad_requests.labels(reason).inc()
        log.warning("webhook post from %s refused (%s): %s; Alertmanager does not retry it, the notification is "
                    "not recorded", self.client_address[0], reason, detail)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._answer(200, encoder(self.receiver.registry).decode(), content_type)
        elif path == "/":
            self._answer(200, f"citydc Alertmanager webhook receiver: POST {PATH}, GET /metrics\n")
        else:
            self._answer(404, "not found\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def server(receiver: Receiver, host: str, port: int) -> ThreadingHTTPServer:
    """Given a Receiver and an address, return a bound (not yet serving) HTTP server; pass it to
    web.secure() and serve it. Raise OSError if the bind fails."""
    import socket

    handler = type("WebhookHandler", (_Handler,), {"receiver": receiver})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    cls = type("WebhookServer", (_BoundedServer,), {"address_family": family, "daemon_threads": True})
    srv = cls((host, port), handler)
    srv.refused = receiver.metrics.connections_refused
    return srv


class _BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server serving at most MAX_CONNECTIONS connections at once: one more is
    closed unserved (counted), so stalled or flooding peers cannot take every thread."""

    refused: Counter

    def server_activate(self) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._last_warning = 0.0
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused.inc()
            if time.monotonic() - self._last_warning > 60:  # once a minute: a flood must not flood the journal
                self._last_warning = time.monotonic()
                log.warning("%d connections open: closing new ones unserved (from %s among them)",
                            MAX_CONNECTIONS, client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
