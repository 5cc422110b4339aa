"""ElasticsearchStore's pure parts and its error handling, with a fake client at the boundary.

The behaviour against a real cluster is proven in tests/lab/test_seclog_es.py.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import elastic_transport
import pytest
from elasticsearch import ApiError, AuthenticationException

from citydc.config.models import ElasticsearchSink
from citydc.seclog.store import DeliveryError, Query
from citydc.seclog.store_es import ElasticsearchStore, ElasticsearchStoreError, RetryPolicy
from citydc.seclog.store_es_query import (
    WORDS_FIELD,
    bool_query,
    chain_sort,
    composite_sources,
    es_time,
    message_words,
    search_sort,
    text_terms,
)
from citydc.seclog.store_es_template import MAPPINGS, index_for, template_body

SECRET = "s3cret-value-never-shown"
ENDPOINT = "https://es.example:9200"


# -- template ---------------------------------------------------------------------------------


def _type(path: str) -> str:
    node = MAPPINGS
    for part in path.split("."):
        node = node["properties"][part]
    return node["type"]


@pytest.mark.parametrize(("field", "expected"), [
    ("@timestamp", "date"), ("message", "text"), ("event.id", "keyword"), ("event.action", "keyword"),
    ("user.name", "keyword"), ("user.target.name", "keyword"), ("labels.site", "keyword"), ("source.ip", "ip"),
    ("related.ip", "ip"), ("event.duration", "long"), ("event.severity", "long"), ("citydc.chain.seq", "long"),
    ("citydc.chain.writer", "keyword"), ("rule.id", "keyword"), (WORDS_FIELD, "keyword"),
])
def test_template_maps_ecs_types(field, expected):
    assert _type(field) == expected


def test_template_has_monthly_pattern_read_alias_and_hides_the_search_aid():
    body = template_body("audit-log")
    assert body["index_patterns"] == ["audit-log-*"]
    assert body["template"]["aliases"] == {"audit-log": {}}
    assert body["template"]["mappings"]["_source"] == {"excludes": ["citydc_index"]}


def test_index_for_picks_the_month_of_the_event():
    assert index_for("p", "2026-11-30T23:59:59.999Z") == "p-2026.11"
    assert index_for("p", "2027-01-01T00:00:00.000Z") == "p-2027.01"
    with pytest.raises(ValueError, match="@timestamp: expected an ISO 8601 time"):
        index_for("p", "yesterday")


# -- query translation ------------------------------------------------------------------------


def test_es_time_is_utc_with_milliseconds_and_refuses_naive():
    taipei = timezone(timedelta(hours=8))
    assert es_time(datetime(2026, 11, 26, 13, 0, 0, 123456, tzinfo=taipei)) == "2026-11-26T05:00:00.123Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        es_time(datetime(2026, 11, 26))


def test_bool_query_filters_range_and_text():
    q = Query(since=datetime(2026, 11, 1, tzinfo=UTC), until=datetime(2026, 12, 1, tzinfo=UTC),
              filters={"user.name": "alice", "event.outcome": "failure"}, text="Denied 四維機房")
    assert bool_query(q) == {"bool": {"filter": [
        {"range": {"@timestamp": {"gte": "2026-11-01T00:00:00.000Z", "lt": "2026-12-01T00:00:00.000Z"}}},
        {"term": {"event.outcome": "failure"}},
        {"term": {"user.name": "alice"}},
        {"term": {WORDS_FIELD: "denied"}},
        {"term": {WORDS_FIELD: "四維機房"}},
    ]}}
    assert bool_query(Query()) == {"match_all": {}}
    assert bool_query(Query(text="!!")) == {"match_none": {}}
    assert bool_query(Query(text="a _")) == {"match_none": {}}  # "_" has no token characters: FTS5 matches nothing


def test_sorts_and_composite_sources():
    assert search_sort(True) == [{"@timestamp": {"order": "desc"}}, {"event.id": {"order": "desc"}}]
    assert search_sort(False)[1] == {"event.id": {"order": "asc"}}
    assert [next(iter(c)) for c in chain_sort()] == ["citydc.chain.writer", "citydc.chain.seq", "event.id",
                                                     "event.hash"]
    assert composite_sources(["user.name", "labels.site"]) == [
        {"f0": {"terms": {"field": "user.name", "missing_bucket": True}}},
        {"f1": {"terms": {"field": "labels.site", "missing_bucket": True}}}]
    with pytest.raises(ValueError, match="--by"):
        composite_sources([])


MESSAGES = [
    "Login denied for alice from 10.10.1.2",
    "backup of 四維機房 ldap finished; 鳳山 copy started",
    "Élodie ÅNGSTRÖM naïve straße İstanbul ǅemal ½ ²",
    "vpn_gw3 rule-id=R17 user:bob@city.example (x86_64)",
    "tab\tand\nnewline, quotes \"q\" and 'a' — em dash … ellipsis",
]


def _fts5_terms(message: str) -> list[str]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(m)")  # unicode61, as the SQLite store uses
    db.execute("INSERT INTO t VALUES (?)", (message,))
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row')")
    return sorted(term for (term,) in db.execute("SELECT term FROM v"))


@pytest.mark.parametrize("message", MESSAGES)
def test_message_words_are_the_terms_sqlite_fts5_indexes(message):
    assert message_words(message) == _fts5_terms(message)


def test_text_terms_split_words_like_the_sqlite_store():
    assert text_terms("DENIED Alice alice") == ["denied", "alice"]
    assert text_terms("10.10.1.2") == ["10", "1", "2"]
    assert text_terms("vpn_gw3") == ["vpn", "gw3"]
    assert text_terms("Élodie") == ["elodie"]
    assert text_terms("...") is None


# -- put / errors with a fake client ------------------------------------------------------------


def _meta(status: int) -> elastic_transport.ApiResponseMeta:
    node = elastic_transport.NodeConfig("https", "es.example", 9200)
    return elastic_transport.ApiResponseMeta(status=status, http_version="1.1",
                                             headers=elastic_transport.HttpHeaders(), duration=0.0, node=node)


class FakeIndices:
    def __init__(self):
        self.templates: list[str] = []  # names, once per put
        self.stored: dict[str, dict] = {}

    def put_index_template(self, name, **body):
        self.templates.append(name)
        self.stored[name] = body

    def get_index_template(self, name):
        if name not in self.stored:
            return {"status": 404}
        return {"index_templates": [{"name": name, "index_template": self.stored[name]}]}


class FakeClient:
    """Answers bulk() from a script: each entry is a list of item statuses or an exception."""

    def __init__(self, script):
        self.script = list(script)
        self.bulks: list[list[dict]] = []
        self.indices = FakeIndices()

    def bulk(self, operations, refresh, filter_path):
        lines = [json.loads(x) for x in operations.decode().splitlines()]
        self.bulks.append(lines)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        assert len(step) == len(lines) // 2
        # As Elasticsearch: "errors" is true when any item failed (a 409 conflict included).
        items = [{"create": {"status": st, **({"error": {"type": "x", "reason": "y"}} if st >= 400 else {})}}
                 for st in step]
        return {"errors": any(st >= 400 for st in step), "items": items}

    def options(self, **kw):
        return self

    def close(self):
        pass


def _events(n: int) -> list[dict]:
    return [{"@timestamp": f"2026-11-26T05:00:00.{i:03d}Z", "event": {"id": f"{i:032x}"}, "message": f"m {i}"}
            for i in range(n)]


def _store(script, **kw) -> tuple[ElasticsearchStore, FakeClient, list[float]]:
    client, pauses = FakeClient(script), []
    store = ElasticsearchStore(client, endpoint=ENDPOINT, secrets=[SECRET], sleep=pauses.append,
                               retry=RetryPolicy(attempts=4, base_seconds=0.1, max_seconds=1, deadline_seconds=60),
                               **kw)
    return store, client, pauses


def test_put_counts_new_and_treats_conflicts_as_stored():
    store, client, _ = _store([[201, 409, 201]])
    assert store.put(_events(3)) == 2
    ops = client.bulks[0]
    assert ops[0] == {"create": {"_index": "citydc-seclog-2026.11", "_id": "0" * 32}}
    assert ops[1]["citydc_index"] == {"words": ["0", "m"]}  # the search aid, spliced in
    assert {k: v for k, v in ops[1].items() if k != "citydc_index"} == _events(3)[0]
    assert client.indices.templates == ["citydc-seclog-template"]


def test_the_template_is_installed_only_when_missing_or_changed():
    store, client, _ = _store([[201], [201]])
    store.put(_events(1))
    again = ElasticsearchStore(client, endpoint=ENDPOINT)
    again.put(_events(1))
    assert client.indices.templates == ["citydc-seclog-template"]  # the second store found it current
    client.indices.stored["citydc-seclog-template"]["_meta"]["citydc_template_version"] = "old"
    client.script.append([201])
    ElasticsearchStore(client, endpoint=ENDPOINT).put(_events(1))
    assert client.indices.templates == ["citydc-seclog-template"] * 2


def test_put_retries_only_the_throttled_items_with_backoff():
    store, client, pauses = _store([[201, 429, 503], [201, 201]])
    assert store.put(_events(3)) == 3
    assert [op["create"]["_id"] for op in client.bulks[1][::2]] == [f"{1:032x}", f"{2:032x}"]
    assert len(pauses) == 1 and 0.05 <= pauses[0] <= 0.1


def test_put_gives_up_with_a_delivery_error_after_its_attempts():
    store, client, pauses = _store([[429]] * 4)
    with pytest.raises(DeliveryError) as err:
        store.put(_events(1))
    assert err.value.reason == "overloaded" and err.value.retriable
    assert "gave up after 4 attempt(s)" in str(err.value)
    assert len(client.bulks) == 4 and pauses == sorted(pauses)  # growing pauses


def test_put_retries_connection_errors_then_succeeds():
    store, client, pauses = _store([elastic_transport.ConnectionError("refused"),
                                    elastic_transport.ConnectionError("refused"), [201]])
    assert store.put(_events(1)) == 1
    assert len(client.bulks) == 3 and len(pauses) == 2


def test_put_reports_the_cluster_down_as_unavailable():
    store, _, _ = _store([elastic_transport.ConnectionError("Connection refused")] * 4)
    with pytest.raises(ElasticsearchStoreError) as err:
        store.put(_events(2))
    assert err.value.reason == "unavailable" and "cannot connect to Elasticsearch at " + ENDPOINT in str(err.value)


def test_a_rejected_event_is_named_and_not_retried():
    store, client, _ = _store([[201, 400]])
    with pytest.raises(ElasticsearchStoreError) as err:
        store.put(_events(2))
    assert err.value.reason == "rejected" and not err.value.retriable
    assert f"{1:032x}" in str(err.value) and len(client.bulks) == 1


def test_wrong_credentials_are_not_retried_and_the_secret_is_masked():
    # A proxy that echoes the Authorization header in its error body must not leak it.
    body = {"error": {"type": "security_exception", "reason": f"bad header Basic {SECRET}"}}
    store, client, _ = _store([AuthenticationException("unauthorized", _meta(401), body)] * 2)
    with pytest.raises(ElasticsearchStoreError) as err:
        store.put(_events(1))
    assert err.value.reason == "auth" and len(client.bulks) == 1
    assert "HTTP 401" in str(err.value) and ENDPOINT in str(err.value)
    assert SECRET not in str(err.value) and SECRET not in repr(err.value)


def test_server_errors_are_retried_then_reported():
    store, _, _ = _store([ApiError("boom", _meta(503), {"error": {"type": "unavailable_shards_exception",
                                                                   "reason": "primary not active"}})] * 4)
    with pytest.raises(ElasticsearchStoreError) as err:
        store.put(_events(1))
    assert err.value.reason == "server_error" and "primary not active" in str(err.value)


def test_a_tls_failure_says_which_ca_to_check():
    store, _, _ = _store([elastic_transport.TlsError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate "
        "(_ssl.c:1006)")], hints={"tls": "check security_log.sink.ca_file (/etc/citydc/ca.crt)"})
    with pytest.raises(ElasticsearchStoreError) as err:
        store.put(_events(1))
    assert err.value.reason == "tls" and not err.value.retriable
    assert "certificate verify failed: unable to get local issuer certificate" in str(err.value)
    assert "/etc/citydc/ca.crt" in str(err.value)


def test_an_event_without_id_is_refused_naming_its_position():
    store, client, _ = _store([])
    with pytest.raises(ElasticsearchStoreError,
                       match=r"event 1 of the batch cannot be stored: event\.id: expected a non-empty string"):
        store.put([_events(1)[0], {"@timestamp": "2026-11-26T05:00:00.000Z", "event": {}}])
    assert client.bulks == []


# -- from_config ------------------------------------------------------------------------------


def test_from_config_resolves_the_ca_file_and_reveals_the_password(tmp_path, monkeypatch):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.crt").write_text("not parsed until a connection is made\n")
    monkeypatch.setenv("CITYDC_TEST_ES_PW", SECRET)
    captured = {}
    monkeypatch.setattr("citydc.seclog.store_es.Elasticsearch", lambda url, **kw: captured.update(url=url, **kw))
    sink = ElasticsearchSink(url=ENDPOINT, username="shipper", password="env:CITYDC_TEST_ES_PW",
                             ca_file=Path("certs/ca.crt"), index_prefix="audit")
    store = ElasticsearchStore.from_config(sink, tmp_path)
    assert captured["ca_certs"] == str(tmp_path / "certs" / "ca.crt")
    assert captured["basic_auth"] == ("shipper", SECRET)
    assert captured["max_retries"] == 0  # the store's own retry policy, with backoff, is the only one
    assert store.prefix == "audit" and store.endpoint == ENDPOINT


def test_from_config_reports_a_missing_ca_file(tmp_path):
    sink = ElasticsearchSink(url=ENDPOINT, ca_file=Path("nowhere/ca.crt"))
    with pytest.raises(ElasticsearchStoreError, match=r"security_log.sink.ca_file: .*nowhere/ca.crt"):
        ElasticsearchStore.from_config(sink, tmp_path)


def test_from_config_reports_an_unreadable_secret_by_reference_only(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYDC_TEST_ES_UNSET", raising=False)
    sink = ElasticsearchSink(url=ENDPOINT, api_key="env:CITYDC_TEST_ES_UNSET")
    with pytest.raises(ElasticsearchStoreError) as err:
        ElasticsearchStore.from_config(sink, tmp_path)
    assert err.value.reason == "credentials" and "CITYDC_TEST_ES_UNSET is not set" in str(err.value)


def test_a_reader_without_refresh_privilege_still_searches():
    class Indices(FakeIndices):
        def refresh(self, **kw):
            raise ApiError("forbidden", _meta(403), {"error": {"type": "security_exception", "reason": "no"}})

    class Client(FakeClient):
        def count(self, **kw):
            return {"count": 7}

    client = Client([])
    client.indices = Indices()
    store = ElasticsearchStore(client, endpoint=ENDPOINT)
    assert store.count() == 7
    assert store.refresh_before_read is False


def test_a_prepared_batch_sends_the_same_requests_and_retries_the_same_way():
    events = _events(5)
    plain, plain_client, _ = _store([[201, 201, 201], [201, 201]], bulk_events=3)
    prepared, prepared_client, _ = _store([[201, 429, 201], [201, 201], [201]], bulk_events=3)
    batch = prepared.prepare(events)
    assert [event_id for event_id, _ in batch] == [e["event"]["id"] for e in events] and batch.lines is batch
    assert plain.put(events) == 5
    assert prepared.put(batch) == 5  # the throttled item went again, alone
    assert prepared_client.bulks[:2] == plain_client.bulks
    assert prepared_client.bulks[2] == plain_client.bulks[0][2:4]
    other, other_client, _ = _store([], bulk_events=3)
    with pytest.raises(ValueError, match="store that prepared it"):  # its lines name the other store's indices
        other.put(batch)
    assert other_client.bulks == []


def test_prepare_refuses_a_bad_event_as_put_does():
    store, _, _ = _store([])
    bad = _events(3)
    del bad[1]["event"]["id"]
    with pytest.raises(ElasticsearchStoreError, match="event 1 of the batch"):
        store.prepare(bad)


def test_spooled_events_are_sent_as_their_spool_line():
    from citydc.seclog.spool import SpooledEvent

    event = SpooledEvent(_events(1)[0])
    event.raw = '{"message":"m 0","event":{"id":"%s"},"@timestamp":"2026-11-26T05:00:00.000Z"}' % ("0" * 32)
    line = ElasticsearchStore._line(b"", event)
    assert line.startswith(event.raw[:-1].encode()) and json.loads(line)["citydc_index"] == {"words": ["0", "m"]}
    event.line = event.raw.replace('"m 0"', '"m 1"').encode()  # the bytes read win over the text
    assert ElasticsearchStore._line(b"", event).startswith(event.line[:-1])


def test_search_words_are_spliced_as_valid_json_for_any_message():
    import random

    rng = random.Random(11)
    alphabet = 'aZ_ 9."\\\n\t\x1f\x7f-é四維\u3000、ΣK\u212a'
    for _ in range(500):
        message = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        event = {"message": message, "event": {"id": "x"}, "@timestamp": "2026-11-26T05:00:00.000Z"}
        doc = json.loads(ElasticsearchStore._line(b"", event))
        assert doc["citydc_index"] == {"words": message_words(message)} and doc["message"] == message, message


def test_message_words_fast_paths_fold_exactly_as_token_by_token():
    import random

    from citydc.seclog.store_es_query import _TOKEN, _fold

    rng = random.Random(7)
    alphabet = "aZ_ 9.'-éÉΣσςİıK\u212a四維鳳山\u3400\u4dbf\u9fff\ua000\uf900ßẞǅ\u0301"
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))) for _ in range(3000)]
    samples += ["ΟΔΟΣ'Β", "İstanbul", "登入 USER001 從 10.10.1.2", "Kelvin \u212a"]
    for message in samples:
        assert message_words(message) == sorted({_fold(t) for t in _TOKEN.findall(message)}), message
