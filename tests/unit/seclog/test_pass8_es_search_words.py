"""`citydc log verify` on Elasticsearch says when events lack their search words (found against a real node).

The shipper sends each event with its message's words (``citydc_index.words``), kept out of ``_source``. An
event indexed again from its ``_source`` (``_reindex`` into a new mapping, an update, put back by hand: done
on a real 9.2.4 node with one event) keeps verifying and answering filters, but a free-text search for its
words finds nothing (SQLite: 1, Elasticsearch: 0), and verify said "every chain intact".
"""

from __future__ import annotations

from citydc.seclog.store_es import ElasticsearchStore


class Client:
    """Answers the search for events with a message and no words as a node does: the ``_source`` fields asked."""

    def __init__(self, lacking):
        self.lacking, self.queries, self.indices = lacking, [], self

    def refresh(self, **kw):
        return {}

    def search(self, query, size, source=None, search_after=None, **kw):
        self.queries.append(query)
        assert source == ["message", "event.id"]  # the documents' fields the check reads (small answers)
        hits = [{"_source": doc, "sort": [doc["event"]["id"], "h"]} for doc in self.lacking]
        if search_after is not None:
            hits = [hit for hit in hits if hit["sort"] > search_after]
        return {"hits": {"hits": hits[:size]}}

    def options(self, **kw):
        return self

    def close(self):
        pass


def test_events_without_their_search_words_are_a_search_index_problem():
    lacking = [{"event": {"id": "a" * 32}, "message": "login 四維 ok"},
               {"event": {"id": "b" * 32}, "message": "!!!"}]  # no words to index: nothing is missing
    client = Client(lacking)
    problem = ElasticsearchStore(client, endpoint="http://127.0.0.1:9200").search_index_problem()  # type: ignore[arg-type]
    assert problem is not None and problem.startswith("1 event(s) lack their search words")
    assert "a" * 32 in problem
    assert client.queries == [{"bool": {"filter": [{"exists": {"field": "message"}}],
                                        "must_not": [{"exists": {"field": "citydc_index.words"}}]}}]


def test_no_event_lacking_words_is_no_problem():
    assert ElasticsearchStore(Client([]), endpoint="http://127.0.0.1:9200").search_index_problem() is None  # type: ignore[arg-type]


def test_verify_asks_the_elasticsearch_store_for_events_without_their_words(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from citydc.cli.main import cli

    cfg = tmp_path / "citydc.yaml"
    cfg.write_text("sites:\n  - {id: siwei, name: Siwei}\nsecurity_log:\n  spool_dir: var/spool\n"
                   "  sink: {kind: elasticsearch, url: 'http://127.0.0.1:9200'}\n", encoding="utf-8")
    lacking = Client([{"event": {"id": "a" * 32}, "message": "login 四維 ok"}])

    class Store(ElasticsearchStore):
        def chain(self, since=None):  # an empty store: nothing to walk
            yield from ()

    monkeypatch.setattr("citydc.cli.log_cmd.open_store",
                        lambda loaded, readonly=True: Store(lacking, endpoint="http://127.0.0.1:9200"))
    result = CliRunner().invoke(cli, ["-c", str(cfg), "log", "verify", "--json"])
    assert result.exit_code == 1, result.output
    answer = json.loads(result.output)
    assert [f["problem"] for f in answer["findings"]] == ["search-index"]
