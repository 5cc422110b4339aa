"""`citydc log stats` on Elasticsearch gives the SQLite store's answer (found against a real 9.2.4 node).

The composite aggregation answers a date's key as epoch milliseconds and a number's as a number. The store
turned both into text and sorted that: `--by @timestamp` counted under 1772294400000 where SQLite counts
under 2026-02-28T16:00:00.000Z, and ties came in text order (10002 before 1002 before 2) where SQLite
orders numbers by value. `--by message` (a text field) failed as "security log store failed: HTTP 400".
The client here answers as the real node did (the buckets are copied from its answers).
"""

from __future__ import annotations

import pytest

from citydc.seclog.store import Query
from citydc.seclog.store_es import ElasticsearchStore


class Indices:
    def refresh(self, **kw):
        return {}


class Client:
    """Answers the composite aggregation with the given buckets (one page), and no object under any field."""

    def __init__(self, buckets):
        self.buckets, self.searches, self.indices = buckets, [], Indices()

    def search(self, **kw):
        self.searches.append(kw)
        if "aggregations" not in kw:  # _holds_objects: no event has fields under the counted one
            return {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}
        return {"aggregations": {"by": {"buckets": self.buckets}}}

    def options(self, **kw):
        return self

    def close(self):
        pass


def _stats(buckets, by):
    store = ElasticsearchStore(Client(buckets), endpoint="http://127.0.0.1:9200")
    return store.stats(Query(), by)


def test_a_date_is_counted_under_its_timestamp_text_as_in_sqlite():
    buckets = [{"key": {"f0": 1772294400000, "f1": "alice"}, "doc_count": 13},
               {"key": {"f0": 1772294400123, "f1": None}, "doc_count": 1}]
    assert _stats(buckets, ["@timestamp", "user.name"]) == [
        (("2026-02-28T16:00:00.000Z", "alice"), 13), (("2026-02-28T16:00:00.123Z", ""), 1)]


def test_ties_order_numbers_by_value_before_text_as_sqlite_does():
    # As the node answered --by citydc.chain.seq: composite order (by key), one event each.
    buckets = [{"key": {"f0": None}, "doc_count": 1}] + [{"key": {"f0": n}, "doc_count": 1}
                                                          for n in (2, 1002, 10002)]
    assert _stats(buckets, ["citydc.chain.seq"]) == [(("2",), 1), (("1002",), 1), (("10002",), 1), (("",), 1)]


def test_booleans_and_strings_keep_their_text():
    buckets = [{"key": {"f0": True, "f1": "b"}, "doc_count": 2}, {"key": {"f0": False, "f1": "a"}, "doc_count": 2}]
    assert _stats(buckets, ["citydc.x.flag", "user.name"]) == [(("false", "a"), 2), (("true", "b"), 2)]


@pytest.mark.parametrize("field", ["message", "error.message"])
def test_a_text_field_is_refused_as_a_usage_error_naming_it(field):
    client = Client([])
    store = ElasticsearchStore(client, endpoint="http://127.0.0.1:9200")
    with pytest.raises(ValueError, match=f"{field} is free text"):
        store.stats(Query(), [field])
    assert client.searches == []  # refused before asking the cluster
