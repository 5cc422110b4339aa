"""A redelivered batch of more than 10,000 events is no re-emission (found against a real 9.2.4 node).

`log ship --batch-size 20000` killed after the store took a batch and before its ack (reproduced by shipping
a copy of the spool twice): the second run got a 409 for every event, looked the stored hashes up with one
search of at most 10,000 hits, and kept the 10,000 it did not see in `<prefix>.reemitted`; `log verify` then
said "inserted: ... duplicate sequence number", a tamper alarm for a store nobody touched.
"""

from __future__ import annotations

import json

from citydc.seclog.store_es import ElasticsearchStore

MAX_WINDOW = 10_000  # index.max_result_window: a node answers at most this many hits per search


class Cluster:
    """Bulk create (409 for an id stored in that index) and search as a node does them: ids queries, sorted,
    at most ``size`` (and never more than 10,000) hits, search_after."""

    def __init__(self):
        self.docs: dict[tuple[str, str], dict] = {}
        self.indices = self

    # indices.*
    def get_index_template(self, name):
        return {"status": 404}

    def put_index_template(self, name, **body):
        pass

    def create(self, **kw):
        pass

    def refresh(self, **kw):
        return {}

    def bulk(self, operations, refresh, filter_path):
        lines = operations.split(b"\n")
        items = []
        for action, doc in zip(lines[0::2], lines[1::2], strict=False):
            target = json.loads(action)["create"]
            key = (target["_index"], target["_id"])
            if key in self.docs:
                items.append({"create": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}})
            else:
                self.docs[key] = json.loads(doc)
                items.append({"create": {"status": 201}})
        return {"errors": any(i["create"]["status"] >= 400 for i in items), "items": items}

    def search(self, index, query, size, sort=None, search_after=None, source=None, **kw):
        assert size <= MAX_WINDOW, "a node refuses a window past index.max_result_window"
        ids = set(query["ids"]["values"])
        stored = [doc for (name, doc_id), doc in self.docs.items() if doc_id in ids and name != "seclog.reemitted"]
        hits = sorted(({"_source": {"event": {"hash": doc["event"]["hash"]}},
                        "sort": [doc["event"]["id"], doc["event"]["hash"]]} for doc in stored),
                      key=lambda hit: hit["sort"])
        if search_after is not None:
            hits = [hit for hit in hits if hit["sort"] > search_after]
        return {"hits": {"hits": hits[:size]}}

    def options(self, **kw):
        return self

    def close(self):
        pass


def _events(n: int) -> list[dict]:
    return [{"@timestamp": "2026-03-10T00:00:00.000Z", "event": {"id": f"{i:032x}", "hash": f"{i:064x}"},
             "message": f"m {i}", "citydc": {"chain": {"writer": "w", "seq": i + 1}}} for i in range(n)]


def test_a_redelivered_batch_larger_than_a_search_window_keeps_nothing_as_re_emitted():
    cluster = Cluster()
    store = ElasticsearchStore(cluster, endpoint="http://127.0.0.1:9200", index_prefix="seclog")  # type: ignore[arg-type]
    events = _events(12_000)
    assert store.put(events) == 12_000
    assert store.put(events) == 0  # the same lines again: the store took them, the ack was not written
    assert [key for key in cluster.docs if key[0] == "seclog.reemitted"] == []
