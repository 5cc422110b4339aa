"""A small client of the Prometheus HTTP API (``/api/v1/query``, ``/api/v1/query_range``).

The answer is network input and is checked before use: a wrong shape is a named error, never a
KeyError. Errors carry what went wrong and where, never a traceback:

- ``PrometheusUnreachable``: no HTTP answer (refused, timeout, DNS);
- ``PrometheusQueryError``: Prometheus answered with an error (bad query, too many points, timeout);
- ``PrometheusAnswerInvalid``: the answer is not what the API documents.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from citydc.httpaccess import explain, open_without_redirects

__all__ = ["PrometheusAnswerInvalid", "PrometheusClient", "PrometheusError", "PrometheusQueryError",
           "PrometheusUnreachable", "Series"]

MAX_ANSWER_BYTES = 64 * 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024


class PrometheusError(RuntimeError):
    """Any failure to get an answer from Prometheus; the message says which server and why."""


class PrometheusUnreachable(PrometheusError):
    pass


class PrometheusQueryError(PrometheusError):
    pass


class PrometheusAnswerInvalid(PrometheusError):
    pass


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and its (epoch seconds, value) points in time order."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


Opener = Callable[..., Any]


class PrometheusClient:
    """Given the server's base URL (``http://host:9090``), a timeout, and for a server with a web config its
    SSL context and headers (``citydc.httpaccess``: CA, client certificate, basic auth), query it.

    ``opener`` is ``httpaccess.open_without_redirects`` (a redirect would carry the basic auth header to
    another host) unless a test passes another.
    """

    def __init__(self, base_url: str, timeout: float = 30.0, opener: Opener = open_without_redirects, *,
                 context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._open = opener
        self._context = context
        self._headers = dict(headers or {})
        # Warnings of successful answers (a partial answer of a federated or remote store, a lookback
        # beyond retention): the figures may miss data, so the caller shows them.
        self.warnings: list[str] = []

    def _post(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.base_url}{path}"
        data = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(url, data=data, method="POST",  # noqa: S310 - http(s) checked at load
                                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                                  **self._headers})
        try:
            deadline = time.monotonic() + self.timeout
            with self._open(request, timeout=self.timeout, context=self._context) as resp:
                body = self._read(resp, deadline)
        except urllib.error.HTTPError as exc:
            # Prometheus answers 400/422/503 with a JSON error body: say its words.
            try:
                body = self._read(exc, deadline)
            except (PrometheusError, OSError):
                body = b""
            message = _error_text(body) or f"HTTP {exc.code} {exc.reason}"
            raise PrometheusQueryError(f"{self.base_url}: {message}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = explain(getattr(exc, "reason", exc))
            raise PrometheusUnreachable(f"{self.base_url}: no answer ({reason})") from None
        if len(body) > MAX_ANSWER_BYTES:
            raise PrometheusAnswerInvalid(f"{self.base_url}: answer larger than {MAX_ANSWER_BYTES} bytes")
        try:
            doc = json.loads(body)
        except ValueError:
            raise PrometheusAnswerInvalid(f"{url}: the answer is not JSON; is this Prometheus?") from None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            message = _error_text(body) or "status is not success"
            raise PrometheusQueryError(f"{self.base_url}: {message}")
        self.warnings.extend(_warnings(doc))
        return doc.get("data")

    def _read(self, resp: Any, deadline: float) -> bytes:
        """Read an answer in chunks up to MAX_ANSWER_BYTES + 1. The timeout bounds each socket read, the
        deadline the whole answer: a server trickling a byte a second would otherwise hold the report for ever.
        Raise PrometheusUnreachable past the deadline or when the answer is shorter than its Content-Length."""
        chunks: list[bytes] = []
        size = 0
        # read1 returns what has come; read(n) waits for all n bytes (or the end), which a trickle never sends.
        read = resp.read1 if hasattr(resp, "read1") else resp.read
        while size <= MAX_ANSWER_BYTES:
            if time.monotonic() > deadline:
                raise PrometheusUnreachable(f"{self.base_url}: the answer took longer than {self.timeout:g} s "
                                            "(report.timeout_seconds)")
            chunk = read(min(READ_CHUNK_BYTES, MAX_ANSWER_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        length = _content_length(resp)
        if length is not None and size < length:
            raise PrometheusUnreachable(f"{self.base_url}: the answer was cut off after {size} of its {length} bytes")
        return b"".join(chunks)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """Given a PromQL expression, a time range (epoch seconds, both ends included) and a step,
        return the matrix as Series. Raise a PrometheusError subclass if there is no valid answer."""
        data = self._post("/api/v1/query_range", {"query": expr, "start": _ts(start), "end": _ts(end),
                                                  "step": _ts(step)})
        if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise PrometheusAnswerInvalid(f"{self.base_url}: query_range did not return a matrix")
        return [_series(item, self.base_url) for item in data["result"]]

    def query(self, expr: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        """Given a PromQL expression (and an evaluation time), return the instant vector as (labels, value).

        Raise a PrometheusError subclass if there is no valid answer or the result is not a vector.
        """
        data = self._post("/api/v1/query", {"query": expr} | ({"time": _ts(at)} if at is not None else {}))
        if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
            raise PrometheusAnswerInvalid(f"{self.base_url}: query did not return a vector")
        out = []
        for item in data["result"]:
            labels = _labels(item, self.base_url)
            value = item.get("value") if isinstance(item, dict) else None
            out.append((labels, _point(value, self.base_url)[1]))
        return out


def _content_length(resp: Any) -> int | None:
    headers = getattr(resp, "headers", None)
    text = headers.get("Content-Length") if headers is not None else None
    return int(text) if isinstance(text, str) and text.strip().isdigit() else None


def _ts(value: float) -> str:
    return f"{value:.3f}"


def _warnings(doc: dict) -> list[str]:
    """Given a successful answer, return its warnings (and Prometheus 3's "infos"), each cut to 500 characters."""
    notes: list[str] = []
    for key in ("warnings", "infos"):
        value = doc.get(key) or []
        notes.extend(str(n)[:500] for n in (value if isinstance(value, list) else [value]))
    return notes


def _error_text(body: bytes) -> str | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        kind = doc.get("errorType")
        return f"{kind}: {doc['error']}" if isinstance(kind, str) else doc["error"]
    return None


def _labels(item: Any, where: str) -> dict[str, str]:
    metric = item.get("metric") if isinstance(item, dict) else None
    if not isinstance(metric, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metric.items()):
        raise PrometheusAnswerInvalid(f"{where}: a series without a valid label set")
    return dict(metric)


def _point(value: Any, where: str) -> tuple[float, float]:
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int | float)
            and isinstance(value[1], str)):
        raise PrometheusAnswerInvalid(f"{where}: a sample is not [time, \"value\"]")
    try:
        number = float(value[1])
    except ValueError:
        raise PrometheusAnswerInvalid(f"{where}: a sample value {value[1][:40]!r} is not a number") from None
    return float(value[0]), number


def _series(item: Any, where: str) -> Series:
    labels = _labels(item, where)
    values = item.get("values")
    if not isinstance(values, list):
        raise PrometheusAnswerInvalid(f"{where}: a series without values")
    # NaN and infinities are kept: what they mean is the caller's to decide (a report refuses them).
    return Series(labels, [_point(v, where) for v in values])
