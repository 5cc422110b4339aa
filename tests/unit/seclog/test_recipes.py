"""The event.id recipe and the chain hash, pinned by fixed vectors computed from their documented
definitions (docs/security-log.md, "Exact bytes"): the bytes are written out here and hashed with
hashlib, never produced by the code under test. A change of either recipe makes every stored event
unverifiable, so it must fail here first.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from citydc.seclog.chain import GENESIS, chain_hash, seal, verify
from citydc.seclog.event import event_id, make_event

US = b"\x1f"  # ASCII unit separator between dataset and id_key
WRITER = b"host-1:spool"
INCARNATION = b"20260301T000000Z-0a1b2c3d"
# The canonical JSON of EVENT below, written out: sorted keys, no whitespace, UTF-8 (四維 is e5 9b 9b e7 b6 ad,
# not a \u escape), without event.hash and citydc.chain.
BODY = (b'{"@timestamp":"2026-03-01T00:00:00.000Z","ecs":{"version":"9.0.0"},"event":{"action":"sso-login",'
        b'"category":["authentication"],"dataset":"citydc.sso_audit","id":"fcc17fe4773f8156ce1c41d74a612552",'
        b'"kind":"event","outcome":"success","type":["start"]},"labels":{"site":"siwei"},'
        b'"message":"login \xe5\x9b\x9b\xe7\xb6\xad","user":{"name":"alice"}}')
EVENT_AT = BODY.index(b'"event":{') + len(b'"event":{')  # where the spool line splices in "hash"


def event() -> dict:
    return make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                      type=["start"], outcome="success", message="login 四維", site="siwei", id_key="sso:42",
                      user="alice", timestamp=datetime(2026, 3, 1, tzinfo=UTC))


def test_event_id_is_the_first_32_hex_digits_of_sha256_of_dataset_unit_separator_id_key():
    expected = hashlib.sha256(b"citydc.sso_audit" + US + b"sso:42").hexdigest()[:32]
    assert expected == "fcc17fe4773f8156ce1c41d74a612552"
    assert event()["event"]["id"] == expected
    assert event_id("citydc.sso_audit", "sso:42") == expected
    # Non-ASCII id keys are hashed as UTF-8.
    assert event_id("citydc.backup", "snapshot:四") == hashlib.sha256(
        b"citydc.backup\x1fsnapshot:\xe5\x9b\x9b").hexdigest()[:32]


def test_chain_hash_with_an_incarnation():
    first = hashlib.sha256(GENESIS.encode() + b"|" + WRITER + b"|" + INCARNATION + b"|1|" + BODY).hexdigest()
    assert first == "428cbcf218549e1f4de256f7aa6dcf2f65bf841f20193ad9b787f22106c53488"
    sealed, line = seal(event(), "host-1:spool", 1, GENESIS, "20260301T000000Z-0a1b2c3d")
    assert sealed["event"]["hash"] == first
    assert chain_hash(GENESIS, "host-1:spool", 1, event(), "20260301T000000Z-0a1b2c3d") == first
    # The spool line: the hashed bytes with the chain object spliced in as citydc's first key and the hash
    # as event's first key.
    assert line == (b'{"@timestamp":"2026-03-01T00:00:00.000Z","citydc":{"chain":{"writer":"host-1:spool",'
                    b'"incarnation":"20260301T000000Z-0a1b2c3d","seq":1,"prev":"' + GENESIS.encode() + b'"}},'
                    b'"ecs":{"version":"9.0.0"},"event":{"hash":"' + first.encode() + b'",' + BODY[EVENT_AT:])
    # The next link hashes the previous hash as its prev.
    second = hashlib.sha256(first.encode() + b"|" + WRITER + b"|" + INCARNATION + b"|2|" + BODY).hexdigest()
    assert seal(event(), "host-1:spool", 2, first, "20260301T000000Z-0a1b2c3d")[0]["event"]["hash"] == second
    assert verify([sealed, seal(event(), "host-1:spool", 2, first, "20260301T000000Z-0a1b2c3d")[0]]) == []


def test_chain_hash_of_a_chain_from_before_incarnations():
    legacy = hashlib.sha256(GENESIS.encode() + b"|" + WRITER + b"|1|" + BODY).hexdigest()
    assert legacy == "a2c12276931d0629998c1fff2c2b460f4059c2c915d314de3e8742953806cea3"
    sealed, line = seal(event(), "host-1:spool", 1, GENESIS)
    assert sealed["event"]["hash"] == legacy
    assert line.startswith(b'{"@timestamp":"2026-03-01T00:00:00.000Z","citydc":{"chain":{"writer":"host-1:spool",'
                           b'"seq":1,"prev":"')


def test_body_prefix_used_above_is_the_part_before_the_event_object():
    assert BODY[EVENT_AT:].startswith(b'"action":"sso-login"') and BODY[:EVENT_AT].endswith(b'"event":{')
