"""The multi-target SNMP exporter's HTTP front: ``GET /snmp?target=&module=&auth=`` polls one device.

Prometheus keeps scheduling, service discovery and sharding (the snmp_exporter pattern). The handler
only parses the query (``parse_query``); the poll engine (``engine.py``) finds the device and polls
it; ``exposition.py`` writes the answer. Each request's answer holds that device's metrics only;
``/metrics`` has the exporter's own. HTTP requests are served by threads, which wait on the
engine's asyncio loop, so a slow device only occupies its own poll.
"""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from citydc.collectors.snmp import exposition
from citydc.collectors.snmp.collector import ScrapeResult
from citydc.collectors.snmp.engine import BadRequest, Engine, Job

__all__ = ["BadRequest", "Exporter", "job_from_query", "parse_query", "serve"]

log = logging.getLogger(__name__)

PARAMETERS = ("target", "module", "auth")


class Exporter(Engine):
    """The poll engine as the HTTP front uses it: a poll's budget from Prometheus' header, and its answer."""

    def budget(self, scrape_timeout_header: str | None) -> float:
        """Given Prometheus' X-Prometheus-Scrape-Timeout-Seconds (if any), return this poll's budget."""
        budget = self.settings.scrape_timeout_seconds
        try:
            if scrape_timeout_header:
                budget = min(budget, max(float(scrape_timeout_header) - 0.5, 0.2))
        except ValueError:
            pass
        return budget

    def render(self, job: Job, result: ScrapeResult) -> bytes:
        """Given a job and its result, return the Prometheus text exposition of that device."""
        state = self.states.get(job.key)
        return exposition.render(result, job.device.site, job.device.name, None if state is None else state.counters)


def parse_query(query: str) -> dict[str, str]:
    """Given the query string of ``/snmp``, return its parameters (target, module, auth), each at most once.

    Raise BadRequest naming an unknown or repeated parameter.
    """
    params = parse_qs(query, keep_blank_values=True)
    for key, values in params.items():
        if key not in PARAMETERS:
            raise BadRequest(f"unknown parameter {key!r} (expected target, module, auth)")
        if len(values) != 1:
            raise BadRequest(f"parameter {key!r} given {len(values)} times, expected once")
    return {key: values[0] for key, values in params.items()}


def job_from_query(engine: Engine, query: str) -> Job:
    """Given the engine and the query string of ``/snmp``, return the Job. Raise BadRequest saying what is wrong."""
    params = parse_query(query)
    return engine.resolve(params.get("target", ""), params.get("module"), params.get("auth"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    exporter: Exporter

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        exp = self.exporter
        if url.path == "/metrics":
            self._send(200, generate_latest(exp.registry), CONTENT_TYPE_LATEST)
        elif url.path == "/snmp":
            try:
                job = job_from_query(exp, url.query)
            except BadRequest as exc:
                exp.requests_total.labels("", "", "bad_request").inc()
                self._send(400, f"{exc}\n".encode())
                return
            result = exp.poll(job, exp.budget(self.headers.get("X-Prometheus-Scrape-Timeout-Seconds")))
            self._send(200, exp.render(job, result), CONTENT_TYPE_LATEST)
        elif url.path == "/":
            self._send(200, b"citydc SNMP exporter: /snmp?target=HOST[:PORT]&module=if_mib&auth=PROFILE, /metrics\n")
        else:
            self._send(404, b"not found: use /snmp or /metrics\n")


def serve(exporter: Exporter, host: str, port: int) -> ThreadingHTTPServer:
    """Given a started exporter, return an HTTP server bound to host:port (call serve_forever)."""
    handler = type("Handler", (_Handler,), {"exporter": exporter})
    # socketserver's default listen backlog is 5: a Prometheus scraping hundreds of targets at once
    # would see connections dropped and retried seconds later.
    server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 1024})
    server = server_class((host, port), handler)
    server.daemon_threads = True
    return server
