"""The Elasticsearch index template of the security log: ECS mappings and monthly index names.

Events go to monthly indices ``<prefix>-YYYY.MM`` chosen from their own @timestamp (so a retry
of the same event always lands in the same index, and the ``create`` conflict catches it), and
every such index joins the read alias ``<prefix>`` through the template.

The lab's integ-test distribution has no data streams (see lab/elasticsearch.py); on a full
distribution a data stream with ILM would replace the monthly indices and the alias, but a data
stream only accepts ``create`` with an ``_id`` too, so the deduplication would stay the same.
"""

from __future__ import annotations

import hashlib
import json

__all__ = ["KEYWORD_LIMIT", "MAPPINGS", "index_for", "template_body", "template_name", "template_version"]

# A keyword longer than ignore_above is kept in _source but not indexed: no filter, search word or stats group
# finds it. At 1024 (until 2026-12-08) a login name of 1,100 characters, chosen by whoever tried to log in, was
# not found by --user and was counted under "" by failed-logins, where SQLite shows it. 8191 characters is the
# most Lucene can index whatever the characters (a term is at most 32,766 bytes; 4 UTF-8 bytes per character).
KEYWORD_LIMIT = 8191
_KW = {"type": "keyword", "ignore_above": KEYWORD_LIMIT}
_IP = {"type": "ip"}
_LONG = {"type": "long"}
# ECS date. citydc writes @timestamp with milliseconds (seclog/event.py format_timestamp), which is
# exactly what a date keeps, so both stores sort and filter on the same instants.
_TS = {"type": "date", "format": "strict_date_optional_time||epoch_millis"}


def _obj(**props: dict) -> dict:
    return {"properties": props}


# ECS 9.x field types for the fields citydc writes. Everything else falls to the dynamic templates.
MAPPINGS: dict = {
    "dynamic": True,
    "date_detection": False,
    "dynamic_templates": [
        # ECS convention: strings are keyword unless documented as text.
        {"strings_as_keyword": {"match_mapping_type": "string", "mapping": _KW}},
    ],
    "properties": {
        "@timestamp": _TS,
        "message": {"type": "text"},
        "event": _obj(id=_KW, kind=_KW, category=_KW, type=_KW, action=_KW, outcome=_KW, dataset=_KW,
                      module=_KW, severity=_LONG, duration=_LONG, hash=_KW, reason=_KW,
                      created=_TS, ingested=_TS),
        "user": _obj(name=_KW, id=_KW, domain=_KW, target=_obj(name=_KW, id=_KW)),
        "source": _obj(ip=_IP, address=_KW, port=_LONG),
        "destination": _obj(ip=_IP, address=_KW, port=_LONG),
        "host": _obj(name=_KW, hostname=_KW, ip=_IP),
        "labels": _obj(site=_KW),
        "rule": _obj(id=_KW, name=_KW, description=_KW, category=_KW, ruleset=_KW),
        "related": _obj(user=_KW, ip=_IP, hosts=_KW, hash=_KW),
        "error": _obj(message={"type": "text"}, code=_KW, type=_KW),
        "citydc": _obj(chain=_obj(writer=_KW, incarnation=_KW, seq=_LONG, prev=_KW)),
        # Search aid, not part of the event: the message's words as the SQLite store's FTS5 sees
        # them (store_es_query.message_words). Indexed but left out of _source, so every event
        # reads back exactly as it was stored and its hash chain still verifies.
        "citydc_index": _obj(words=_KW),
    },
    "_source": {"excludes": ["citydc_index"]},
}


_SETTINGS = {
    "number_of_shards": 1,
    # One replica when a second node exists, none on a single node (the lab).
    "auto_expand_replicas": "0-1",
    # A component field with an unexpected type is kept in _source instead of rejecting the
    # event: the security log never refuses an event it was given.
    "index.mapping.ignore_malformed": True,
}


def template_name(prefix: str) -> str:
    return f"{prefix}-template"


def template_body(prefix: str) -> dict:
    """Given the index prefix, return the composable index template body (put_index_template kwargs)."""
    return {
        "index_patterns": [f"{prefix}-*"],
        "priority": 200,
        "template": {
            "settings": _SETTINGS,
            "mappings": MAPPINGS,
            "aliases": {prefix: {}},
        },
        "_meta": {"managed_by": "citydc", "description": "citydc security log (ECS)",
                  "citydc_template_version": template_version()},
    }


def template_version() -> str:
    """Return a digest of the mappings and settings, so a store installs the template only when it changed."""
    text = json.dumps([MAPPINGS, _SETTINGS], sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def index_for(prefix: str, timestamp: str) -> str:
    """Given the prefix and an event's @timestamp (ISO 8601, UTC), return its monthly index name.

    Raise ValueError if the timestamp does not start with YYYY-MM.
    """
    year, month = timestamp[0:4], timestamp[5:7]
    if not (len(timestamp) >= 7 and year.isdigit() and timestamp[4] == "-" and month.isdigit()):
        raise ValueError(f"@timestamp: expected an ISO 8601 time starting with YYYY-MM, got {timestamp[:40]!r}")
    return f"{prefix}-{year}.{month}"
