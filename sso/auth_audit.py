"""One pass of the authentication audit over one group of sources: new binds and SSO events → ECS events
and detections → state.

A group is a directory (its slapd stats log) and the Keycloak servers federated to it (``sso[].ldap_source``),
or a Keycloak server alone. Their attempts are merged in time order into one detector, so a password spray
that tries some accounts through LDAP and others through Keycloak is one detection. Binds from the SSO
servers' own addresses (``auth.relay_addresses``: Keycloak checking a federated user's password) are recorded
but not counted: the SSO login event stands for that attempt.

The saved state (0600) holds the log position, the parser's open connections, the Keycloak cursors, the
detector's windows and the bind read ahead of the merge but not processed, so the next run continues
exactly where this one stopped. Position, parser and held binds belong to one log file (its path): a run
over another file of the same directory (``citydc audit auth --log FILE``) keeps the configured log's aside
and continues its own, so neither run reads the other's lines again.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import orjson

from citydc import atomicfile
from citydc.config.models import AuthDetection
from citydc.sso import events
from citydc.sso.authlog import Bind, LogPosition, StatsParser, _bind_from_json, _bind_json, read_binds
from citydc.sso.detect import Detector
from citydc.sso.kc_events import STREAMS, Cursor, KcItem, UserNames, read_stream
from citydc.sso.kc_log import KcLogReader
from citydc.sso.keycloak import Keycloak, KeycloakError

__all__ = ["BATCH", "KeycloakFeed", "KeycloakLogFeed", "LdapFeed", "run_auth"]

BATCH = 5000  # events emitted together
# The state is saved with a batch at most this often, and at the end. It holds the detector's windows (a spray
# fills them): saved with every batch, a long backlog cost a write of the whole window per 5,000 events.
# Saving less often is safe: events are spooled before any state that covers them, with ids of their own,
# so what a crash makes the next run read again is stored once.
SAVE_SECONDS = 5.0


@dataclass
class LdapFeed:
    name: str
    site: str
    log: Path


@dataclass
class KeycloakFeed:
    name: str
    site: str
    realms: Sequence[str]
    client: Keycloak
    page: int


@dataclass
class KeycloakLogFeed:
    """A Keycloak whose events are read from its log file (``sso:`` kind log)."""

    name: str
    site: str
    log: Path
    format: str


def _load(path: Path) -> tuple[dict[str, Any], str | None]:
    """Given the state file, return (its state, None), ({}, None) when there is none, or ({}, what is wrong)
    with the damaged file set aside as ``<name>.damaged`` (kept for a look; the next save writes a new one)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data, None
        why = "not a JSON object"
    except FileNotFoundError:
        return {}, None
    except UnicodeDecodeError:
        why = "not UTF-8 text"
    except ValueError as exc:
        why = f"not JSON ({exc})"
    except OSError as exc:
        return {}, f"state {path} unreadable ({exc.strerror or exc}): every source is read from its start"
    aside = path.with_name(path.name + ".damaged")
    with contextlib.suppress(OSError):
        path.replace(aside)
    return {}, f"state {path} damaged ({why}), set aside as {aside.name}: every source is read from its start"


LOG_STATE = ("position", "parser", "carry")  # what of the state belongs to the log file read
MAX_OTHER_LOGS = 16  # log files whose position is kept besides the one read (the newest ones)


def _log_state(st: dict[str, Any], ldap: LdapFeed | None) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """Given the saved state and the run's directory feed, return (the log file's key, the other files' saved
    log states, this file's saved log state). Without a "log" key (a state of before 2026-12-08, or no file
    read yet) the saved position is taken as this file's: its inode and first line still tell another file
    apart, which is then read from its start."""
    saved_others = st.get("other_logs") if isinstance(st.get("other_logs"), dict) else {}
    saved = st.get("log") if isinstance(st.get("log"), str) else None
    if ldap is None:
        return saved, saved_others, st
    key = str(ldap.log.absolute())
    if saved is None or saved == key:
        return key, saved_others, st
    # The state's position is another file's (the configured stats_log while --log FILE is read, or the
    # reverse): taken over, it made the next run of the configured log read it again from its first line and
    # fire its old detections a second time.
    others = {k: v for k, v in saved_others.items() if k not in (key, saved)}
    others[saved] = {k: st.get(k) for k in LOG_STATE}
    while len(others) > MAX_OTHER_LOGS:
        others.pop(next(iter(others)))
    own = saved_others.get(key)
    return key, others, own if isinstance(own, dict) else {}


def run_auth(*, group: str, ldap: LdapFeed | None, keycloaks: Sequence[KeycloakFeed], settings: AuthDetection,
             state_path: Path, emit: Callable[[Sequence[dict]], Any], privileged: Iterable[str],
             from_start: bool = False, kc_logs: Sequence[KeycloakLogFeed] = ()) -> dict[str, Any]:
    """Given a group's feeds, its detection settings, the state file, an emit function and the privileged
    accounts, read what is new, emit its events and detections, save the state; return the run's report.

    A stats log, Keycloak or Keycloak log that cannot be read is reported in ``errors`` and the other feeds
    go on. Raise OSError if the state cannot be written."""
    warnings: list[str] = []
    st, damaged = ({}, None) if from_start else _load(state_path)
    if damaged:
        warnings.append(damaged)
    log_key, other_logs, own = _log_state(st, ldap)
    pos = LogPosition.from_json(own.get("position"))
    parser = StatsParser.from_json(own.get("parser") or {})
    try:
        carry = [_bind_from_json(b) for b in own.get("carry") or []]
    except (TypeError, ValueError, KeyError):
        carry = []
    detector = Detector(settings, privileged)
    try:
        detector.load(st.get("detector") or {})
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        detector = Detector(settings, privileged)
        warnings.append(f"state {state_path}: the detections' windows are damaged ({type(exc).__name__}: "
                        f"{str(exc)[:100]}): detections start afresh")
    saved_kc = st.get("keycloak") if isinstance(st.get("keycloak"), dict) else {}
    cursors: dict[tuple[str, str, str], Cursor] = {
        (k.name, realm, stream): Cursor.from_json(((saved_kc.get(k.name) or {}).get(realm) or {}).get(stream))
        for k in keycloaks for realm in k.realms for stream in STREAMS}
    saved_logs = st.get("kc_logs") if isinstance(st.get("kc_logs"), dict) else {}
    readers = [KcLogReader(f.name, f.site, f.log, f.format, LogPosition.from_json(saved_logs.get(f.name)))
               for f in kc_logs]
    relay = {str(a) for a in settings.relay_addresses}
    counts = {"binds": 0, "success": 0, "failure": 0, "relayed": 0}
    sso = {k.name: {"logins": 0, "success": 0, "failure": 0, "events": 0, "admin_events": 0}
           for k in [*keycloaks, *kc_logs]}
    found: list[dict[str, Any]] = []
    errors: list[str] = []
    failed: set[str] = set()  # Keycloak sources whose events could not all be read
    log_failed: list[str] = []  # the stats log could not be read
    pending: list[dict] = []
    heads: list[tuple[float, int, int, Any]] = []  # (time, order, feed, item): the merge's next item per feed
    feeds: list[Iterator[Any]] = []

    last_save = time.monotonic()

    def flush() -> None:
        if pending:
            emit(list(pending))
            pending.clear()

    def save() -> None:
        # Events first, then the state: after a crash in between, the same items are read again and their
        # events (deterministic ids) are stored once.
        nonlocal last_save
        flush()
        last_save = time.monotonic()
        unprocessed = [_bind_json(item) for _, _, _, item in heads if isinstance(item, Bind)]
        kc_state: dict[str, Any] = {}
        for (name, realm, stream), c in cursors.items():
            kc_state.setdefault(name, {}).setdefault(realm, {})[stream] = c.to_json()
        state_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # orjson: the detector's windows hold an entry per account and address seen lately (thousands after a
        # spray), and the state is written every few seconds while a backlog is read.
        atomicfile.write(state_path, orjson.dumps(
            {"log": log_key, "position": pos.to_json(), "parser": parser.to_json(), "carry": unprocessed,
             "other_logs": other_logs, "keycloak": kc_state,
             "kc_logs": {r.source: r.saved_position() for r in readers}, "detector": detector.to_json()},
            option=orjson.OPT_NON_STR_KEYS), mode=0o600)

    def pull(index: int) -> Any:
        """Return the next item of a feed (None at its end, or when its Keycloak fails: reported in errors)."""
        try:
            return next(feeds[index], None)
        except KeycloakError as exc:
            # Named with its Keycloak source, said once: every realm and stream of an unreachable Keycloak
            # fails with the same words.
            message = f"sso source {label_of[index][0]}: {exc}"
        except OSError as exc:
            if (r := reader_of[index]) is None:
                # The directory's stats log: the Keycloak feeds of the group go on without it.
                assert ldap is not None
                log_failed.append(f"ldap source {ldap.name}: cannot read {ldap.log}: {exc.strerror or exc}")
                errors.append(log_failed[-1])
                return None
            message = f"sso source {r.source}: cannot read {r.path}: {exc.strerror or exc}"
        failed.add(label_of[index][0])
        if message not in errors:
            errors.append(message)
        return None

    def detect(attempt: Any, source: str, site: str) -> None:
        for d in detector.feed(attempt):
            found.append({**d.to_json(), "source": source})
            pending.append(events.detection_event(
                action=d.action, message=d.message, site=site, source=source, when=d.when,
                id_key=f"{group}:{d.id_key}", users=d.users, source_ip=d.source_ip, severity=d.severity,
                details=d.details))

    order = iter(range(1 << 62))
    if ldap is not None:
        feeds.append(chain(carry, read_binds(ldap.log, pos, parser)))
    for k in keycloaks:
        names = UserNames(k.client)
        for realm in k.realms:
            for stream in STREAMS:
                feeds.append(read_stream(k.client, realm, stream, cursors[(k.name, realm, stream)], page=k.page,
                                         source=k.name, site=k.site, names=names))
    feeds.extend(r.items() for r in readers)
    lead = [None] * (1 if ldap is not None else 0)
    label_of: list[Any] = lead + [(k.name, k.site) for k in keycloaks for _ in k.realms for _ in STREAMS] + [
        (r.source, r.site) for r in readers]
    cursor_of: list[Any] = lead + [
        cursors[(k.name, realm, stream)] for k in keycloaks for realm in k.realms for stream in STREAMS] + [
        None for _ in readers]
    reader_of: list[Any] = lead + [None for k in keycloaks for _ in k.realms for _ in STREAMS] + readers
    try:
        for i in range(len(feeds)):
            if (first := pull(i)) is not None:
                heapq.heappush(heads, (first.key if type(first) is KcItem else first.when.timestamp(), next(order), i,
                                       first))
        while heads:
            _, _, index, item = heapq.heappop(heads)
            while item is not None:
                if type(item) is KcItem:
                    name, site = label_of[index]
                    c = sso[name]
                    pending.append(item.event)
                    attempt = item.attempt
                    if item.stream == "admin-events":
                        c["admin_events"] += 1
                    elif attempt is not None:
                        c["logins"] += 1
                        c["success" if attempt.success else "failure"] += 1
                        detect(attempt, name, site)
                    else:
                        c["events"] += 1
                    if (cursor := cursor_of[index]) is not None:
                        cursor.advance(item.time_ms, item.event_id)
                    else:
                        reader_of[index].done()
                else:
                    b: Bind = item  # the only other feed: the stats log (ldap is set)
                    assert ldap is not None
                    relayed = b.source_ip in relay
                    counts["binds"] += 1
                    counts["success" if b.success else "failure"] += 1
                    counts["relayed"] += relayed
                    pending.append(events.bind_event(
                        user=b.dn, source_ip=b.source_ip, success=b.success, code=b.code, when=b.when,
                        site=ldap.site, source=ldap.name,
                        id_key=f"{ldap.name}:{pos.inode}:{b.conn}:{b.op}:{b.when.timestamp()}", conn=b.conn, op=b.op,
                        method=b.method, tls=b.tls, relayed=relayed))
                    if not relayed:
                        detect(b, ldap.name, ldap.site)
                item = pull(index)
                if item is not None:
                    key = item.key if type(item) is KcItem else item.when.timestamp()
                    # Merged by time: this feed's next item goes on at once while it comes before every other
                    # feed's next (a tie goes to the other, read first, as the heap orders them); else it waits
                    # there. A bind read ahead is always in the heap, so a save keeps it (carry).
                    if type(item) is not KcItem or (heads and heads[0][0] <= key):
                        heapq.heappush(heads, (key, next(order), index, item))
                        item = None
                if len(pending) >= BATCH:
                    if time.monotonic() - last_save >= SAVE_SECONDS:
                        save()
                    else:
                        flush()
    finally:
        detector.finish()
        save()
    report: dict[str, Any] = {"source": group, "log": str(ldap.log) if ldap else None, "log_failed": bool(log_failed),
                              **counts,
                              "skipped_lines": parser.skipped, "log_restarted": pos.restarted,
                              "long_lines": pos.long_lines[:100], "detections": found}
    for r in readers:
        sso[r.source].update(log=str(r.path), log_restarted=r.pos.restarted, unreadable_lines=r.bad,
                             unreadable=[{"offset": at, "why": why} for at, why in r.bad_at],
                             long_lines=r.pos.long_lines[:100])
    if keycloaks or kc_logs:
        for name in failed:
            sso[name]["failed"] = True
        report["sso"] = sso
    if errors:
        report["errors"] = errors
    if warnings:
        report["warnings"] = warnings
    return report
