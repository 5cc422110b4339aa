"""The NOC page's cache: one thread reads Prometheus and Alertmanager on its own schedule.

``Poller.poll_once`` asks each source for its section of the page at one evaluation time and keeps
the answer with the time it was fetched; a source that fails keeps its previous answer (and its old
time) and records the error. ``Poller.view(now)`` builds what a screen gets from the cache alone,
marking every section, and every tier of the status matrix, STALE when its data is older than
``stale_after`` seconds. Screens never cause a query: ten screens cost Prometheus what one does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from citydc.noc import queries as q
from citydc.noc.api import AlertmanagerApi, ApiError, ApiUnreachable, PrometheusApi, finite

__all__ = ["Poller", "Section", "Settings", "Snapshot"]

log = logging.getLogger(__name__)

WATCHDOG = "Watchdog"


@dataclass(frozen=True)
class Settings:
    sites: tuple[tuple[str, str], ...]  # (id, display name)
    poll_interval: float = 15.0
    stale_after: float = 120.0
    chart_seconds: float = 3600.0
    chart_step: float = 60.0
    links_per_site: int = 6
    link_selector: str = 'ifAlias=~"(?i).*uplink.*"'
    refresh_seconds: float = 10.0
    backup_max_age: float = 26 * 3600.0
    timezone: str = "Asia/Taipei"
    evaluation_delay: float = 5.0


@dataclass
class Section:
    """One source's part of the page: its data, when it was fetched (evaluation time), the last error."""

    data: Any = None
    fetched_at: float | None = None
    error: str | None = None

    def stale(self, now: float, stale_after: float) -> bool:
        return self.fetched_at is None or now - self.fetched_at > stale_after

    def to_json(self, now: float, stale_after: float) -> dict[str, Any]:
        return {"fetched_at": self.fetched_at, "age_seconds": None if self.fetched_at is None
                else round(max(0.0, now - self.fetched_at), 1), "stale": self.stale(now, stale_after),
                "error": self.error}


@dataclass
class Snapshot:
    """Everything the poller knows; replaced as a whole after each poll (readers never see half of one)."""

    polled_at: float | None = None
    polls: int = 0
    sections: dict[str, Section] = field(default_factory=dict)
    seen: frozenset[tuple[str, str]] = frozenset()  # (site, tier) that ever had data since start


class Poller:
    """Given the two APIs and settings, keep a Snapshot fresh from one thread."""

    SECTIONS = ("alerts", "tiers", "links", "backups", "audit")

    def __init__(self, prometheus: PrometheusApi, alertmanager: AlertmanagerApi | None, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self.prometheus = prometheus
        self.alertmanager = alertmanager
        self.settings = settings
        self.clock = clock
        self.snapshot = Snapshot(sections={name: Section() for name in self.SECTIONS})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._render_lock = threading.Lock()
        self._rendered: tuple[Any, bytes] | None = None

    # -- polling -----------------------------------------------------------------------------

    def poll_once(self) -> Snapshot:
        """Query every source once at one evaluation time; return (and keep) the new snapshot."""
        # The evaluation time sent to Prometheus (milliseconds, kept as sent): a little in the past, so rule
        # evaluations and scrapes in flight have landed and the answers at that time are final.
        at = round(self.clock() - self.settings.evaluation_delay, 3)
        old = self.snapshot
        sections = dict(old.sections)
        seen = set(old.seen)
        fetchers: dict[str, Callable[[float], Any]] = {
            "alerts": self._alerts, "tiers": self._tiers, "links": self._links, "backups": self._backups,
            "audit": self._audit}
        # Every section but the alerts reads Prometheus: once it did not answer at all, the others are not
        # asked in this poll. A Prometheus that hangs would otherwise cost a query timeout per section, and
        # the whole snapshot (the alerts read a moment before included) would wait for them and age.
        prometheus_down: ApiUnreachable | None = None
        for name, fetch in fetchers.items():
            try:
                if prometheus_down is not None and name != "alerts":
                    raise prometheus_down
                data = fetch(at)
            except ApiError as exc:
                log.warning("NOC poll of %s failed: %s", name, exc)
                sections[name] = Section(old.sections[name].data, old.sections[name].fetched_at, str(exc))
                if isinstance(exc, ApiUnreachable) and name != "alerts":
                    prometheus_down = exc
                continue
            sections[name] = Section(data, at, None)
            if name == "tiers":
                seen |= {(site, tier) for tier, ages in data.items() for site in ages}
        self.snapshot = Snapshot(at, old.polls + 1, sections, frozenset(seen))
        return self.snapshot

    def _alerts(self, at: float) -> list[dict[str, Any]]:
        if self.alertmanager is None:
            raise ApiError("no Alertmanager configured (alerting.alertmanager_url)")
        out = []
        for alert in self.alertmanager.alerts():
            labels, ann = alert["labels"], alert["annotations"]
            sev = labels.get("severity", "info")
            out.append({"fingerprint": alert["fingerprint"], "alertname": labels.get("alertname", ""),
                        "severity": sev if sev in q.SEVERITIES else "info", "site": labels.get("site", ""),
                        "tier": q.tier_of(labels), "summary": ann.get("summary", ""),
                        "startsAt": alert["startsAt"]})
        rank = {s: i for i, s in enumerate(q.SEVERITIES)}
        out.sort(key=lambda a: (rank[a["severity"]], a["startsAt"], a["fingerprint"]))
        return out

    def _tiers(self, at: float) -> dict[str, dict[str, float]]:
        """Return {tier: {site: newest sample time}} for the tiers that export metrics."""
        return {t.id: {s.labels.get("site", ""): s.value for s in self.prometheus.instant(t.freshness, at)}
                for t in q.TIERS if t.freshness is not None}

    def _links(self, at: float) -> list[dict[str, Any]]:
        st = self.settings
        sel = st.link_selector
        util = self.prometheus.instant(f"{q.LINK_UTILISATION}{{{sel}}}", at)
        busiest: dict[tuple[str, str, str], float] = {}
        for s in util:
            key = (s.labels.get("site", ""), s.labels.get("device", ""), s.labels.get("ifName", ""))
            value = s.value if finite(s.value) is not None else 0.0
            busiest[key] = max(busiest.get(key, 0.0), value)
        chosen: set[tuple[str, str, str]] = set()
        for site, _ in st.sites:
            ranked = sorted((k for k in busiest if k[0] == site), key=lambda k: (-busiest[k], k[1], k[2]))
            chosen.update(ranked[:st.links_per_site])
        if not chosen:
            return []
        narrow = (f'{sel},device=~{q.regex_literal([k[1] for k in chosen])},'
                  f'ifName=~{q.regex_literal([k[2] for k in chosen])}')
        bits = {_link_key(s.labels): s.value for s in self.prometheus.instant(f"{q.LINK_BITS}{{{narrow}}}", at)}
        # Whole steps back from ``at``, so the chart's last point is at ``at``: the current value.
        start = at - (st.chart_seconds // st.chart_step) * st.chart_step
        series = {_link_key(s.labels): s.points for s in self.prometheus.range(
            f"{q.LINK_UTILISATION}{{{narrow}}}", start, at, st.chart_step)}
        out = []
        for s in util:
            key = _link_key(s.labels)
            if key[:3] not in chosen:
                continue
            out.append({"site": key[0], "device": key[1], "ifName": key[2], "direction": key[3],
                        "ifAlias": s.labels.get("ifAlias", ""), "utilisation_ratio": finite(s.value),
                        "bits_per_second": finite(bits[key]) if key in bits else None,
                        "series": [[t, finite(v)] for t, v in series.get(key, [])]})
        out.sort(key=lambda x: (x["site"], -busiest[(x["site"], x["device"], x["ifName"])], x["device"],
                                x["ifName"], x["direction"]))
        return out

    def _backups(self, at: float) -> list[dict[str, Any]]:
        outcome = {_backup_key(s.labels): s.labels.get("outcome", "") for s in
                   self.prometheus.instant(q.BACKUP_OUTCOME, at)}
        out = []
        for s in self.prometheus.instant(q.BACKUP_SUCCESS, at):
            key = _backup_key(s.labels)
            out.append({"site": key[0], "job": key[1], "repo": key[2], "step": key[3],
                        "last_success": finite(s.value), "outcome": outcome.get(key, "")})
        out.sort(key=lambda b: (b["last_success"] or 0.0, b["site"], b["job"], b["repo"], b["step"]))
        return out

    def _audit(self, at: float) -> list[dict[str, Any]]:
        success = {(s.labels.get("site", ""), s.labels.get("source", "")): s.value
                   for s in self.prometheus.instant(q.LDAP_SUCCESS, at)}
        findings: dict[tuple[str, str], dict[str, float]] = {}
        for s in self.prometheus.instant(q.LDAP_FINDINGS, at):
            key = (s.labels.get("site", ""), s.labels.get("source", ""))
            findings.setdefault(key, {})[s.labels.get("severity", "")] = s.value
        rules: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for s in self.prometheus.instant(q.LDAP_RULE_FINDINGS, at):
            key = (s.labels.get("site", ""), s.labels.get("source", ""))
            rules.setdefault(key, []).append((s.labels.get("rule", ""), s.value))
        out = []
        for key in sorted(set(success) | set(findings)):
            top = sorted(rules.get(key, []), key=lambda r: (-r[1], r[0]))[:5]
            out.append({"site": key[0], "source": key[1], "last_success": finite(success[key]) if key in success
                        else None, "findings": {k: finite(v) for k, v in sorted(findings.get(key, {}).items())},
                        "top_rules": [{"rule": r, "count": finite(v)} for r, v in top]})
        return out

    # -- the thread ---------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        """Poll once now, then every ``poll_interval`` seconds on a daemon thread; return the thread."""

        def loop() -> None:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.poll_once()
                except Exception:  # a bug in one poll must not end the wall screen's updates
                    log.exception("NOC poll failed")
                self._stop.wait(max(0.0, self.settings.poll_interval - (time.monotonic() - started)))

        self._thread = threading.Thread(target=loop, name="citydc-noc-poller", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- what a screen gets -------------------------------------------------------------------

    def view(self, now: float | None = None) -> dict[str, Any]:
        """Given the time, return the page's data from the cache alone, with staleness marked."""
        now = self.clock() if now is None else now
        snap, st = self.snapshot, self.settings
        secs = snap.sections
        alerts_sec = secs["alerts"]
        alerts = [a for a in (alerts_sec.data or []) if a["alertname"] != WATCHDOG]
        counts = {site: dict.fromkeys(q.SEVERITIES, 0) for site, _ in st.sites}
        for a in alerts:
            counts.setdefault(a["site"] or "all", dict.fromkeys(q.SEVERITIES, 0))[a["severity"]] += 1
        out: dict[str, Any] = {
            "generated_at": now,
            "polled_at": snap.polled_at,
            "polls": snap.polls,
            "refresh_seconds": st.refresh_seconds,
            "chart_seconds": st.chart_seconds,
            "timezone": st.timezone,
            "stale_after_seconds": st.stale_after,
            "sites": [{"id": i, "name": n} for i, n in st.sites],
            "tiers": [{"id": t.id, "en": t.en, "zh": t.zh} for t in q.TIERS],
            "sources": {name: sec.to_json(now, st.stale_after) for name, sec in secs.items()},
            "alerts": alerts,
            "alert_counts": counts,
            # None when the alerts are stale: an old Watchdog says nothing about the pipeline now.
            "watchdog": None if alerts_sec.data is None or alerts_sec.stale(now, st.stale_after) else any(
                a["alertname"] == WATCHDOG for a in alerts_sec.data),
            "matrix": self._matrix(snap, alerts, now),
            "links": secs["links"].data or [],
            "backups": [dict(b, age_seconds=None if b["last_success"] is None else round(now - b["last_success"]),
                             overdue=b["last_success"] is None or now - b["last_success"] > st.backup_max_age)
                        for b in (secs["backups"].data or [])],
            "audit": secs["audit"].data or [],
        }
        return out

    def _matrix(self, snap: Snapshot, alerts: list[dict[str, Any]], now: float) -> dict[str, dict[str, dict[str, Any]]]:
        st = self.settings
        alerts_sec, tiers_sec = snap.sections["alerts"], snap.sections["tiers"]
        alerts_stale = alerts_sec.stale(now, st.stale_after)
        tiers_stale = tiers_sec.stale(now, st.stale_after)
        rank = {s: i for i, s in enumerate(q.SEVERITIES)}
        matrix: dict[str, dict[str, dict[str, Any]]] = {}
        for site, _ in st.sites:
            row = matrix[site] = {}
            for tier in q.TIERS:
                mine = [a for a in alerts if a["tier"] == tier.id and a["site"] in (site, "all", "")]
                worst = min((a["severity"] for a in mine), key=rank.__getitem__, default=None)
                newest = (tiers_sec.data or {}).get(tier.id, {}).get(site)
                stopped = newest == q.STOPPED  # had metrics within the lookback, has none now
                if stopped:
                    newest = None
                age = None if newest is None else round(max(0.0, now - newest), 1)
                stale, reason = False, ""
                if alerts_stale:
                    stale, reason = True, "Alertmanager not read recently" if alerts_sec.error is None \
                        else f"Alertmanager: {alerts_sec.error}"
                elif tier.freshness is not None:
                    if tiers_stale:
                        stale, reason = True, f"Prometheus: {tiers_sec.error or 'not read recently'}"
                    elif newest is None:
                        if stopped or (site, tier.id) in snap.seen:
                            stale, reason = True, "its metrics stopped"
                    elif now - newest > st.stale_after:
                        stale, reason = True, f"newest sample {age:.0f} s old"
                has_data = tier.freshness is not None and ((site, tier.id) in snap.seen or newest is not None)
                if worst == "critical":
                    status = "critical"
                elif stale:
                    status = "stale"
                elif worst == "warning":
                    status = "warning"
                elif not has_data and not mine:
                    status, reason = "nodata", ("no metrics for this tier yet" if tier.freshness is not None
                                                else "citydc reads no metric for this tier: only its alerts show")
                else:
                    status = "ok"
                row[tier.id] = {"status": status, "stale": stale, "reason": reason, "alerts": len(mine),
                                "age_seconds": age}
        return matrix

    def render(self, now: float | None = None) -> bytes:
        """Return the view as JSON bytes (UTF-8), reusing the last rendering while nothing it shows changed."""
        now = self.clock() if now is None else now
        snap = self.snapshot
        # What changes between polls without a new snapshot: staleness (and ages, rounded to seconds).
        key = (snap.polls, snap.polled_at, int(now))
        with self._render_lock:
            if self._rendered is not None and self._rendered[0] == key:
                return self._rendered[1]
        body = json.dumps(self.view(now), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        with self._render_lock:
            self._rendered = (key, body)
        return body


def _link_key(labels: dict[str, str]) -> tuple[str, str, str, str]:
    return (labels.get("site", ""), labels.get("device", ""), labels.get("ifName", ""), labels.get("direction", ""))


def _backup_key(labels: dict[str, str]) -> tuple[str, str, str, str]:
    return (labels.get("site", ""), labels.get("job", ""), labels.get("repo", ""), labels.get("step", ""))
