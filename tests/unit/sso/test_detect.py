"""Detections on hand-made bind sequences (the lab test makes real ones)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

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


# Spraying against a plain model: at each failure from an address, the distinct accounts among that address's
# failures within the window (a set built every time); one detection per address and window.
attempts = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 6), st.integers(0, 2), st.booleans()),
                    max_size=120)


def spraying_model(seq, accounts_needed: int, window: int) -> list[tuple[str, tuple[str, ...]]]:
    out, failures, alerted, t = [], [], {}, 0
    for dt, account, source, ok in seq:
        t += dt
        if ok:
            continue
        ip = f"10.0.0.{source}"
        failures.append((t, f"u{account}", ip))
        names = {u for (when, u, src) in failures if src == ip and when >= t - window}
        last = alerted.get(ip)
        if len(names) >= accounts_needed and (last is None or t - last > window):
            alerted[ip] = t
            out.append((ip, tuple(sorted(names))))
    return out


def sprays(det: Detector, seq, start: int = 0) -> tuple[list[tuple[str, tuple[str, ...]]], int]:
    out, t = [], start
    for dt, account, source, ok in seq:
        t += dt
        for d in det.feed(b(t, f"uid=u{account}", ok, ip=f"10.0.0.{source}")):
            if d.action == "auth-spraying":
                out.append((d.source_ip, d.users))
    return out, t


@settings(max_examples=300, deadline=None)
@given(seq=attempts, split=st.integers(0, 120))
def test_spraying_counts_distinct_accounts_as_the_plain_model_does_across_a_state_save(seq, split):
    s = AuthDetection(spraying_accounts=3, window_seconds=60, bruteforce_failures=1000)
    expected = spraying_model(seq, 3, 60)
    det = Detector(s)
    first, t = sprays(det, seq[:split])
    restored = Detector(s)
    restored.load(json.loads(json.dumps(det.to_json())))  # as the state file keeps it
    rest, _ = sprays(restored, seq[split:], start=t)
    assert first + rest == expected


def test_a_flood_of_names_keeps_the_newest_and_prunes_once_per_batch(monkeypatch):
    """Beyond MAX_KEYS the tables are cut to KEEP_KEYS, newest kept: a flood of distinct names costs one
    prune per (MAX_KEYS - KEEP_KEYS) new names, not one per attempt."""
    import citydc.sso.detect as detect

    monkeypatch.setattr(detect, "MAX_KEYS", 100)
    monkeypatch.setattr(detect, "KEEP_KEYS", 90)
    det = Detector(AuthDetection(window_seconds=3600))
    prunes = []
    real = det._prune
    monkeypatch.setattr(det, "_prune", lambda now: prunes.append(now) or real(now))
    for i in range(1000):
        det.feed(b(i, f"uid=u{i}", False, ip=f"10.0.{i // 250}.{i % 250}"))
        assert len(det.fail_user) <= 101 and len(det.fail_src) <= 101
    assert 80 <= len(prunes) <= 100  # (1000 - 100) / 10 + the first
    assert list(det.fail_user)[-1] == "u999" and "u0" not in det.fail_user
    restored = Detector(AuthDetection(window_seconds=3600))
    restored.load(json.loads(json.dumps(det.to_json())))
    assert list(restored.fail_user) == list(det.fail_user)
