"""The pure logic of citydc.ops.alertmanager_silence (module_utils/alertmanager.py): matchers, the silence
body, and which silences count as "ours" for reuse and expiry. The module against a real Alertmanager runs
in tests/lab/test_play_lb.py."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "playbooks" / "collections"))

from ansible_collections.citydc.ops.plugins.module_utils.alertmanager import (
    filter_query,
    find_live,
    matchers_from,
    same_matchers,
    silence_body,
)

SERVER = {"site": "siwei", "proxy": "be_app", "server": "app-siwei-1"}


def test_matchers_are_exact_equality_sorted_by_name():
    assert matchers_from(SERVER) == [
        {"name": "proxy", "value": "be_app", "isRegex": False, "isEqual": True},
        {"name": "server", "value": "app-siwei-1", "isRegex": False, "isEqual": True},
        {"name": "site", "value": "siwei", "isRegex": False, "isEqual": True},
    ]


@pytest.mark.parametrize("labels", [{}, {"server": ""}, {"server": None}, {"bad-name": "x"}, {"0x": "y"}])
def test_matchers_refuse_what_would_not_scope_to_one_server(labels):
    with pytest.raises(ValueError):
        matchers_from(labels)


def silence(sid, labels, state="active", by="citydc lb-rolling", regex=False):
    return {"id": sid, "status": {"state": state}, "createdBy": by,
            "matchers": [{"name": k, "value": v, "isRegex": regex, "isEqual": True} for k, v in labels.items()]}


def test_find_live_takes_only_our_active_or_pending_silences_with_the_same_matchers():
    m = matchers_from(SERVER)
    silences = [
        silence("a", SERVER),
        silence("b", SERVER, state="pending"),
        silence("c", SERVER, state="expired"),
        silence("d", SERVER, by="someone else"),
        silence("e", {**SERVER, "server": "app-siwei-2"}),
        silence("f", {"site": "siwei", "proxy": "be_app"}),  # wider: the whole backend
        silence("g", {**SERVER, "alertname": "LbBackendDown"}),  # narrower
        silence("h", SERVER, regex=True),
    ]
    assert [s["id"] for s in find_live(silences, m, "citydc lb-rolling")] == ["a", "b"]
    assert same_matchers(silence("x", dict(reversed(list(SERVER.items())))), m)  # order does not matter


def test_silence_body_has_bounded_rfc3339_times():
    now = datetime.datetime(2026, 12, 5, 17, 30, 0, 123456, tzinfo=datetime.UTC)
    body = silence_body(matchers_from(SERVER), now, 1800, "citydc lb-rolling", "drained")
    assert body["startsAt"] == "2026-12-05T17:30:00.123Z" and body["endsAt"] == "2026-12-05T18:00:00.123Z"
    assert body["createdBy"] == "citydc lb-rolling" and body["comment"] == "drained"
    assert [m["name"] for m in body["matchers"]] == ["proxy", "server", "site"]
    for bad in (0, 7 * 86400 + 1):
        with pytest.raises(ValueError):
            silence_body(body["matchers"], now, bad, "x", "y")


def test_filter_query_names_every_matcher():
    q = filter_query(matchers_from({"server": 'a"b', "site": "siwei"}))
    assert q == "filter=server%3D%22a%5C%22b%22&filter=site%3D%22siwei%22"
