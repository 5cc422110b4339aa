"""The Elasticsearch security-log store against the lab's real Elasticsearch and its TLS front.

Each test writes under its own index prefix and deletes it afterwards, so tests never see
each other's events. A lab service that cannot start fails the test (lab_up raises).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from elasticsearch import ApiError, Elasticsearch

from citydc.config.models import ElasticsearchSink
from citydc.lab import es_tls, ports, processes, registry
from citydc.lab.elasticsearch import ES_VERSION
from citydc.lab.elasticsearch import Elasticsearch as ElasticsearchService
from citydc.seclog import emit
from citydc.seclog.chain import GENESIS, ChainHead, link, verify
from citydc.seclog.event import make_event
from citydc.seclog.shipper import Shipper
from citydc.seclog.spool import Spool
from citydc.seclog.store import DeliveryError, Query
from citydc.seclog.store_es import ElasticsearchStore, ElasticsearchStoreError, RetryPolicy
from citydc.seclog.store_sqlite import SqliteStore

pytestmark = pytest.mark.lab

ES_URL = f"http://{ports.HOST}:{ports.ELASTICSEARCH}"
T0 = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)
USERS = ("alice", "bob", "carol")


def chained_events(n: int, *, writer: str = "lab-host:spool", start: datetime = T0, tag: str = "") -> list[dict]:
    """Return n valid, hash-chained events spread over users, outcomes, sites and two months."""
    out, prev = [], GENESIS
    for i in range(n):
        doc = make_event(
            action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
            type=["start"], outcome="failure" if i % 4 == 0 else "success",
            message=(f"login {'denied' if i % 4 == 0 else 'granted'} for {USERS[i % 3]} "
                     f"from 10.10.{i % 4}.{i % 250 + 1} at {'四維機房' if i % 2 else '鳳山'} via vpn_gw{i % 5}"
                     f"{' (Élodie on call)' if i % 7 == 0 else ''}"),
            site="siwei" if i % 2 else "fengshan", id_key=f"{tag}{writer}#{i}", user=USERS[i % 3],
            source_ip=f"10.10.{i % 4}.{i % 250 + 1}", host=f"sso-{i % 2}",
            # Several events share a millisecond so the event.id tiebreaker matters; some land in December.
            timestamp=start + timedelta(milliseconds=(i // 3) * 7) + (timedelta(days=6) if i % 10 == 9 else
                                                                       timedelta()),
            duration_ns=i * 1000, details={"attempt": i})
        doc = link(doc, writer, i + 1, prev)
        prev = doc["event"]["hash"]
        out.append(doc)
    return out


def own(events) -> list[dict]:
    """Return the events a test emitted: without the spool-created event that opens a new spool's chain."""
    return [e for e in events if e["event"]["action"] != "spool-created"]


def ids(events) -> list[str]:
    return [e["event"]["id"] for e in events]


def expected_order(events: list[dict], newest_first: bool) -> list[str]:
    ordered = sorted(events, key=lambda e: (e["@timestamp"], e["event"]["id"]), reverse=newest_first)
    return ids(ordered)


@pytest.fixture
def es(lab_up) -> Elasticsearch:
    lab_up("elasticsearch")
    client = Elasticsearch(ES_URL, max_retries=0, request_timeout=30)
    yield client
    client.close()


@pytest.fixture
def prefix(es) -> str:
    name = f"test-seclog-{uuid.uuid4().hex[:8]}"
    yield name
    es.indices.delete(index=f"{name}-*", ignore_unavailable=True, allow_no_indices=True)
    es.options(ignore_status=404).indices.delete(index=f"{name}.reemitted")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{name}-template")


@pytest.fixture
def store(es, prefix) -> ElasticsearchStore:
    s = ElasticsearchStore(Elasticsearch(ES_URL, max_retries=0, request_timeout=30), endpoint=ES_URL,
                           index_prefix=prefix)
    yield s
    s.close()


def test_official_client_answers_with_version_9(store):
    health = store.health()
    assert health["status"] in ("green", "yellow")
    assert health["versions"] == [ES_VERSION]
    assert all(v.startswith("9.") for v in health["versions"])


def test_root_endpoint_is_absent_in_the_lab_distribution(es):
    # The integ-test distribution lacks the rest-root module. If a future one has it, this fails
    # and health() may go back to info().
    with pytest.raises(ApiError) as err:
        es.info()
    assert err.value.status_code == 405


def test_put_search_stats_chain_round_trip(store, es, prefix):
    events = chained_events(60)
    assert store.put(events[:25]) == 25
    assert store.put(events[25:]) == 35
    assert store.count() == 60

    # Monthly indices behind the read alias, with the ECS mapping from the template.
    aliases = es.indices.get_alias(name=prefix)
    assert sorted(aliases) == [f"{prefix}-2026.11", f"{prefix}-2026.12"]
    props = es.indices.get_mapping(index=f"{prefix}-2026.11")[f"{prefix}-2026.11"]["mappings"]["properties"]
    assert props["@timestamp"]["type"] == "date"
    assert props["source"]["properties"]["ip"]["type"] == "ip"
    assert props["message"]["type"] == "text"
    assert props["event"]["properties"]["id"]["type"] == "keyword"
    assert props["event"]["properties"]["duration"]["type"] == "long"
    assert props["citydc"]["properties"]["chain"]["properties"]["seq"]["type"] == "long"
    assert props["labels"]["properties"]["site"]["type"] == "keyword"

    # Documents come back exactly as given, in (@timestamp, event.id) order both ways.
    got = list(store.search(Query(newest_first=False)))
    assert ids(got) == expected_order(events, newest_first=False)
    assert {e["event"]["id"]: e for e in got} == {e["event"]["id"]: e for e in events}
    assert ids(store.search(Query())) == expected_order(events, newest_first=True)
    assert ids(store.search(Query(limit=7))) == expected_order(events, newest_first=True)[:7]

    # Filters, free text and the time range.
    failures = [e for e in events if e["event"]["outcome"] == "failure" and e["user"]["name"] == "alice"]
    assert failures  # the data set must exercise the filter
    q = Query(filters={"event.outcome": "failure", "user.name": "alice"}, newest_first=False)
    assert ids(store.search(q)) == expected_order(failures, newest_first=False)
    by_ip = [e for e in events if e["source"]["ip"] == "10.10.1.2"]
    assert ids(store.search(Query(filters={"source.ip": "10.10.1.2"}, newest_first=False))) == \
        expected_order(by_ip, False)
    denied_carol = [e for e in events if "denied" in e["message"] and "carol" in e["message"]]
    assert denied_carol
    assert ids(store.search(Query(text="denied carol", newest_first=False))) == expected_order(denied_carol, False)
    since, until = T0 + timedelta(milliseconds=21), T0 + timedelta(milliseconds=70)
    window = [e for e in events if since.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" <= e["@timestamp"]
              < until.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"]
    assert 0 < len(window) < len(events)
    assert ids(store.search(Query(since=since, until=until, newest_first=False))) == expected_order(window, False)

    # Stats: counts per value combination, largest first.
    stats = store.stats(Query(), ["user.name", "event.outcome"])
    expected: dict[tuple[str, ...], int] = {}
    for e in events:
        key = (e["user"]["name"], e["event"]["outcome"])
        expected[key] = expected.get(key, 0) + 1
    assert dict(stats) == expected
    assert [c for _, c in stats] == sorted(expected.values(), reverse=True)
    assert dict(store.stats(Query(filters={"labels.site": "siwei"}), ["labels.site"])) == {("siwei",): 30}

    # The chain comes back in (writer, seq) order and verifies.
    chain = list(store.chain())
    assert [e["citydc"]["chain"]["seq"] for e in chain] == list(range(1, 61))
    assert verify(chain) == []


PARITY_QUERIES = [
    Query(),
    Query(newest_first=False),
    Query(limit=11),
    Query(filters={"user.name": "bob"}),
    Query(filters={"event.outcome": "failure", "labels.site": "fengshan"}, newest_first=False),
    Query(filters={"source.ip": "10.10.2.3"}),
    Query(filters={"host.name": "sso-1", "event.kind": "event", "event.dataset": "citydc.sso_audit"}),
    Query(filters={"event.action": "no-such-action"}),
    Query(filters={"user.name": ("bob", "carol")}),  # any of several values (the saved questions)
    Query(filters={"labels.site": ("fengshan", "nowhere"), "event.outcome": ("failure",)}, newest_first=False),
    Query(filters={"event.type": ("start", "end"), "host.name": ("sso-1",)}),  # a list field: any element
    Query(filters={"event.action": ()}),
    Query(since=T0 + timedelta(milliseconds=14), until=T0 + timedelta(days=1)),
    Query(since=T0 + timedelta(days=2)),
    Query(until=T0 + timedelta(milliseconds=28, microseconds=600)),
    Query(text="denied"),
    Query(text="DENIED Alice", newest_first=False),
    Query(text="10.10.1.2"),
    Query(text="四維機房"),
    Query(text="四維"),  # one FTS5 token is the whole run of CJK characters: no match on either store
    Query(text="elodie"),
    Query(text="Élodie call"),
    Query(text="vpn_gw3"),
    Query(text="_"),
    Query(text="!!"),
    Query(text="granted", filters={"user.name": "carol"}, since=T0 + timedelta(milliseconds=30), limit=5),
]


def test_same_results_as_the_sqlite_store(store, tmp_path):
    events = chained_events(120, tag="parity")
    sqlite = SqliteStore(tmp_path / "seclog.db")
    try:
        for i in range(0, 120, 40):
            assert store.put(events[i:i + 40]) == sqlite.put(events[i:i + 40]) == 40
        for query in PARITY_QUERIES:
            assert list(store.search(query)) == list(sqlite.search(query)), query
        # The tricky texts do select something (and the same thing) on both stores.
        for text in ("10.10.1.2", "四維機房", "elodie", "vpn_gw3", "DENIED Alice"):
            assert list(sqlite.search(Query(text=text))), text
        for by in (["user.name"], ["labels.site", "event.outcome"], ["host.name", "user.target.name"]):
            for query in (Query(), Query(filters={"event.outcome": "failure"}), Query(text="granted")):
                assert store.stats(query, by) == sqlite.stats(query, by), (by, query)
        assert list(store.chain()) == list(sqlite.chain())
        since = T0 + timedelta(days=3)  # only the December events: each writer's walk starts at its first
        assert list(store.chain(since)) == list(sqlite.chain(since))
        assert verify(store.chain(since), partial=True) == verify(sqlite.chain(since), partial=True) == []
        assert store.count() == sqlite.count() == 120
    finally:
        sqlite.close()


def test_search_streams_past_one_page(store):
    store.page_size = 7  # force several search_after pages on a small data set
    events = chained_events(40)
    store.put(events)
    assert ids(store.search(Query(newest_first=False))) == expected_order(events, False)
    assert ids(store.search(Query(limit=23))) == expected_order(events, True)[:23]
    assert len(list(store.chain())) == 40


def test_duplicate_ids_are_not_stored_twice(store):
    events = chained_events(30)
    assert store.put(events[:20]) == 20
    assert store.put(events[:20]) == 0  # a retried batch: every create is a 409, none an error
    assert store.put(events[10:30]) == 10  # half old, half new
    assert store.count() == 30
    assert sorted(ids(store.search(Query()))) == sorted(ids(events))


def unchained(events: list[dict]) -> list[dict]:
    """Return the events without their chain fields, as a component hands them to emit()."""
    out = []
    for e in events:
        doc = {**e, "event": {k: v for k, v in e["event"].items() if k != "hash"}}
        rest = {k: v for k, v in e["citydc"].items() if k != "chain"}
        if rest:
            doc["citydc"] = rest
        else:
            del doc["citydc"]
        out.append(doc)
    return out


@pytest.fixture(scope="module")
def private_es(lab_ctx) -> Iterator[ElasticsearchService]:
    """An Elasticsearch of this module's own (own directory and ports): the outage test stops it, and the
    session's shared one keeps serving the other tests."""
    svc = ElasticsearchService("elasticsearch-outage", ports.ELASTICSEARCH_PRIVATE,
                               ports.ELASTICSEARCH_PRIVATE_TRANSPORT)
    svc.up(lab_ctx)
    yield svc
    svc.down(lab_ctx)


def test_elasticsearch_stopped_during_a_stream_loses_and_duplicates_nothing(lab_ctx, private_es, prefix, tmp_path):
    es_service = private_es
    store = ElasticsearchStore(Elasticsearch(es_service.url(), max_retries=0, request_timeout=30),
                               endpoint=es_service.url(), index_prefix=prefix)
    shared_es = registry.SERVICES["elasticsearch"].records(lab_ctx)
    store.retry = RetryPolicy(attempts=3, base_seconds=0.1, max_seconds=0.5, deadline_seconds=3)
    spool = Spool(tmp_path / "spool", writer="lab-host:outage")
    shipper = Shipper(spool, store, batch_size=50, backoff_base=0.2, backoff_max=1.0)
    events = unchained(chained_events(900, tag="outage"))
    produced, stop = threading.Event(), threading.Event()
    deadline = time.monotonic() + 180

    def producer() -> None:
        for i in range(0, len(events), 15):  # a steady stream: 15 events every 150 ms, 9 s in all
            emit(events[i:i + 15], spool_dir=spool.dir, writer=spool.writer)
            time.sleep(0.15)
        produced.set()

    def ship() -> None:
        with spool.shipping():
            shipper.follow(stop, poll=0.1)

    threads = [threading.Thread(target=producer, daemon=True), threading.Thread(target=ship, daemon=True)]
    for t in threads:
        t.start()
    stored_before = 0

    def count_when_ready() -> int:
        # A fresh private cluster answers 503 (no shard active yet) for a moment after the index appears.
        try:
            return store.count()
        except ElasticsearchStoreError:
            return 0

    try:
        while count_when_ready() < 150 and time.monotonic() < deadline:
            time.sleep(0.1)
        stored_before = store.count()
        assert stored_before >= 150
        es_service.down(lab_ctx)  # Elasticsearch stops while events keep coming
        time.sleep(3)
        assert not produced.is_set()  # the outage really was in the middle of the stream
        assert shipper.last_error is not None and shipper.last_error.reason in ("unavailable", "timeout")
    finally:
        try:
            es_service.up(lab_ctx)
            # The data directory survived the restart: what was stored before is still there.
            assert store.count() >= stored_before
            produced.wait(timeout=60)
            while spool.backlog()[0] and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            # Whatever failed above, the shipper thread stops: a thread left following would keep
            # pytest from exiting (and be counted by other tests as a thread of the process).
            stop.set()
            for t in threads:
                t.join(timeout=60)
    assert produced.is_set() and spool.backlog()[0] == 0
    stored = own(store.search(Query(newest_first=False)))
    assert len(stored) == len(events) and store.count() == len(events) + 1  # and the spool-created event
    assert sorted(ids(stored)) == sorted(ids(events))
    assert verify(store.chain(), delivered=spool.delivered_heads(), emitted=spool.emitted_heads) == []
    store.close()
    assert shared_es and all(processes.alive(r) for r in shared_es)  # the session's Elasticsearch never stopped


@pytest.mark.parametrize("tamper", ["edit", "delete", "insert"])
def test_verify_finds_a_document_tampered_with_in_elasticsearch(store, es, prefix, tamper):
    writer = "lab-host:spool"
    events = chained_events(20, writer=writer, tag=tamper)
    store.put(events)
    last = events[-1]
    heads = {writer: ChainHead(writer, 20, last["event"]["hash"])}  # the chain-head file, kept outside the store
    assert verify(store.chain(), emitted=lambda: heads) == []
    victim = events[7]

    def index_of(doc: dict) -> str:
        return f"{prefix}-{doc['@timestamp'][:4]}.{doc['@timestamp'][5:7]}"

    if tamper == "edit":
        edited = {**victim, "message": "nothing to see here"}
        es.index(index=index_of(victim), id=victim["event"]["id"], document=edited)
        expected = ("changed", 8)
    elif tamper == "delete":
        es.delete(index=index_of(victim), id=victim["event"]["id"])
        expected = ("removed", 8)
    else:
        # A forger who knows the hashing appends a perfectly chained event; the head file finds it.
        forged = link(chained_events(1, tag="forged")[0], writer, 21, last["event"]["hash"])
        es.index(index=index_of(forged), id=forged["event"]["id"], document=forged)
        expected = ("inserted", 21)
    findings = verify(store.chain(), emitted=lambda: heads)
    assert [(f.problem, f.seq) for f in findings] == [expected]


def test_a_damaged_spool_ships_its_intact_lines_unparsed_and_verify_names_the_damage(store, tmp_path):
    # The shipper recognises intact lines by their chain hash (spool_scan.py) and parses the rest in full.
    spool = Spool(tmp_path / "spool", writer="lab-host:damaged")
    events = unchained(chained_events(40, tag="damaged"))
    for i in range(0, 40, 10):
        emit(events[i:i + 10], spool_dir=spool.dir, writer=spool.writer)
    seg = spool.dir / spool.segments()[0]
    lines = seg.read_bytes().split(b"\n")  # line 1 (lines[0]) is the new spool's spool-created event
    lines[6] = lines[6][:-30]  # truncated: reported, skipped
    lines[18] = lines[18].replace(b'"message":"login', b'"message":"LOGIN')  # edited, still JSON: shipped
    seg.write_bytes(b"\n".join(lines))
    result = Shipper(spool, store, batch_size=15).ship()
    assert result.ok and result.delivered == result.stored == 40
    assert [c.line for c in result.corrupt] == [7]
    stored = {e["event"]["id"]: e for e in store.search(Query(newest_first=False))}
    assert len(stored) == 40 and stored[events[17]["event"]["id"]]["message"].startswith("LOGIN")
    # Every intact event reads back byte for byte as its spool line (the search words are not in _source).
    line_of = {json.loads(x)["event"]["id"]: x for i, x in enumerate(lines[:41]) if i != 6}
    assert all(orjson.dumps(doc) == line_of[i] for i, doc in stored.items())
    findings = verify(store.chain(), delivered=spool.delivered_heads(), emitted=spool.emitted_heads)
    assert [(f.problem, f.seq) for f in findings] == [("removed", 7)]  # the first break of the one writer


# -- through the TLS + basic-auth front -------------------------------------------------------


@pytest.fixture
def tls(lab_up, lab_ctx, es, prefix, lab_env):
    lab_up("elasticsearch-tls")
    return es_tls.ca_file(lab_ctx)


def _sink(prefix: str, ca: Path, password: str) -> ElasticsearchSink:
    return ElasticsearchSink(url=es_tls.url(), username=es_tls.USER, password=password, ca_file=ca,
                             index_prefix=prefix)


@pytest.mark.parametrize("ref", ["env", "file"])
def test_tls_front_with_ca_file_and_password_reference(tls, prefix, tmp_path, ref):
    if ref == "env":
        password = "env:CITYDC_ES_PASSWORD"
    else:
        secret = tmp_path / "es-password"
        secret.write_text(ports.LAB_ENV["CITYDC_ES_PASSWORD"] + "\n")
        secret.chmod(0o600)
        password = f"file:{secret}"
    # ca_file relative to the config file's directory, as in citydc.yaml.
    store = ElasticsearchStore.from_config(_sink(prefix, Path(tls.name), password), tls.parent)
    try:
        spool = Spool(tmp_path / "spool", writer=f"lab-host:tls-{ref}")
        events = unchained(chained_events(15, tag=ref))
        assert emit(events, spool_dir=spool.dir, writer=spool.writer) == 15
        result = Shipper(spool, store, batch_size=6).ship()  # the shipper, through TLS and basic auth
        # And the spool-created event that opens the new spool's chain (site of the first event, fengshan).
        assert result.ok and (result.delivered, result.stored, result.batches) == (16, 16, 3)
        stored = list(store.search(Query(newest_first=False)))
        assert ids(own(stored)) == expected_order(events, False)
        assert store.put(stored) == 0
        assert store.stats(Query(), ["labels.site"]) == [(("fengshan",), 9), (("siwei",), 7)]
        assert store.health()["versions"] == [ES_VERSION]
        assert verify(store.chain(), delivered=spool.delivered_heads(), emitted=spool.emitted_heads) == []
    finally:
        store.close()


def test_tls_front_wrong_password_fails_clearly_without_the_password(tls, prefix, monkeypatch, caplog):
    wrong = "not-the-lab-password-4711"
    monkeypatch.setenv("CITYDC_ES_WRONG", wrong)
    caplog.set_level(logging.DEBUG)
    store = ElasticsearchStore.from_config(_sink(prefix, tls, "env:CITYDC_ES_WRONG"), Path("/"))
    try:
        with pytest.raises(DeliveryError) as err:
            store.put(chained_events(3))
    finally:
        store.close()
    message = str(err.value)
    assert err.value.reason == "auth"
    assert "401" in message and es_tls.url() in message and "env:CITYDC_ES_WRONG" in message
    assert wrong not in message and wrong not in repr(err.value) and wrong not in caplog.text
    assert ports.LAB_ENV["CITYDC_ES_PASSWORD"] not in message


def test_tls_front_wrong_ca_fails_clearly(tls, prefix, tmp_path, caplog):
    other_ca = es_tls.make_ca(tmp_path, "other", subject="/CN=not the lab CA")
    caplog.set_level(logging.DEBUG)
    store = ElasticsearchStore.from_config(_sink(prefix, other_ca, "env:CITYDC_ES_PASSWORD"), Path("/"))
    try:
        with pytest.raises(DeliveryError) as err:
            list(store.search(Query()))
    finally:
        store.close()
    message = str(err.value)
    assert err.value.reason == "tls"
    assert "certificate verify failed" in message and es_tls.url() in message and str(other_ca) in message
    assert ports.LAB_ENV["CITYDC_ES_PASSWORD"] not in message + caplog.text


def test_tls_front_without_credentials_is_refused(tls, prefix):
    sink = ElasticsearchSink(url=es_tls.url(), ca_file=tls, index_prefix=prefix)
    store = ElasticsearchStore.from_config(sink, Path("/"))
    try:
        with pytest.raises(DeliveryError) as err:
            store.count()
    finally:
        store.close()
    assert err.value.reason == "auth"
    assert "wants credentials" in str(err.value)


# -- issue 18: no false alarms, through the real command against the real cluster --------------------------

CITYDC = str(Path(sys.executable).with_name("citydc"))
DAY = 86400.0


def _es_config(tmp_path: Path, prefix: str) -> Path:
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text("sites:\n  - {id: siwei, name: Siwei}\nsecurity_log:\n  spool_dir: var/spool\n"
                   f"  sink: {{kind: elasticsearch, url: '{ES_URL}', index_prefix: {prefix}}}\n", encoding="utf-8")
    return cfg


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CITYDC, "-c", str(cfg), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "300"})


def _ship(cfg: Path) -> None:
    proc = _cli(cfg, "log", "ship")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _verify(cfg: Path) -> tuple[int, dict, str]:
    as_json, text = _cli(cfg, "log", "verify", "--json"), _cli(cfg, "log", "verify")
    assert as_json.returncode == text.returncode, as_json.stderr + text.stderr
    return text.returncode, json.loads(as_json.stdout), text.stdout + text.stderr


def _login(key: str, minute: int) -> dict:
    return make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                      type=["start"], outcome="success", message=f"login {key}", site="siwei", id_key=key,
                      user="alice", timestamp=T0.replace(minute=minute))


def _delete(es: Elasticsearch, index: str, event_id: str) -> None:
    es.indices.refresh(index=index)
    [hit] = es.search(index=index, query={"ids": {"values": [event_id]}})["hits"]["hits"]
    es.delete(index=hit["_index"], id=hit["_id"], refresh=True)  # the lab has no _delete_by_query


def test_cli_an_event_re_emitted_after_the_id_memory_expired_is_no_false_alarm(es, prefix, tmp_path):
    cfg = _es_config(tmp_path, prefix)
    spool_dir = tmp_path / "var" / "spool"
    now = time.time()
    a, b = _login("A", 1), _login("B", 2)
    emit(a, spool_dir=spool_dir, clock=lambda: now)
    _ship(cfg)
    assert _verify(cfg)[0] == 0
    emit(b, spool_dir=spool_dir, clock=lambda: now + 9 * DAY)
    assert emit(a, spool_dir=spool_dir, clock=lambda: now + 9 * DAY) == 1  # the id memory expired: seq 4
    _ship(cfg)
    code, report, text = _verify(cfg)
    assert code == 0 and report["findings"] == [] and report["events"] == 4, text
    assert [(n["kind"], n["seq"], n["event_id"]) for n in report["notices"]] == [("re-emitted", 4, a["event"]["id"])]
    search = _cli(cfg, "log", "search", "--json", "--user", "alice")
    assert search.returncode == 0, search.stderr
    found = json.loads(search.stdout)
    assert sorted(e["message"] for e in found) == ["login A", "login B"]  # A once
    _delete(es, prefix, b["event"]["id"])  # a real deletion in the same store
    code, report, text = _verify(cfg)
    assert code == 1 and [(f["problem"], f["seq"]) for f in report["findings"]] == [("removed", 3)], text


def test_cli_a_spool_re_created_from_scratch_is_a_new_incarnation_not_an_insertion(es, prefix, tmp_path):
    cfg = _es_config(tmp_path, prefix)
    spool_dir = tmp_path / "var" / "spool"
    now = time.time()
    first = [_login(f"old-{i}", i) for i in range(3)]
    emit(first, spool_dir=spool_dir, clock=lambda: now)
    old = Spool(spool_dir).incarnation()
    _ship(cfg)
    shutil.rmtree(spool_dir)  # the disk was replaced: same writer name
    emit([_login(f"new-{i}", 10 + i) for i in range(2)], spool_dir=spool_dir, clock=lambda: now + DAY)
    new = Spool(spool_dir).incarnation()
    _ship(cfg)
    code, report, text = _verify(cfg)
    assert code == 0 and report["findings"] == [] and report["events"] == 7, text
    [notice] = report["notices"]
    assert (notice["kind"], notice["incarnation"], notice["seq"]) == ("new-incarnation", new["id"], 1)
    assert f"the previous chain (incarnation {old['id']}) ended at seq 4" in notice["message"]
    assert f"new-incarnation: writer {Spool(spool_dir).writer} incarnation {new['id']}" in text
    _delete(es, prefix, first[1]["event"]["id"])
    code, report, text = _verify(cfg)
    assert code == 1, text
    assert [(f["problem"], f["incarnation"], f["seq"]) for f in report["findings"]] == [("removed", old["id"], 3)]


def test_cli_a_spool_from_before_incarnations_keeps_verifying_on_elasticsearch(es, prefix, tmp_path):
    # The committed spool written by the code before incarnations (tests/unit/seclog/data), shipped whole.
    sample = Path(__file__).parents[1] / "unit" / "seclog" / "data" / "spool-v1-before-incarnations"
    cfg = _es_config(tmp_path, prefix)
    spool_dir = tmp_path / "var" / "spool"
    shutil.copytree(sample / "spool", spool_dir)
    (spool_dir / "ack.json").unlink()  # its acks were for the SQLite store of the sample
    writer = json.loads((sample / "writer.json").read_text())["writer"]
    _ship(cfg)
    assert emit(_login("after-upgrade", 30), spool_dir=spool_dir, writer=writer) == 1
    _ship(cfg)
    code, report, text = _verify(cfg)
    assert code == 0 and report["notices"] == [] and report["events"] == 5, text
    es.indices.refresh(index=prefix)
    chains = [h["_source"]["citydc"]["chain"] for h in es.search(index=prefix, size=10)["hits"]["hits"]]
    assert sorted(c["seq"] for c in chains) == [1, 2, 3, 4, 5] and all("incarnation" not in c for c in chains)


def test_the_launcher_leaves_its_temporary_files_in_the_lab(es, lab_ctx):
    """Elasticsearch's launcher JVM writes a final-flags<N> directory into its java.io.tmpdir and leaves it
    behind: it belongs in the lab's directory, not one more in the machine's /tmp with every start."""
    tmp = lab_ctx.service_dir("elasticsearch") / "tmp"
    assert list(tmp.glob("final-flags*")), f"no final-flags directory in {tmp}: the launcher wrote it elsewhere"
