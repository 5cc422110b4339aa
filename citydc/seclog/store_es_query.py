"""Translate a security-log Query into Elasticsearch query DSL (pure functions, unit-tested).

The translation mirrors the SQLite store so that both answer the same: filters are exact term
matches on keyword fields, ``since`` is inclusive and ``until`` exclusive on @timestamp, free text
matches every word in ``message``, and hits are ordered by @timestamp then event.id.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from citydc.seclog.store import Query

__all__ = ["WORDS_FIELD", "bool_query", "chain_sort", "composite_sources", "es_time", "message_words",
           "search_sort", "text_terms"]

# The message's words as SQLite FTS5 (unicode61) sees them, indexed as keywords and left out of
# _source (store_es_template.py). The lab distribution has only the standard analyzer, which
# splits differently (10.10.1.2 stays one token, 四維機房 becomes four, é stays é), so a match on
# ``message`` would answer differently from the SQLite store.
WORDS_FIELD = "citydc_index.words"
_QUERY_WORD = re.compile(r"\w+")  # how the SQLite store splits free text into quoted FTS5 phrases
_TOKEN = re.compile(r"[^\W_]+")  # unicode61 token characters: letters and numbers
# ASCII and CJK Unified Ideographs (with extension A) only: folding is then lowercasing the ASCII.
_CASELESS = re.compile(r"[\x00-\x7f\u3400-\u4dbf\u4e00-\u9fff]*\Z")
# In such a message the only separators are ASCII (every ideograph of those ranges is a letter in this
# Python's Unicode tables, checked below), so splitting is a byte translation (ASCII separators to
# spaces) and str.split: half the regex's cost, and this runs once per event the shipper sends.
_SEPARATORS_TO_SPACE = bytes(c if c >= 0x80 or chr(c).isalnum() else 0x20 for c in range(256))
_IDEOGRAPHS_ARE_LETTERS = all(chr(c).isalnum() for lo, hi in ((0x3400, 0x4DC0), (0x4E00, 0xA000))
                              for c in range(lo, hi))


@functools.lru_cache(maxsize=8192)  # words repeat across events (names, places); folding costs microseconds
def _fold(token: str) -> str:
    token = token.lower()
    if token.isascii():
        return token
    # unicode61 remove_diacritics: é -> e, Å -> a; ß and ligatures stay as they are.
    bare = "".join(c for c in unicodedata.normalize("NFD", token) if unicodedata.category(c) != "Mn")
    return unicodedata.normalize("NFC", bare)


def message_words(message: str) -> list[str]:
    """Given a message, return its distinct words as FTS5's unicode61 tokenizer makes them, sorted."""
    if message.isascii() or _CASELESS.match(message):
        # Lowercasing ASCII is per character and CJK ideographs have no case or marks: fold at once.
        folded = message.lower()
        if _IDEOGRAPHS_ARE_LETTERS:
            return sorted(set(folded.encode().translate(_SEPARATORS_TO_SPACE).decode().split()))
        return sorted(set(_TOKEN.findall(folded)))
    # Otherwise token by token: lowercasing can depend on neighbours (Greek final sigma).
    return sorted({t.lower() if t.isascii() else _fold(t) for t in set(_TOKEN.findall(message))})


def text_terms(text: str) -> list[str] | None:
    """Given free text, return the words every matching message must contain; None if nothing can match.

    Mirrors the SQLite store: every run of letters and digits is one word (``foo_bar`` is foo and bar,
    each anywhere in the message); a word without token characters (such as ``_``) matches nothing.
    """
    terms: list[str] = []
    words = _QUERY_WORD.findall(text)
    for word in words:
        tokens = [_fold(t) for t in _TOKEN.findall(word)]
        if not tokens:
            return None
        terms.extend(t for t in tokens if t not in terms)
    return terms or None


def es_time(moment: datetime) -> str:
    """Given a timezone-aware datetime, return it as the UTC ISO 8601 string citydc events use.

    Milliseconds, like @timestamp itself (the SQLite store compares the same text), so a bound
    inside a millisecond selects the same events on both stores. Raise ValueError if it is naive.
    """
    if moment.tzinfo is None:
        raise ValueError("since/until: expected a timezone-aware time")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def bool_query(query: Query, *, since: datetime | None = None) -> dict:
    """Given a Query, return the ``query`` body part (a bool filter) selecting its events."""
    clauses: list[dict] = []
    time_range: dict[str, str] = {}
    start = query.since if since is None else since
    if start is not None:
        time_range["gte"] = es_time(start)
    if query.until is not None:  # rounded up, as the SQLite store does: an end inside a millisecond keeps its start
        until = query.until
        if until.microsecond % 1000:
            until = until + timedelta(microseconds=1000 - until.microsecond % 1000)
        time_range["lt"] = es_time(until)
    if time_range:
        clauses.append({"range": {"@timestamp": time_range}})
    for field_name, value in sorted(query.filters.items()):
        if isinstance(value, tuple | list):  # any of the values
            clauses.append({"terms": {field_name: list(value)}})
        else:
            clauses.append({"term": {field_name: value}})
    if query.text:
        terms = text_terms(query.text)
        if terms is None:
            return {"match_none": {}}
        clauses.extend({"term": {WORDS_FIELD: t}} for t in terms)
    if not clauses:
        return {"match_all": {}}
    return {"bool": {"filter": clauses}}


def search_sort(newest_first: bool) -> list[dict]:
    """Return the sort clause: @timestamp then event.id, both in the same direction."""
    order = "desc" if newest_first else "asc"
    return [{"@timestamp": {"order": order}}, {"event.id": {"order": order}}]


def chain_sort() -> list[dict]:
    """Return the sort clause for verification: writer, then seq, then id, then hash as the unique tiebreaker
    (two incarnations of a writer may hold the same event.id at the same seq)."""
    return [{"citydc.chain.writer": "asc"}, {"citydc.chain.seq": "asc"}, {"event.id": "asc"}, {"event.hash": "asc"}]


def composite_sources(by: Sequence[str]) -> list[dict]:
    """Given ECS field names, return composite aggregation sources (missing values form a bucket).

    Raise ValueError if ``by`` is empty.
    """
    if not by:
        raise ValueError("stats: expected at least one --by field")
    return [{f"f{i}": {"terms": {"field": name, "missing_bucket": True}}} for i, name in enumerate(by)]
