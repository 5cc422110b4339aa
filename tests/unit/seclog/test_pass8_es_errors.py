"""What `citydc log ship` says when Elasticsearch refuses its index template (found against a real 9.2.4 node).

With an index named like the read alias (``index_prefix``, made by hand or by a client before the template
existed) the node refuses the template with "composable template [...] template after composition is invalid";
its ``caused_by`` says why ("Invalid alias name [...]: an index or data stream exists with the same name as the
alias"). citydc showed only the first part, and the hint said "the store refused an event of the batch (named
above)": no event was named, none was at fault.
"""

from __future__ import annotations

import elastic_transport
from elasticsearch import ApiError

from citydc.cli.log_cmd import _delivery_hint
from citydc.seclog.store_es import ElasticsearchStore

BODY = {"error": {"root_cause": [{"type": "illegal_argument_exception",
                                  "reason": "composable template [seclog-template] template after composition is "
                                            "invalid"}],
                  "type": "illegal_argument_exception",
                  "reason": "composable template [seclog-template] template after composition is invalid",
                  "caused_by": {"type": "invalid_alias_name_exception",
                                "reason": "Invalid alias name [seclog]: an index or data stream exists with the same "
                                          "name as the alias"}},
        "status": 400}


def _meta(status: int) -> elastic_transport.ApiResponseMeta:
    node = elastic_transport.NodeConfig("http", "127.0.0.1", 9200)
    return elastic_transport.ApiResponseMeta(status=status, http_version="1.1",
                                             headers=elastic_transport.HttpHeaders(), duration=0.0, node=node)


def test_the_cause_of_a_refusal_is_in_the_message_and_the_hint_blames_no_event():
    store = ElasticsearchStore(object(), endpoint="http://127.0.0.1:9200")  # type: ignore[arg-type]
    error = store._error(ApiError("bad request", _meta(400), BODY), "installing the index template")
    assert error.reason == "rejected" and not error.retriable
    assert "an index or data stream exists with the same name as the alias" in str(error)
    hint = _delivery_hint(error)
    assert "an event of the batch (named above)" not in hint and "index template" in hint
