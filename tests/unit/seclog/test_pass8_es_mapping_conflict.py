"""A component field that changes shape never blocks the security log on Elasticsearch.

Found against a real 9.2.4 node: a backup event with ``citydc.backup.job: "a"`` fixed the monthly index's
dynamic mapping to keyword; the next with ``citydc.backup.job: {"name": "b"}`` was refused (HTTP 400,
document_parsing_exception, which ``index.mapping.ignore_malformed`` does not cover). ``log ship`` gave up
with "rejected" at every run, and every event spooled after it (every backup, audit, playbook run) waited
behind it for good. SQLite stored it. Now such a line goes to ``<index>.unmapped`` (``dynamic: false``),
stored byte for byte, in the read alias; the re-emitted index maps nothing beyond the template either.
"""

from __future__ import annotations

import json

import pytest

from citydc.seclog.store_es import ElasticsearchStore, ElasticsearchStoreError, RetryPolicy


class Indices:
    def __init__(self):
        self.created: list[tuple[str, dict]] = []
        self.templates: dict[str, dict] = {}

    def get_index_template(self, name):
        return {"index_templates": [{"name": name, "index_template": self.templates[name]}]} \
            if name in self.templates else {"status": 404}

    def put_index_template(self, name, **body):
        self.templates[name] = body

    def create(self, index, mappings, **kw):
        self.created.append((index, mappings))

    def refresh(self, **kw):
        return {}


class Cluster:
    """Bulk as a node answers it: a monthly index refuses the ids in ``conflicting`` (HTTP 400), an
    ``.unmapped`` index refuses those in ``refused_there``; a stored (index, id) is a 409."""

    def __init__(self, conflicting=(), refused_there=()):
        self.conflicting, self.refused_there = set(conflicting), set(refused_there)
        self.docs: dict[tuple[str, str], bytes] = {}
        self.indices = Indices()

    def bulk(self, operations, refresh, filter_path):
        lines = operations.split(b"\n")
        items = []
        for action, doc in zip(lines[0::2], lines[1::2], strict=False):
            target = json.loads(action)["create"]
            index, doc_id = target["_index"], target["_id"]
            refused = self.refused_there if index.endswith(".unmapped") else self.conflicting
            if doc_id in refused:
                items.append({"create": {"status": 400, "error": {
                    "type": "document_parsing_exception",
                    "reason": "failed to parse field [citydc.backup.job] of type [keyword]"}}})
            elif (index, doc_id) in self.docs:
                items.append({"create": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}})
            else:
                self.docs[(index, doc_id)] = doc
                items.append({"create": {"status": 201}})
        return {"errors": any(i["create"]["status"] >= 400 for i in items), "items": items}

    def search(self, **kw):  # the stored twins of 409 lines: the same line, so no re-emission to keep
        ids = set(kw["query"]["ids"]["values"])
        hits = [{"_source": {"event": {"hash": json.loads(doc)["event"]["hash"]}}}
                for (_, doc_id), doc in self.docs.items() if doc_id in ids and b'"hash"' in doc]
        return {"hits": {"hits": hits}}

    def options(self, **kw):
        return self

    def close(self):
        pass


def _event(i: int, job) -> dict:
    return {"@timestamp": f"2026-03-10T00:00:0{i}.000Z", "event": {"id": f"{i:032x}"}, "message": f"backup {i}",
            "citydc": {"backup": {"job": job}}}


def _store(cluster: Cluster) -> ElasticsearchStore:
    return ElasticsearchStore(cluster, endpoint="http://127.0.0.1:9200", index_prefix="seclog",  # type: ignore[arg-type]
                              retry=RetryPolicy(attempts=2, base_seconds=0.01), sleep=lambda _: None)


def test_an_event_its_monthly_index_refuses_is_stored_in_the_unmapped_twin_byte_for_byte():
    events = [_event(0, "a"), _event(1, {"name": "b"}), _event(2, "c")]
    cluster = Cluster(conflicting={f"{1:032x}"})
    store = _store(cluster)
    assert store.put(events) == 3
    assert set(cluster.docs) == {("seclog-2026.03", f"{0:032x}"), ("seclog-2026.03.unmapped", f"{1:032x}"),
                                 ("seclog-2026.03", f"{2:032x}")}
    kept = json.loads(cluster.docs[("seclog-2026.03.unmapped", f"{1:032x}")])
    assert kept["citydc"] == {"backup": {"job": {"name": "b"}}}
    assert cluster.indices.created == [("seclog-2026.03.unmapped", {"dynamic": False})]
    assert store.put(events) == 0  # a redelivery: stored once, and no error


def test_an_event_the_unmapped_twin_refuses_too_is_rejected_naming_it():
    event_id = f"{1:032x}"
    store = _store(Cluster(conflicting={event_id}, refused_there={event_id}))
    with pytest.raises(ElasticsearchStoreError, match=f"refused event {event_id}") as caught:
        store.put([_event(1, {"name": "b"})])
    assert caught.value.reason == "rejected"


def test_the_re_emitted_index_maps_no_field_beyond_the_template():
    first = {**_event(0, "a"), "event": {"id": f"{0:032x}", "hash": "1" * 64}}
    again = {**_event(0, {"name": "a"}), "event": {"id": f"{0:032x}", "hash": "2" * 64}}  # another chain position
    cluster = Cluster()
    store = _store(cluster)
    store.put([first])
    store.put([again])
    (index, mappings), = cluster.indices.created
    assert index == "seclog.reemitted" and mappings["dynamic"] is False
    assert mappings["properties"]["citydc"]["properties"]["chain"]  # what the chain walk sorts on stays mapped
