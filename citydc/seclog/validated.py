"""Events ``make_event`` validated, remembered by their canonical bytes, so ``emit`` need not validate them again.

Every event is built by ``make_event`` (which validates it) and then emitted (which validated it
again, about 5 µs per event, a tenth of the SQLite pipeline's cost). Validity is a property of an
event's content, and the canonical JSON (``chain.canonical``: sorted keys, exact bytes) is that
content: the spool line is made from exactly those bytes. So ``make_event`` remembers the bytes of
each event it validated, and ``Spool.append``, which encodes every event anyway to seal it, skips
validation of an event whose bytes it finds here. An event changed after ``make_event`` has other
bytes and is validated as before (naming the field); one that cannot be encoded is validated too.

Only events without chain fields take part (``plain_body``): what ``make_event`` builds, and what
``canonical`` encodes whole. The memory is bounded (``LIMIT`` events, oldest forgotten first); an
event forgotten is simply validated again. It keeps a 16-byte BLAKE2b digest of the bytes, not the
bytes (about 100 bytes per event instead of 800: 65,536 events in about the memory 8,192 bodies
took), so a batch as large as an audit's findings (tens of thousands) is still remembered when it
is emitted. A digest that matches while the bytes differ would need a BLAKE2b-128 collision. The
cost moved: ``make_event`` encodes and digests each event once more (about 1.5 µs), which saves the
second validation in ``emit`` (about 5 µs).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import orjson

from citydc.seclog import chain

__all__ = ["LIMIT", "known", "plain_body", "remember"]

LIMIT = 65536  # events; a batch larger than this is validated in part, which is only slower

_lock = threading.Lock()
# digests of the bodies, oldest first. An OrderedDict: evicting a plain dict's first key (next(iter(d))) walks
# the holes earlier evictions left, about 25 us per event at the limit against 0.2 us (measured).
_bodies: OrderedDict[bytes, None] = OrderedDict()


def _digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=16).digest()


def plain_body(doc: Any) -> bytes | None:
    """Given an event, return its canonical bytes if it carries no chain fields and can be encoded, else None."""
    if type(doc) is not dict:
        return None
    event, citydc = doc.get("event"), doc.get("citydc")
    if type(event) is not dict or "hash" in event or (
            "citydc" in doc and not (type(citydc) is dict and citydc and "chain" not in citydc)):
        return None
    try:
        return chain.canonical(doc)
    except (TypeError, ValueError, orjson.JSONEncodeError):
        return None


def remember(doc: dict) -> None:
    """Given an event that was just validated, remember its canonical bytes."""
    body = plain_body(doc)
    if body is None:
        return
    digest = _digest(body)
    with _lock:
        _bodies[digest] = None
        while len(_bodies) > LIMIT:
            _bodies.popitem(last=False)


def known(body: bytes) -> bool:
    """Given an event's canonical bytes (``plain_body``), return True if an event with those bytes was validated."""
    return _digest(body) in _bodies
