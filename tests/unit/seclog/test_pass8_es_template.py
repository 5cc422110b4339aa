"""Long keywords stay searchable on Elasticsearch, as on SQLite (found against a real 9.2.4 node).

With ``ignore_above: 1024`` a failed login of a 1,100-character user name (chosen by whoever tried to log in)
was stored but not indexed: ``--user NAME`` found none of its 2 events (SQLite: 2), a free-text search for the
name none of 3 (SQLite: 3), and ``saved failed-logins`` counted them under the user "". The limit is now the
most Lucene can index whatever the characters: 8191 characters of 4 UTF-8 bytes are 32,764 of its 32,766.
"""

from __future__ import annotations

from citydc.seclog.store_es_template import MAPPINGS

LUCENE_TERM_BYTES = 32766


def _keywords(properties: dict, prefix: str = ""):
    for name, spec in properties.items():
        if "properties" in spec:
            yield from _keywords(spec["properties"], f"{prefix}{name}.")
        elif spec.get("type") == "keyword":
            yield f"{prefix}{name}", spec


def test_every_keyword_indexes_values_as_long_as_lucene_can_take_whatever_their_characters():
    specs = [*_keywords(MAPPINGS["properties"]),
             *(("dynamic " + name, t[name]["mapping"]) for t in MAPPINGS["dynamic_templates"] for name in t)]
    assert specs
    for name, spec in specs:
        assert spec["ignore_above"] * 4 <= LUCENE_TERM_BYTES, name  # never a refused event (term too long)
        assert spec["ignore_above"] >= 8191, name  # a 1,100-character user name is indexed
