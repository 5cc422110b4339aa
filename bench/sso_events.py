"""Benchmark: ``citydc audit auth`` reading Keycloak's stored login events against a bare paged fetch of them.

Uses the lab Keycloak (``citydc lab up keycloak``; its in-memory database is empty after each start) and a
realm of its own, ``bench-events`` (created if absent: events stored for a year, brute-force protection off,
no event listener, so Keycloak's log stays quiet, passwords hashed with one PBKDF2 iteration so logins are
cheap, a confidential client with direct access grants, a few local users); the audit's service account
``citydc-audit`` in master gets view-events and view-users of it. When the realm holds fewer stored events
than ``--events`` (default 20,000), the missing ones are made through the realm's token endpoint (password
grant, ``--workers`` threads): successes, wrong passwords and unknown usernames, "from" varied addresses in
127.0.0.0/8 (``X-Forwarded-For``: the lab Keycloak reads it). A rerun against the same Keycloak generates
nothing.

Both sides read the same events from the same server over HTTP, the same page size (the keycloak source's
default ``page_size``, 1000) and the same queries (``dateFrom=<newest ms read>&direction=asc&first=0&max=..``,
as ``kc_events._Pager`` asks them):

- bare: a Python process (httpx, the client citydc uses) that gets a service-account token, pages through
  ``/admin/realms/bench-events/events`` and writes each page's raw JSON to a file;
- citydc: the whole ``citydc audit auth --from-start --json`` command, its only group the standalone keycloak
  source (realms: [bench-events]): the config, both streams (``events``, ``admin-events``), every event mapped
  to its ECS document, the detector (the bench's failures are brute force and spraying: it exits 1), the events
  spooled (validated, chained, fsynced) and the state saved. Spool, state and sqlite sink are new each round
  (removed untimed after it).

The numbers of events read must agree (citydc's ``logins`` + ``events`` of the source against the bare
count), else the bench fails. Before timing, the project's packages are byte-compiled, as in
bench/ldap_audit.py (``PYTHONDONTWRITEBYTECODE`` is set on this machine). Rounds alternate the order; the
report gives medians of wall time, CPU (user+sys of the child process) and events/s. ``--profile FILE`` adds a
cProfile of one citydc run (top functions by own time and by cumulative time); ``--stages`` replays the
fetched pages into the real ``run_auth`` in the bench's process (httpx.MockTransport) and times its parts
apart: JSON decoding, ECS mapping, detector, spool. ``--save-pages FILE`` keeps one bare fetch's pages for
bench/sso_replay.py, which replays them offline (no lab) as often as wanted.
The last line is ``RATIO sso_ingest_vs_bare_fetch <median citydc wall / median bare wall>``.

    flock /tmp/citydc-lab.lock env CITYDC_LAB_DIR=/tmp/citydc-lab .venv/bin/python bench/sso_events.py \\
        [--rounds 5] [--events 20000] [--profile auth.prof] [--stages] [--save-pages pages.json]
"""

from __future__ import annotations

import argparse
import itertools
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
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import httpx
import yaml
from ldap_audit import byte_compile  # bench/ is sys.path[0] when run as a script
from sso_replay import EventStore, read_pages

from citydc.config.models import KeycloakSource
from citydc.lab import keycloak_data, ports, registry
from citydc.lab.base import LabContext
from citydc.lab.keycloak import ADMIN_PASSWORD, ADMIN_USER

CITYDC = str(Path(sys.executable).with_name("citydc"))
REALM = "bench-events"
CLIENT = "bench-app"
CLIENT_SECRET = "citydc-lab-bench-app-secret"  # noqa: S105 - lab credential
PASSWORD = "citydc-lab-Bench-pass-2026"  # noqa: S105 - lab credential of the realm's users
USERS = [f"bench-user-{i:02d}" for i in range(12)]
PAGE = KeycloakSource.model_fields["page_size"].default
SOURCE = "bench-sso"
DAY = 86400

# The bare side, run as its own Python process as citydc is: token, then page after page to a file.
BARE = r"""
import json, os, sys
import httpx
url, realm, page, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with httpx.Client(base_url=url, timeout=120) as http, open(out, "wb") as f:
    tok = http.post("/realms/master/protocol/openid-connect/token",
                    data={"grant_type": "client_credentials", "client_id": os.environ["BENCH_CLIENT_ID"],
                          "client_secret": os.environ["CITYDC_KEYCLOAK_SECRET"]})
    tok.raise_for_status()
    auth = {"Authorization": "Bearer " + tok.json()["access_token"], "Accept": "application/json"}
    # The pages citydc asks for (kc_events._Pager): each from the newest millisecond read so far, first=0;
    # that millisecond's events come again at the top of the next page and are counted once.
    date_from, seen, first, count = 0, set(), 0, 0
    while True:
        resp = http.get(f"/admin/realms/{realm}/events", headers=auth,
                        params={"dateFrom": str(date_from), "direction": "asc", "first": first, "max": page})
        resp.raise_for_status()
        items = resp.json()
        f.write(resp.content)
        count += sum(1 for e in items if e["time"] != date_from or e["id"] not in seen)
        if len(items) < page:
            break
        newest = items[-1]["time"]
        at_newest = {e["id"] for e in items if e["time"] == newest}
        if newest > date_from:
            date_from, seen, first = newest, at_newest, len(items) if len(at_newest) == len(items) else 0
        else:
            seen |= at_newest
            first += len(items)
print(count)
"""


def realm_rep() -> dict:
    users = [{"username": u, "enabled": True, "email": f"{u}@bench.example", "emailVerified": True,
              "firstName": u, "lastName": "Bench",
              "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}]} for u in USERS]
    return {"realm": REALM, "enabled": True, "displayName": "citydc event ingestion bench",
            "eventsEnabled": True, "eventsExpiration": 365 * DAY, "eventsListeners": [],
            "adminEventsEnabled": False, "bruteForceProtected": False,
            "passwordPolicy": "hashAlgorithm(pbkdf2-sha256) and hashIterations(1)",
            "clients": [{"clientId": CLIENT, "enabled": True, "protocol": "openid-connect", "publicClient": False,
                         "secret": CLIENT_SECRET, "standardFlowEnabled": False, "directAccessGrantsEnabled": True,
                         "redirectUris": []}],
            "users": users}


def prepare_realm(url: str) -> None:
    """Create the realm if absent and give the audit's service account its view roles there."""
    admin = keycloak_data.Admin(url, ADMIN_USER, ADMIN_PASSWORD)
    try:
        if REALM not in {r["realm"] for r in admin.call("GET", "").json()}:
            admin.call("POST", "", json=realm_rep())
            print(f"realm {REALM} created")
        sa = admin.call("GET", f"/master/clients/{admin.client_uuid('master', keycloak_data.AUDIT_CLIENT)}"
                               "/service-account-user").json()
        admin.grant_client_roles("master", sa["id"], f"{REALM}-realm", ["view-events", "view-users"])
    finally:
        admin.http.close()


def bare_fetch(url: str, out: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """Run the bare fetch; return (wall, CPU of the child, events read)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", BARE, url, REALM, str(PAGE), str(out)], env=env,
                          capture_output=True, text=True, check=False, timeout=600)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench: bare fetch exited {proc.returncode}: {proc.stderr[-800:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), int(proc.stdout)


def count_events(url: str, env: dict[str, str]) -> int:
    """Count the stored events apart from both sides' paging (the check that each side read them all): a
    fixed dateFrom=0 and a growing first, as Keycloak's paging is meant."""
    with httpx.Client(base_url=url, timeout=120) as http:
        tok = http.post("/realms/master/protocol/openid-connect/token",
                        data={"grant_type": "client_credentials", "client_id": env["BENCH_CLIENT_ID"],
                              "client_secret": env["CITYDC_KEYCLOAK_SECRET"]})
        tok.raise_for_status()
        auth = {"Authorization": "Bearer " + tok.json()["access_token"]}
        first = 0
        while True:
            resp = http.get(f"/admin/realms/{REALM}/events", headers=auth,
                            params={"dateFrom": "0", "direction": "asc", "first": first, "max": PAGE})
            resp.raise_for_status()
            first += (n := len(resp.json()))
            if n < PAGE:
                return first


def generate(url: str, missing: int, workers: int, time_limit: float) -> None:
    """Make ``missing`` login events (about 15% successes, 45% wrong passwords, 40% unknown users) with
    ``workers`` threads, at most ``time_limit`` seconds; fail loudly if they are not all made in time."""
    token_url = f"/realms/{REALM}/protocol/openid-connect/token"
    counter = itertools.count()
    lock = threading.Lock()
    done = {"ok": 0, "failed": 0, "unexpected": 0}
    deadline = time.monotonic() + time_limit
    local = threading.local()

    def one(i: int) -> None:
        http = getattr(local, "http", None)
        if http is None:
            http = local.http = httpx.Client(base_url=url, timeout=60)
        kind = i % 20
        user = USERS[i % len(USERS)] if kind < 12 else f"nobody-{i % 997}"
        password = PASSWORD if kind < 3 else f"wrong-{i % 7}"
        ip = f"127.{1 + i % 3}.{(i // 7) % 16}.{1 + i % 29}"
        resp = http.post(token_url, headers={"X-Forwarded-For": ip},
                         data={"grant_type": "password", "client_id": CLIENT, "client_secret": CLIENT_SECRET,
                               "username": user, "password": password, "scope": "openid"})
        expected = 200 if kind < 3 else 401
        with lock:
            if resp.status_code == expected:
                done["ok" if expected == 200 else "failed"] += 1
            else:
                done["unexpected"] += 1
                if done["unexpected"] <= 3:
                    print(f"\nunexpected answer for {user}: HTTP {resp.status_code} {resp.text[:200]}")

    started = time.monotonic()
    last_print = 0.0
    with ThreadPoolExecutor(workers, thread_name_prefix="kc-login") as pool:
        running: set = set()
        while True:
            while len(running) < 4 * workers and (i := next(counter)) < missing:
                running.add(pool.submit(one, i))
            if not running:
                break
            finished, running = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
            for f in finished:
                f.result()  # a connection error ends the bench loudly
            now = time.monotonic()
            if now - last_print >= 2 or not running:
                last_print = now
                made = done["ok"] + done["failed"] + done["unexpected"]
                print(f"\rgenerating: {made}/{missing} logins ({done['ok']} ok, {done['failed']} failed, "
                      f"{done['unexpected']} unexpected), {made / max(now - started, 1e-9):.0f}/s", end="",
                      flush=True)
            if now > deadline:
                for f in running:
                    f.cancel()
                raise SystemExit(f"\nbench: only {done['ok'] + done['failed']} of {missing} logins made in "
                                 f"{time_limit:.0f} s; rerun to add the rest (the realm keeps them)")
            if done["unexpected"] > 50:
                raise SystemExit("\nbench: too many unexpected answers from the token endpoint")
    print()


def write_config(work: Path, url: str) -> Path:
    sso = {"kind": "keycloak", "name": SOURCE, "base_url": url, "realms": [REALM],
           "client_id": keycloak_data.AUDIT_CLIENT, "client_secret": "env:CITYDC_KEYCLOAK_SECRET", "site": "siwei",
           "state_dir": str(work / "state")}
    cfg = {"sites": [{"id": "siwei", "name": "Siwei"}],
           "security_log": {"spool_dir": str(work / "spool"), "sink": {"kind": "sqlite", "path": str(work / "log.db")}},
           "sso": [sso]}
    path = work / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def clean(work: Path) -> None:
    for name in ("spool", "state"):
        shutil.rmtree(work / name, ignore_errors=True)
    for name in ("log.db", "log.db-wal", "log.db-shm"):
        (work / name).unlink(missing_ok=True)


def citydc_run(argv: list[str], env: dict[str, str], work: Path) -> tuple[float, float, int, dict]:
    """Run ``citydc audit auth``; return (wall, CPU of the child, events read, its source's counts)."""
    clean(work)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=600)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):  # 1: something detected (the bench's failures are brute force)
        raise SystemExit(f"bench: {argv[-4:]} exited {proc.returncode}: {proc.stderr[-800:]}")
    (report,) = json.loads(proc.stdout)["sources"]
    if report.get("errors"):
        raise SystemExit(f"bench: citydc reported errors: {report['errors']}")
    counts = report["sso"][SOURCE]
    counts["detections"] = len(report["detections"])
    clean(work)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), \
        counts["logins"] + counts["events"], counts


# citydc ends its commands with os._exit once its output is flushed (citydc.cli.output.exit_now), which
# ``python -m cProfile`` never survives to write its file: here os._exit ends the profile instead.
PROFILED = """
import cProfile, os, sys
out = sys.argv.pop(1)
sys.argv[0] = "citydc"
def _exit(code):
    raise SystemExit(code)
os._exit = _exit
from citydc.cli.main import main
prof = cProfile.Profile()
try:
    prof.runcall(main)
except SystemExit:
    pass
finally:
    prof.dump_stats(out)
"""


def profile(argv: list[str], env: dict[str, str], work: Path, out: Path) -> None:
    """Run citydc once under cProfile (its statistics saved to ``out``); print the top functions."""
    clean(work)
    subprocess.run([sys.executable, "-c", PROFILED, str(out), *argv[1:]], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False, timeout=600)
    clean(work)
    for key in ("tottime", "cumulative"):
        print(f"--- cProfile of one citydc audit auth, by {key}")
        pstats.Stats(str(out)).sort_stats(key).print_stats(18)


def stages(pages: list[bytes], work: Path, repeats: int = 3) -> None:
    """Replay the recorded pages into the real ``run_auth`` (httpx.MockTransport in place of Keycloak, in this
    process) and time its parts apart: what citydc spends per event without the server or process start."""
    from citydc.config.models import AuthDetection
    from citydc.seclog.emit import emit
    from citydc.sso import events, kc_events
    from citydc.sso.auth_audit import KeycloakFeed, run_auth
    from citydc.sso.detect import Detector
    from citydc.sso.keycloak import Keycloak, loads

    store = EventStore(pages)
    total = store.total

    def answer(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        if req.url.path.endswith("/admin-events"):
            return httpx.Response(200, content=b"[]")
        return httpx.Response(200, content=store.answer(req.url.params))

    def timed_part(fn) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    def whole() -> None:
        clean(work)
        kc = Keycloak("http://replay", "c", "s", transport=httpx.MockTransport(answer))
        report = run_auth(group="g", ldap=None, keycloaks=[KeycloakFeed("k", "siwei", [REALM], kc, PAGE)],
                          settings=AuthDetection(), state_path=work / "state" / "events.json",
                          emit=lambda evs: emit(evs, spool_dir=work / "spool"), privileged=(), from_start=True)
        if report["sso"]["k"]["logins"] + report["sso"]["k"]["events"] != total:
            raise SystemExit(f"bench: the replay read {report['sso']['k']} of {total} events")

    objs = store.events
    mapped: list = []

    def decode() -> None:
        for body in pages:
            loads(body)

    def mapping() -> None:  # as read_stream maps them: one SsoUserEvents for the realm
        build = events.SsoUserEvents("siwei", "k", REALM)
        mapped[:] = [(*kc_events._user_event(o, o["time"], o["id"], "w", None, build, f"k:{REALM}:events:"), 0, 0)
                     for o in objs]

    def detect() -> None:
        det = Detector(AuthDetection(), ())
        for _, attempt, _, _ in mapped:
            if attempt is not None:
                det.feed(attempt)
        det.finish()

    def spool() -> None:
        docs = [doc for doc, _, _, _ in mapped]
        for i in range(0, len(docs), 5000):  # auth_audit.BATCH
            emit(docs[i:i + 5000], spool_dir=work / "spool")

    parts = {"run_auth, replayed": whole, "JSON decoding of the pages": decode, "ECS mapping (_user_event)": mapping,
             "detector": detect, "spool (emit, 5,000 a batch)": spool}
    times: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(repeats):
        for name, fn in parts.items():
            if name.startswith("spool"):
                clean(work)
            times[name].append(timed_part(fn))
    clean(work)
    print(f"--- in this process, {total} recorded events, median of {repeats}:")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:32} {med:6.2f} s  {1e6 * med / total:6.0f} us/event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000, help="stored login events wanted in the realm")
    parser.add_argument("--workers", type=int, default=8, help="threads making the logins")
    parser.add_argument("--generate-limit", type=float, default=420.0, help="seconds allowed to make the logins")
    parser.add_argument("--profile", metavar="FILE", type=Path,
                        help="also profile one citydc run with cProfile, statistics saved to FILE")
    parser.add_argument("--stages", action="store_true",
                        help="also replay the fetched pages into run_auth in this process and time its parts")
    parser.add_argument("--save-pages", metavar="FILE", type=Path,
                        help="keep one bare fetch's pages in FILE, for bench/sso_replay.py (offline)")
    args = parser.parse_args()
    byte_compile()
    ctx = LabContext()
    t0 = time.monotonic()
    registry.up(ctx, ["keycloak"])
    url = f"http://{ports.HOST}:{ports.KEYCLOAK}"
    print(f"keycloak at {url} ready in {time.monotonic() - t0:.1f} s")
    prepare_realm(url)
    work = Path(tempfile.mkdtemp(prefix="citydc-bench-sso-"))
    env = {**os.environ, **ports.LAB_ENV, "BENCH_CLIENT_ID": keycloak_data.AUDIT_CLIENT}
    try:
        have = count_events(url, env)
        print(f"realm {REALM}: {have} stored events")
        if have < args.events:
            t0 = time.monotonic()
            generate(url, args.events - have, args.workers, args.generate_limit)
            have = count_events(url, env)
            print(f"realm {REALM}: {have} stored events after {time.monotonic() - t0:.1f} s of logins")
            if have < args.events:
                raise SystemExit(f"bench: {have} events stored, {args.events} wanted (eventsEnabled off?)")
        audit = [CITYDC, "--config", str(write_config(work, url)), "audit", "auth", "--from-start", "--json"]
        walls: dict[str, list[float]] = {"bare": [], "citydc": []}
        cpus: dict[str, list[float]] = {"bare": [], "citydc": []}
        counts: dict = {}
        for r in range(args.rounds):
            for name in ("bare", "citydc") if r % 2 == 0 else ("citydc", "bare"):
                if name == "bare":
                    out = work / "bare.json"
                    wall, cpu, n = bare_fetch(url, out, env)
                    if args.stages:
                        pages = read_pages(out)
                    if args.save_pages and r == 0:
                        shutil.copyfile(out, args.save_pages)
                    out.unlink()
                else:
                    wall, cpu, n, counts = citydc_run(audit, env, work)
                if n != have:
                    raise SystemExit(f"bench: {name} read {n} events, {have} are stored ({counts})")
                walls[name].append(wall)
                cpus[name].append(cpu)
                print(f"round {r + 1}: {name:6} wall {wall:6.2f} s  cpu {cpu:6.2f} s  {n / wall:8.0f} events/s")
        print(f"citydc's counts: {counts}")
        med = {k: statistics.median(v) for k, v in walls.items()}
        medc = {k: statistics.median(v) for k, v in cpus.items()}
        print(f"median bare fetch:   wall {med['bare']:.2f} s, cpu {medc['bare']:.2f} s, "
              f"{have / med['bare']:.0f} events/s")
        print(f"median citydc audit: wall {med['citydc']:.2f} s, cpu {medc['citydc']:.2f} s, "
              f"{have / med['citydc']:.0f} events/s")
        if args.profile:
            profile(audit, env, work, args.profile)
        if args.stages:
            stages(pages, work)
        print(f"RATIO sso_ingest_vs_bare_fetch {med['citydc'] / med['bare']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
