"""The saved auditor questions answer from the events citydc's components really record (their own event
builders), on both kinds of filter: one value, and any of several (privileged-changes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from citydc.play import events as play_events
from citydc.seclog.chain import GENESIS, link
from citydc.seclog.query import SAVED
from citydc.seclog.store import Query
from citydc.seclog.store_sqlite import SqliteStore
from citydc.sso import events as sso_events

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def recorded() -> list[dict]:
    """What a day of citydc records: two playbook runs, Keycloak admin changes and a login, chained."""
    docs: list[dict] = []
    for run, (user, playbook, site) in enumerate([("ops1", "lb-rolling.yml", "siwei"),
                                                  ("ops2", "vm-deploy.yml", "fengshan")]):
        facts = play_events.RunFacts(run_id=f"r{run}", user=user, playbook=playbook, inventory="production",
                                     site=site, limit=site, check=False, diff=False, revision="abc", host="mgmt1")
        docs.append(play_events.run_start(facts))
        docs.append(play_events.run_end(facts, status="successful", rc=0, meaning="ok", duration_seconds=3.0,
                                        hosts={"lb-siwei-1": {"ok": 2, "changed": 1}}, changed_tasks=1))
    when = NOW - timedelta(hours=1)
    for i, (rtype, op) in enumerate([("REALM_ROLE_MAPPING", "CREATE"), ("CLIENT_ROLE_MAPPING", "DELETE"),
                                     ("GROUP_MEMBERSHIP", "CREATE"), ("GROUP_MEMBERSHIP", "DELETE"),
                                     ("USER", "UPDATE")]):
        docs.append(sso_events.iam_event(resource_type=rtype, operation=op, actor="kc-admin", target=f"user{i}",
                                         source_ip="10.10.0.5", when=when, site="siwei", source="city-sso",
                                         realm="city", id_key=f"admin-{i}", error=None, details={}).doc)
    docs.append(sso_events.sso_user_event(kc_type="LOGIN_ERROR", success=False, user="mallory", client="portal",
                                          source_ip="10.10.9.9", site="siwei", source="city-sso", realm="city",
                                          id_key="login-1", error="invalid_user_credentials", details={},
                                          when=when).doc)
    chained, prev = [], GENESIS
    for seq, doc in enumerate(docs, 1):
        doc = link(doc, "mgmt1:spool", seq, prev)
        prev = doc["event"]["hash"]
        chained.append(doc)
    return chained


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "log.db")
    s.put(recorded())
    yield s
    s.close()


def test_playbook_runs_name_the_playbook(store):
    q = SAVED["playbook-runs"]
    rows = dict(store.stats(q.make(NOW), q.by))
    assert rows == {("ops1", "lb-rolling.yml", "siwei"): 2, ("ops2", "vm-deploy.yml", "fengshan"): 2}


def test_privileged_changes_are_the_role_and_group_changes(store):
    found = list(store.search(SAVED["privileged-changes"].make(NOW)))
    assert sorted(e["event"]["action"] for e in found) == ["iam-group-join", "iam-group-leave", "iam-role-grant",
                                                          "iam-role-revoke"]
    assert {e["user"]["target"]["name"] for e in found} == {"user0", "user1", "user2", "user3"}
    assert all(e["user"]["name"] == "kc-admin" for e in found)


def test_failed_logins_count_per_user(store):
    q = SAVED["failed-logins"]
    assert dict(store.stats(q.make(NOW), q.by)) == {("mallory",): 1}


def test_any_of_filter_on_a_column_and_inside_the_document(store):
    by_action = Query(filters={"event.action": ("iam-role-grant", "sso-login")})
    assert sorted(e["event"]["action"] for e in store.search(by_action)) == ["iam-role-grant", "sso-login"]
    by_user = Query(filters={"user.target.name": ("user0", "user4", "nobody")})  # not a column: json_each
    assert sorted(e["user"]["target"]["name"] for e in store.search(by_user)) == ["user0", "user4"]
    assert list(store.search(Query(filters={"event.action": ()}))) == []  # any of none: nothing
