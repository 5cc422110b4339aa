"""Detections on hand-made bind sequences (the lab test makes real ones)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from citydc.config.models import AuthDetection
from citydc.sso.authlog import Bind
from citydc.sso.detect import Detector

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # Monday 10:00 in Taipei


def b(sec: float, dn: str, ok: bool, ip: str = "10.0.0.9") -> Bind:
    return Bind(T0 + timedelta(seconds=sec), 1, 0, dn, ip, 0 if ok else 49, "simple", True)


def run(det: Detector, binds) -> list[str]:
    return [f"{d.action}:{','.join(d.users)}" for x in binds for d in det.feed(x)]


def test_bruteforce_once_per_burst_and_window():
    det = Detector(AuthDetection(bruteforce_failures=5, window_seconds=600))
    got = run(det, [b(i, "uid=a", False) for i in range(8)])
    assert got == ["auth-bruteforce:uid=a"]
    assert run(det, [b(10 + i * 200, "uid=a", False) for i in range(4)]) == []  # spread out: never 5 in 600 s
    assert run(det, [b(2000 + i, "uid=a", False) for i in range(5)]) == ["auth-bruteforce:uid=a"]


def test_spraying_needs_distinct_accounts_from_one_source():
    det = Detector(AuthDetection(spraying_accounts=10))
    assert run(det, [b(i, f"uid=u{i}", False, ip=f"10.0.0.{i}") for i in range(20)]) == []
    got = run(det, [b(100 + i, f"uid=u{i}", False) for i in range(12)])
    assert [g.split(":")[0] for g in got] == ["auth-spraying"]


def test_success_after_failures_and_reset():
    det = Detector(AuthDetection(success_after_failures=3))
    assert run(det, [b(0, "uid=a", False), b(1, "uid=a", False), b(2, "uid=a", True)]) == []
    got = run(det, [b(10, "uid=a", False), b(11, "uid=a", False), b(12, "uid=a", False), b(13, "uid=a", True)])
    assert got == ["auth-success-after-failures:uid=a"]
    assert run(det, [b(14, "uid=a", True)]) == []


def test_offhours_privileged_in_taipei():
    det = Detector(AuthDetection(), privileged=["UID=Admin,dc=x"])
    night = (T0 + timedelta(hours=12) - T0).total_seconds()  # 22:00 Taipei
    saturday = (timedelta(days=5)).total_seconds()  # Saturday 10:00
    got = run(det, [b(0, "uid=admin,dc=x", True), b(night, "uid=admin,dc=x", True), b(night, "uid=user", True),
                    b(saturday, "uid=admin,dc=x", True)])
    assert got == ["auth-offhours-privileged:uid=admin,dc=x"] * 2


def test_state_round_trip_keeps_the_window():
    s = AuthDetection(bruteforce_failures=5)
    det = Detector(s)
    run(det, [b(i, "uid=a", False) for i in range(3)])
    det2 = Detector(s)
    det2.load(det.to_json())
    assert run(det2, [b(5, "uid=a", False), b(6, "uid=a", False)]) == ["auth-bruteforce:uid=a"]
