"""The NOC page's cache (citydc.noc.poller) against fake APIs at the unit boundary: what is queried,
when, and how the status matrix, staleness and link charts come out of the answers."""

from __future__ import annotations

import json
import re

import pytest

from citydc.noc import queries as q
from citydc.noc.api import ApiError, Sample, Series
from citydc.noc.poller import Poller, Settings

T0 = 1_800_000_000.0
SITES = (("siwei", "四維 Siwei"), ("fengshan", "鳳山 Fengshan"))


class FakePrometheus:
    """Answers by metric name found in the expression; records every query."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []
        self.fail: str | None = None
        self.fresh = {"siwei": T0, "fengshan": T0}
        self.util = {("siwei", "sw1", "Te1/1/1"): 0.56, ("siwei", "sw2", "Te1/1/1"): 0.10,
                     ("siwei", "sw3", "Te1/1/1"): 0.30, ("fengshan", "sw9", "Te1/1/2"): 0.20}

    def _check(self) -> None:
        if self.fail:
            raise ApiError(self.fail)

    def instant(self, expr: str, at: float) -> list[Sample]:
        self.calls.append(("instant", expr, at))
        self._check()
        if "timestamp(" in expr:
            return [Sample({"site": s}, t) for s, t in self.fresh.items()]
        if expr.startswith(q.LINK_UTILISATION):
            return [Sample(_link(k, d), v if d == "in" else v / 2) for k, v in self.util.items() for d in ("in", "out")]
        if expr.startswith(q.LINK_BITS):
            return [Sample(_link(k, d), v * 1e10 if d == "in" else v * 5e9) for k, v in self.util.items()
                    for d in ("in", "out")]
        if expr == q.BACKUP_SUCCESS:
            return [Sample({"site": "fengshan", "job": "fs", "repo": "offsite", "step": "copy"}, at - 30 * 3600),
                    Sample({"site": "siwei", "job": "vm", "repo": "local", "step": "backup"}, at - 3600)]
        if expr == q.BACKUP_OUTCOME:
            return [Sample({"site": "siwei", "job": "vm", "repo": "local", "step": "backup", "outcome": "success"}, 1)]
        if expr == q.LDAP_FINDINGS:
            return [Sample({"site": "siwei", "source": "ldap1", "severity": "critical"}, 1.0),
                    Sample({"site": "siwei", "source": "ldap1", "severity": "low"}, 4.0)]
        if expr == q.LDAP_RULE_FINDINGS:
            return [Sample({"site": "siwei", "source": "ldap1", "rule": "LDAP-PWD-001"}, 1.0)]
        if expr == q.LDAP_SUCCESS:
            return [Sample({"site": "siwei", "source": "ldap1"}, at - 60)]
        return []

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        self.calls.append(("range", expr, end))
        self._check()
        assert expr.startswith(q.LINK_UTILISATION + "{")
        out = []
        for k, v in self.util.items():
            if not re.search(r"device=~\"[^\"]*\b" + re.escape(k[1]) + r"\b", expr):
                continue
            for d in ("in", "out"):
                last = v if d == "in" else v / 2
                out.append(Series(_link(k, d), [(end - step, last / 3), (end, last)]))
        return out


def _link(key: tuple[str, str, str], direction: str) -> dict[str, str]:
    return {"site": key[0], "device": key[1], "ifName": key[2], "direction": direction, "ifAlias": "uplink"}


class FakeAlertmanager:
    def __init__(self) -> None:
        self.items: list[dict] = []
        self.fail: str | None = None
        self.calls = 0

    def add(self, name: str, severity: str, site: str, **labels: str) -> None:
        self.items.append({"fingerprint": f"{len(self.items):016x}", "startsAt": "2026-12-05T01:00:00Z",
                           "labels": {"alertname": name, "severity": severity, "site": site, **labels},
                           "annotations": {"summary": f"{name} at {site}"}, "state": "active"})

    def alerts(self) -> list[dict]:
        self.calls += 1
        if self.fail:
            raise ApiError(self.fail)
        return list(self.items)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world():
    prom, am, clock = FakePrometheus(), FakeAlertmanager(), Clock()
    poller = Poller(prom, am, Settings(sites=SITES, stale_after=120, links_per_site=2, evaluation_delay=0), clock=clock)
    return poller, prom, am, clock


def test_screens_read_the_cache_and_never_query(world):
    poller, prom, am, clock = world
    poller.poll_once()
    queries, am_calls = len(prom.calls), am.calls
    assert queries > 0 and am_calls == 1
    for _ in range(20):
        clock.now += 1
        json.loads(poller.render())
    assert (len(prom.calls), am.calls) == (queries, am_calls)
    # One evaluation time for the whole poll, so the snapshot can be checked against Prometheus at that time.
    assert {at for _, _, at in prom.calls} == {T0}


def test_matrix_from_alerts_and_freshness(world):
    poller, prom, am, clock = world  # noqa: RUF059 - each test uses some
    am.add("UplinkDown", "critical", "siwei")
    am.add("BackupNotSucceeded", "warning", "fengshan")
    am.add("Watchdog", "none", "all")
    poller.poll_once()
    view = poller.view()
    m = view["matrix"]
    assert m["siwei"]["network"]["status"] == "critical"
    assert m["fengshan"]["network"]["status"] == "ok"
    assert m["fengshan"]["backup"]["status"] == "warning"
    assert m["siwei"]["backup"]["status"] == "ok"
    assert m["siwei"]["lb"]["status"] == "nodata"  # no metric for load balancers yet: not green
    assert view["watchdog"] is True
    assert [a["alertname"] for a in view["alerts"]] == ["UplinkDown", "BackupNotSucceeded"]  # Watchdog not listed
    assert view["alert_counts"]["siwei"] == {"critical": 1, "warning": 0, "info": 0}


def test_alert_tier_label_wins_over_its_name(world):
    poller, prom, am, clock = world  # noqa: RUF059 - each test uses some
    am.add("SomethingNew", "warning", "siwei", tier="lb")
    poller.poll_once()
    assert poller.view()["matrix"]["siwei"]["lb"]["status"] == "warning"


def test_old_series_of_a_tier_show_stale(world):
    poller, prom, am, clock = world  # noqa: RUF059 - each test uses some
    prom.fresh = {"siwei": T0 - 600, "fengshan": T0}
    poller.poll_once()
    m = poller.view()["matrix"]
    assert m["siwei"]["network"]["status"] == "stale"
    assert "600 s old" in m["siwei"]["network"]["reason"]
    assert m["fengshan"]["network"]["status"] == "ok"


def test_a_tier_whose_metrics_vanish_is_stale_not_nodata(world):
    poller, prom, am, clock = world  # noqa: RUF059 - each test uses some
    poller.poll_once()
    prom.fresh = {"fengshan": T0}
    clock.now += 15
    poller.poll_once()
    assert poller.view()["matrix"]["siwei"]["network"]["status"] == "stale"


def test_prometheus_down_turns_old_green_into_stale_after_the_limit(world):
    poller, prom, am, clock = world  # noqa: RUF059 - each test uses some
    poller.poll_once()
    prom.fail = "http://prom unreachable: connection refused"
    clock.now += 60
    poller.poll_once()
    view = poller.view()
    assert view["matrix"]["siwei"]["network"]["status"] == "ok"  # 60 s old: still within stale_after
    assert view["sources"]["tiers"]["error"] == prom.fail
    clock.now += 61
    view = poller.view()
    assert view["sources"]["tiers"]["stale"] is True
    assert {row[t]["status"] for row in view["matrix"].values() for t in ("network", "backup", "identity")} == {"stale"}
    assert view["links"], "the last links stay, marked stale by their source"
    assert view["sources"]["links"]["stale"] is True


def test_alertmanager_down_makes_every_tier_stale_but_keeps_critical(world):
    poller, prom, am, clock = world
    am.add("UplinkDown", "critical", "siwei")
    poller.poll_once()
    am.fail = "http://am unreachable"
    clock.now += 200
    prom.fresh = {"siwei": clock.now, "fengshan": clock.now}
    poller.poll_once()
    view = poller.view()
    m = view["matrix"]
    assert view["watchdog"] is None  # stale alerts say nothing about the alert pipeline now
    assert m["siwei"]["network"]["status"] == "critical"
    assert m["siwei"]["network"]["stale"] is True
    assert m["fengshan"]["network"]["status"] == "stale"
    assert "Alertmanager" in m["fengshan"]["network"]["reason"]


def test_resolved_alert_turns_the_tier_back(world):
    poller, prom, am, clock = world
    am.add("LinkUtilisationHigh", "warning", "fengshan")
    poller.poll_once()
    assert poller.view()["matrix"]["fengshan"]["network"]["status"] == "warning"
    am.items.clear()
    clock.now += 15
    prom.fresh = {"siwei": clock.now, "fengshan": clock.now}
    poller.poll_once()
    assert poller.view()["matrix"]["fengshan"]["network"]["status"] == "ok"


def test_link_chart_is_the_utilisation_ratio_and_ends_at_the_current_value(world):
    poller, prom, am, clock = world  # noqa: RUF059 - each test uses some
    poller.poll_once()
    links = poller.view()["links"]
    chosen = {(x["site"], x["device"]) for x in links}
    assert chosen == {("siwei", "sw1"), ("siwei", "sw3"), ("fengshan", "sw9")}  # 2 busiest per site
    for link in links:
        assert link["series"][-1][1] == link["utilisation_ratio"]
    sw1_in = next(x for x in links if x["device"] == "sw1" and x["direction"] == "in")
    assert sw1_in["utilisation_ratio"] == 0.56 and sw1_in["bits_per_second"] == pytest.approx(5.6e9)
    ranges = [expr for kind, expr, _ in prom.calls if kind == "range"]
    assert len(ranges) == 1 and ranges[0].startswith(q.LINK_UTILISATION + "{")


def test_backups_and_audit(world):
    poller, prom, am, clock = world  # noqa: RUF059 - each test uses some
    poller.poll_once()
    view = poller.view()
    late = [b for b in view["backups"] if b["overdue"]]
    assert [(b["site"], b["step"]) for b in late] == [("fengshan", "copy")]
    assert late[0]["age_seconds"] == 30 * 3600
    assert view["audit"][0]["findings"] == {"critical": 1.0, "low": 4.0}
    assert view["audit"][0]["top_rules"] == [{"rule": "LDAP-PWD-001", "count": 1.0}]


def test_render_is_strict_json_even_with_nan(world):
    poller, prom, am, clock = world  # noqa: RUF059 - each test uses some
    prom.util[("siwei", "sw1", "Te1/1/1")] = float("nan")
    poller.poll_once()
    body = poller.render()
    assert b"NaN" not in body
    json.loads(body)


def test_regex_literal_matches_exactly_the_values():
    import re

    lit = q.regex_literal(["sw-1.a", 'we"ird\\x'])
    inner = lit[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    assert re.fullmatch(inner, "sw-1.a") and re.fullmatch(inner, 'we"ird\\x')
    assert not re.fullmatch(inner, "sw-1xa")
