"""citydc.report.promapi: an answer that never ends (a byte at a time) fails at the report's timeout, and an
answer cut short of its Content-Length is named as cut off, not as "not JSON; is this Prometheus?"."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator

import pytest

from citydc.report import promapi
from citydc.report.promapi import PrometheusClient, PrometheusUnreachable

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\nConnection: close\r\n\r\n"
PART = b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{}'


class Trickle:
    """A response that sends one byte per read, never ending."""

    headers = None  # no Content-Length

    def __enter__(self) -> Trickle:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read1(self, n: int) -> bytes:
        return b" "


def test_an_answer_that_never_ends_fails_at_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = itertools.count()  # one second per look at the clock: no real waiting
    monkeypatch.setattr(promapi.time, "monotonic", lambda: float(next(clock)))
    client = PrometheusClient("http://prom:9090", timeout=30, opener=lambda *a, **k: Trickle())
    with pytest.raises(PrometheusUnreachable, match=r"http://prom:9090: the answer took longer than 30 s "
                                                    r"\(report.timeout_seconds\)"):
        client.query_range("up", 0, 300, 300)


@pytest.fixture
def cut_off_server() -> Iterator[str]:
    """A server on 127.0.0.1 that promises 500 bytes, sends fewer and closes."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(HEAD + PART)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    thread.join()
    server.close()


def test_an_answer_cut_short_is_named(cut_off_server: str) -> None:
    client = PrometheusClient(cut_off_server, timeout=30)
    with pytest.raises(PrometheusUnreachable, match=f"{cut_off_server}: the answer was cut off after {len(PART)} "
                                                    "of its 500 bytes"):
        client.query_range("up", 0, 300, 300)
