"""Small HTTP clients of the Prometheus query API and the Alertmanager API v2.

Answers are untrusted input: every shape is checked and a wrong one raises ``ApiError`` naming
what was wrong, never a KeyError from deep inside the page's code.
"""

from __future__ import annotations

import contextlib
import json
import math
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol

from citydc.httpaccess import NoRedirect, explain
from citydc.web import printable

__all__ = ["Alertmanager", "AlertmanagerApi", "ApiError", "ApiUnreachable", "Prometheus", "PrometheusApi", "Sample",
           "Series"]

MAX_BODY = 32 << 20  # bytes of one answer; a larger one is refused


class ApiError(RuntimeError):
    """A query failed: unreachable, an HTTP error, or an answer of the wrong shape."""


class ApiUnreachable(ApiError):
    """The server did not answer at all (refused, timed out, TLS failed): its other queries would fail alike."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)


class PrometheusApi(Protocol):
    def instant(self, expr: str, at: float) -> list[Sample]: ...

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]: ...


class AlertmanagerApi(Protocol):
    def alerts(self) -> list[dict[str, Any]]: ...


def _number(text: Any, what: str) -> float:
    if not isinstance(text, str):
        raise ApiError(f"{what}: expected a number as a string, got {type(text).__name__}")
    try:
        return float(text)  # "NaN", "+Inf" included
    except ValueError:
        raise ApiError(f"{what}: not a number: {text[:40]!r}") from None


def _labels(obj: Any, what: str) -> dict[str, str]:
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in obj.items()):
        raise ApiError(f"{what}: expected a mapping of label names to strings")
    return dict(obj)


class _Http:
    def __init__(self, base_url: str, timeout: float = 10.0, context: ssl.SSLContext | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.context = context
        self.headers = dict(headers or {})
        self.requests = 0  # how many requests this client sent (the benchmark and tests read it)
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoRedirect)

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, headers={"Accept": "application/json", **self.headers})  # noqa: S310
        with self._lock:
            self.requests += 1
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                body = resp.read(MAX_BODY + 1)
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                target = printable(str(exc.headers.get("Location") or "?"), 120)
                raise ApiError(f"{self.base}: HTTP {exc.code} redirect to {target}, not followed (credentials "
                               "would go with it): give the URL of the server itself") from None
            detail = ""
            with contextlib.suppress(ValueError, AttributeError, OSError):
                detail = json.loads(exc.read(4096) or b"{}").get("error", "")
            raise ApiError(f"{self.base}: HTTP {exc.code}{': ' + printable(str(detail)) if detail else ''}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = explain(getattr(exc, "reason", None) or exc)
            raise ApiUnreachable(f"{self.base} unreachable: {reason}") from None
        if len(body) > MAX_BODY:
            raise ApiError(f"{self.base}: answer over {MAX_BODY} bytes")
        try:
            return json.loads(body)
        except ValueError:
            raise ApiError(f"{self.base}{path}: the answer is not JSON") from None


class Prometheus(_Http):
    """Prometheus' HTTP API: instant and range queries at explicit times (so a snapshot is reproducible)."""

    def _data(self, path: str, params: dict[str, str], kind: str) -> list[Any]:
        body = self.get_json(path, params)
        if not isinstance(body, dict) or body.get("status") != "success":
            err = body.get("error") if isinstance(body, dict) else None
            raise ApiError(f"Prometheus query failed: {printable(str(err)) if err else 'unexpected answer'}")
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != kind or not isinstance(data.get("result"), list):
            raise ApiError(f"Prometheus answer: expected a {kind} result")
        return data["result"]

    def instant(self, expr: str, at: float) -> list[Sample]:
        out = []
        for item in self._data("/api/v1/query", {"query": expr, "time": f"{at:.3f}"}, "vector"):
            if not isinstance(item, dict) or not isinstance(item.get("value"), list) or len(item["value"]) != 2:
                raise ApiError("Prometheus answer: a vector sample without [time, value]")
            out.append(Sample(_labels(item.get("metric"), "metric"), _number(item["value"][1], "sample value")))
        return out

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        out = []
        for item in self._data("/api/v1/query_range", params, "matrix"):
            values = item.get("values") if isinstance(item, dict) else None
            if not isinstance(values, list):
                raise ApiError("Prometheus answer: a series without values")
            points = []
            for pair in values:
                if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], int | float):
                    raise ApiError("Prometheus answer: a point without [time, value]")
                points.append((float(pair[0]), _number(pair[1], "point value")))
            out.append(Series(_labels(item.get("metric"), "metric"), points))
        return out


class Alertmanager(_Http):
    """Alertmanager's API v2: the active alerts (not silenced, not inhibited)."""

    def alerts(self) -> list[dict[str, Any]]:
        body = self.get_json("/api/v2/alerts", {"active": "true", "silenced": "false", "inhibited": "false"})
        if not isinstance(body, list):
            raise ApiError("Alertmanager answer: expected a list of alerts")
        out = []
        for item in body:
            if not isinstance(item, dict):
                raise ApiError("Alertmanager answer: an alert that is not an object")
            labels = _labels(item.get("labels"), "alert labels")
            annotations = _labels(item.get("annotations") or {}, "alert annotations")
            fingerprint, starts = item.get("fingerprint"), item.get("startsAt")
            if not isinstance(fingerprint, str) or not isinstance(starts, str):
                raise ApiError("Alertmanager answer: an alert without fingerprint or startsAt")
            state = (item.get("status") or {}).get("state", "active") if isinstance(item.get("status"), dict) \
                else "active"
            out.append({"fingerprint": fingerprint, "labels": labels, "annotations": annotations,
                        "startsAt": starts, "state": str(state)})
        return out


def finite(value: float) -> float | None:
    """Given a sample value, return it, or None for NaN and infinities (JSON has no such numbers)."""
    return value if math.isfinite(value) else None
