"""The shipper's Elasticsearch password never shows in an error, not even as its Authorization header.

Found with a stand-in proxy on 127.0.0.1 answering HTTP 403 with the request's headers in its error reason:
`citydc log ship` printed "authorization: Basic Y2l0eWRj...": base64 of user:password, the password in all
but name. The mask covered the password itself only.
"""

from __future__ import annotations

import base64

import elastic_transport
from elasticsearch import ApiError

from citydc.config.models import ElasticsearchSink
from citydc.seclog.store_es import ElasticsearchStore

PASSWORD = "S3cr3t-pw!é"  # a non-ASCII character: the client encodes user:password as UTF-8


def _meta(status: int) -> elastic_transport.ApiResponseMeta:
    node = elastic_transport.NodeConfig("http", "127.0.0.1", 9200)
    return elastic_transport.ApiResponseMeta(status=status, http_version="1.1",
                                             headers=elastic_transport.HttpHeaders(), duration=0.0, node=node)


def test_a_proxy_echoing_the_authorization_header_does_not_leak_the_password(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYDC_PASS8_ES_PW", PASSWORD)
    monkeypatch.setattr("citydc.seclog.store_es.Elasticsearch", lambda url, **kw: object())
    sink = ElasticsearchSink(url="http://127.0.0.1:9200", username="citydc-shipper",
                             password="env:CITYDC_PASS8_ES_PW")
    store = ElasticsearchStore.from_config(sink, tmp_path)
    header = base64.b64encode(f"citydc-shipper:{PASSWORD}".encode()).decode()
    for status in (403, 500, 400):
        body = {"error": {"type": "security_exception",
                          "reason": f"unable to authenticate: authorization: Basic {header}; accept: */*"}}
        text = str(store._error(ApiError("refused", _meta(status), body), "reading the index template"))
        assert header not in text and PASSWORD not in text, (status, text)
        assert "authorization: Basic ***" in text
