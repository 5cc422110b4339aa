"""Offline companion of bench/sso_events.py: Keycloak event pages fetched once, replayed into citydc many times.

``bench/sso_events.py --save-pages FILE`` keeps the bare fetch's pages (the JSON arrays one after the other,
as Keycloak sent them). This script needs neither the lab nor Keycloak:

- default: the pages replayed into the real ``run_auth`` in this process (``httpx.MockTransport``), with
  ``emit`` into a new spool each time; the median wall of ``--repeats`` runs, per event;
- ``--cli N``: the whole ``citydc audit auth --from-start --json`` command N times, against a small HTTP
  server of this process on 127.0.0.1 answering the token and the pages from memory (so process start,
  imports, config and httpx are in); medians of wall and CPU;
- ``--profile FILE``: a cProfile of one in-process replay (top functions by own and cumulative time);
- ``--golden FILE``: one replay with the spool's random and host-dependent parts pinned (writer, incarnation,
  clock, host name), its spool lines, chain head and the report written to FILE: two checkouts that record the
  same thing write the same FILE, byte for byte (``cmp``).

    .venv/bin/python bench/sso_replay.py --pages /tmp/pages.json [--repeats 5] [--cli 5] [--profile p.prof]
        [--golden out.txt]
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import orjson

REALM = "bench-events"
PAGE = 1000


def read_pages(path: Path) -> list[bytes]:
    """Given the bare fetch's file (the pages' JSON arrays one after the other), return each page's bytes."""
    text, decoder, pages, pos = path.read_text(), json.JSONDecoder(), [], 0
    while pos < len(text):
        _, end = decoder.raw_decode(text, pos)
        pages.append(text[pos:end].encode())
        pos = end
    return pages


class EventStore:
    """The events of the recorded pages (each once: a page starts again at the newest millisecond of the one
    before it), answering the events query as Keycloak does: ``dateFrom`` (epoch ms, inclusive), ascending,
    ``first``, ``max``. Answers are encoded once per query and kept, so a replay after the first costs
    only the lookups."""

    def __init__(self, pages: list[bytes]) -> None:
        self.events: list[dict] = []
        ids: set[str] = set()
        for body in pages:
            for event in json.loads(body):
                if event["id"] not in ids:
                    ids.add(event["id"])
                    self.events.append(event)
        self.times = [e["time"] for e in self.events]
        self.total = len(self.events)
        self._answers: dict[tuple[int, int, int], bytes] = {}

    def answer(self, query: Mapping[str, str]) -> bytes:
        key = (int(query.get("dateFrom", 0)), int(query.get("first", 0)), int(query.get("max", 100)))
        body = self._answers.get(key)
        if body is None:
            start = bisect.bisect_left(self.times, key[0]) + key[1]
            body = self._answers[key] = orjson.dumps(self.events[start:start + key[2]])
        return body


def replay_once(store: EventStore, work: Path) -> dict:
    """Run the real ``run_auth`` over the recorded events (a new spool and state in ``work``); return its report."""
    import httpx

    def answer(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        if req.url.path.endswith("/admin-events"):
            return httpx.Response(200, content=b"[]")
        return httpx.Response(200, content=store.answer(req.url.params),
                              headers={"content-type": "application/json"})

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    gc.freeze()  # as `citydc audit auth` does (citydc/cli/audit_cmd.py)
    threshold = gc.get_threshold()
    gc.set_threshold(10_000, 10, 10)
    try:
        return _replay(store.total, work, answer)
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _replay(total: int, work: Path, answer) -> dict:
    import httpx

    from citydc.config.models import AuthDetection
    from citydc.seclog.emit import emit
    from citydc.sso.auth_audit import KeycloakFeed, run_auth
    from citydc.sso.keycloak import Keycloak

    kc = Keycloak("http://replay", "c", "s", transport=httpx.MockTransport(answer))
    report = run_auth(group="g", ldap=None, keycloaks=[KeycloakFeed("k", "siwei", [REALM], kc, PAGE)],
                      settings=AuthDetection(), state_path=work / "state" / "events.json",
                      emit=lambda evs: emit(evs, spool_dir=work / "spool", writer="bench:spool"),
                      privileged=(), from_start=True)
    kc.close()
    if report["sso"]["k"]["logins"] + report["sso"]["k"]["events"] != total:
        raise SystemExit(f"replay: read {report['sso']['k']} of {total} events")
    return report


def golden(store: EventStore, work: Path, out: Path) -> None:
    """One replay with the spool's random, clock and host parts pinned; write its lines, head and report."""
    import secrets
    import socket

    from citydc.seclog import spool as spool_module

    secrets.token_hex = lambda n=None: "0badcafe"
    socket.gethostname = lambda: "bench-host"
    real = spool_module.Spool.__init__

    def pinned(self, *a, **kw):
        real(self, *a, **kw)
        self.clock = lambda: 1_796_000_000.0

    spool_module.Spool.__init__ = pinned
    report = replay_once(store, work)
    with out.open("wb") as f:
        for seg in sorted((work / "spool").glob("seg-*.jsonl")):
            f.write(seg.read_bytes())
        f.write((work / "spool" / "chain-head.json").read_bytes() + b"\n")
        state = json.loads((work / "state" / "events.json").read_text())
        f.write(json.dumps(state["keycloak"], sort_keys=True).encode() + b"\n")
        f.write(json.dumps(report, sort_keys=True, default=str).encode() + b"\n")
    print(f"golden: {out} ({out.stat().st_size} bytes)")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    store: EventStore


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # the token
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(b'{"access_token":"t","expires_in":300}')

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path.endswith("/admin-events"):
            self._send(b"[]")
            return
        self._send(self.server.store.answer({k: v[0] for k, v in parse_qs(url.query).items()}))


def cli(store: EventStore, work: Path, rounds: int) -> None:
    """Run the whole ``citydc audit auth`` command ``rounds`` times against a local server of the pages."""
    import yaml
    from ldap_audit import byte_compile  # bench/ is sys.path[0] when run as a script

    byte_compile()  # as bench/sso_events.py does (PYTHONDONTWRITEBYTECODE is set on this machine)

    server = _Server(("127.0.0.1", 0), _Handler)
    server.store = store
    total = store.total
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    cfg = {"sites": [{"id": "siwei", "name": "Siwei"}],
           "security_log": {"spool_dir": str(work / "spool"), "sink": {"kind": "sqlite", "path": str(work / "log.db")}},
           "sso": [{"kind": "keycloak", "name": "bench-sso", "base_url": url, "realms": [REALM],
                    "client_id": "citydc-audit", "client_secret": "env:BENCH_SECRET", "site": "siwei",
                    "state_dir": str(work / "state")}]}
    work.mkdir(parents=True, exist_ok=True)
    (work / "citydc.yaml").write_text(yaml.safe_dump(cfg))
    argv = [str(Path(sys.executable).with_name("citydc")), "--config", str(work / "citydc.yaml"), "audit", "auth",
            "--from-start", "--json"]
    env = {**os.environ, "BENCH_SECRET": "s"}
    walls, cpus = [], []
    try:
        for r in range(rounds):
            for name in ("spool", "state"):
                shutil.rmtree(work / name, ignore_errors=True)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=600)
            wall = time.monotonic() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if proc.returncode not in (0, 1):
                raise SystemExit(f"replay: citydc exited {proc.returncode}: {proc.stderr[-800:]}")
            (report,) = json.loads(proc.stdout)["sources"]
            counts = report["sso"]["bench-sso"]
            if counts["logins"] + counts["events"] != total or report.get("errors"):
                raise SystemExit(f"replay: citydc read {counts} of {total}: {report.get('errors')}")
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            walls.append(wall)
            cpus.append(cpu)
            print(f"cli round {r + 1}: wall {wall:5.2f} s  cpu {cpu:5.2f} s  ({len(report['detections'])} detections)")
    finally:
        server.shutdown()
    print(f"cli median: wall {statistics.median(walls):.2f} s, cpu {statistics.median(cpus):.2f} s, "
          f"{1e6 * statistics.median(walls) / total:.0f} us/event (min: wall {min(walls):.2f} s, "
          f"cpu {min(cpus):.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=Path, required=True, help="the pages (bench/sso_events.py --save-pages)")
    parser.add_argument("--repeats", type=int, default=3, help="in-process replays timed (0: none)")
    parser.add_argument("--cli", type=int, default=0, metavar="N", help="also run the whole command N times")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="cProfile one in-process replay")
    parser.add_argument("--golden", type=Path, metavar="FILE", help="write one pinned replay's spool and report")
    args = parser.parse_args()
    store = EventStore(read_pages(args.pages))
    work = Path(tempfile.mkdtemp(prefix="citydc-sso-replay-"))
    try:
        if args.golden:  # a fixed directory: its path is in the spool-created event
            golden(store, Path(tempfile.gettempdir()) / "citydc-sso-replay-golden", args.golden)
            return
        replay_once(store, work / "warm")  # imports and caches warm, as in a long process
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            replay_once(store, work / "r")
            times.append(time.perf_counter() - started)
        if times:
            med = statistics.median(times)
            print(f"run_auth replayed: {store.total} events, median of {len(times)}: {med:.2f} s, "
                  f"{1e6 * med / store.total:.0f} us/event, min {min(times):.2f} s "
                  f"({', '.join(f'{t:.2f}' for t in times)})")
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
            replay_once(store, work / "p")
            prof.disable()
            prof.dump_stats(str(args.profile))
            for key in ("tottime", "cumulative"):
                print(f"--- cProfile of one replay, by {key}")
                pstats.Stats(str(args.profile)).sort_stats(key).print_stats(25)
        if args.cli:
            cli(store, work / "cli", args.cli)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
