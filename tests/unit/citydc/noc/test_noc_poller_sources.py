"""The NOC cache when a source misbehaves: a Prometheus that does not answer costs one query timeout per
poll, not one per section (the alerts read before it stay fresh and are not blamed on Alertmanager); a
tier whose metrics stopped within the lookback is STALE from the very first poll (a server just started,
every `citydc noc show`), not NO DATA; the tiers citydc reads no metric for say so."""

from __future__ import annotations

import pytest

from citydc.noc import queries as q
from citydc.noc.api import ApiUnreachable, Sample, Series
from citydc.noc.poller import Poller, Settings

T0 = 1_800_000_000.0
SITES = (("siwei", "四維 Siwei"), ("fengshan", "鳳山 Fengshan"))


class Prom:
    def __init__(self) -> None:
        self.calls = 0
        self.down = False
        self.fresh: dict[str, float] = {"siwei": T0, "fengshan": T0}

    def instant(self, expr: str, at: float) -> list[Sample]:
        self.calls += 1
        if self.down:
            raise ApiUnreachable("http://prom unreachable: timed out")
        if "timestamp(" in expr:
            return [Sample({"site": s}, t) for s, t in self.fresh.items()]
        return []

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        self.calls += 1
        return []


class Am:
    def alerts(self) -> list[dict]:
        return [{"fingerprint": "01", "startsAt": "2026-12-05T01:00:00Z", "state": "active",
                 "labels": {"alertname": "Watchdog", "severity": "info", "site": "all"}, "annotations": {}}]


@pytest.fixture
def world():
    prom = Prom()
    now = [T0]
    poller = Poller(prom, Am(), Settings(sites=SITES, stale_after=120, evaluation_delay=0), clock=lambda: now[0])
    return poller, prom, now


def test_an_unanswering_prometheus_is_asked_once_per_poll_and_the_alerts_stay_fresh(world):
    poller, prom, now = world
    poller.poll_once()
    prom.down, prom.calls = True, 0
    now[0] += 200
    poller.poll_once()
    assert prom.calls == 1  # tiers failed unanswered: links, backups and audit not asked to time out too
    view = poller.view()
    for name in ("tiers", "links", "backups", "audit"):
        assert view["sources"][name]["error"] == "http://prom unreachable: timed out"
        assert view["sources"][name]["stale"] is True
    assert view["sources"]["alerts"]["stale"] is False and view["watchdog"] is True
    cell = view["matrix"]["siwei"]["network"]
    assert cell["status"] == "stale" and cell["reason"] == "Prometheus: http://prom unreachable: timed out"


def test_metrics_that_stopped_within_the_lookback_are_stale_at_the_first_poll(world):
    poller, prom, _ = world
    prom.fresh = {"siwei": T0, "fengshan": q.STOPPED}
    poller.poll_once()
    m = poller.view()["matrix"]
    assert m["fengshan"]["network"] == {"status": "stale", "stale": True, "reason": "its metrics stopped",
                                        "alerts": 0, "age_seconds": None}
    assert m["siwei"]["network"]["status"] == "ok"


def test_the_freshness_queries_look_back_for_vanished_metrics():
    for tier in q.TIERS:
        if tier.freshness is not None:
            assert f"[{q.VANISHED_LOOKBACK}])) * 0" in tier.freshness and tier.freshness.startswith("max by (site)")


def test_a_tier_without_a_metric_says_so(world):
    poller, _, _ = world
    poller.poll_once()
    cell = poller.view()["matrix"]["siwei"]["virt"]
    assert cell["status"] == "nodata" and "reads no metric for this tier" in cell["reason"]
