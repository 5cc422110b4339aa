"""``prometheus-report``: a second Prometheus (Debian) whose TSDB holds a backfilled month of history.

For the bandwidth report and the dashboards' tests, which need a month of 5-minute samples no live
lab can produce in a test's time. On first start (or when the generated history or the rules change):

1. ``lab/report_history.py`` writes the month (and a day either side) as OpenMetrics, one file per day,
   and ``promtool tsdb create-blocks-from openmetrics`` turns each into TSDB blocks;
2. the recording rules of ``alerts/*.rules.yml`` are backfilled with ``promtool tsdb
   create-blocks-from rules`` against this Prometheus, one dependency level at a time (promtool cannot
   see a rule backfilled in the same run: level 1 reads raw series, level 2 reads level 1, ...);
3. Prometheus starts on the TSDB with a ten-year retention (the blocks are older than the default).

The rules are evaluated every 60 s at the offset Prometheus gives their group, like a live server's; every
level uses the same group name and file, so a level-2 rule reads level-1 samples of the same instant
(with different names the offsets differ and a level-2 sample would read the level-1 value of the
minute before). The TSDB is kept in the service directory between starts. Building it is the lab's
longest set-up: 316 s in CI's run of 2026-12-06 with one promtool at a time; two at a time (``WORKERS``)
cut a level-1 rule backfill of four days from 37-44 s to 27-31 s here (loaded 2-core machine), and the
day imports from 108 s to about 70 s (181 s for the whole build in a lab test run of 2026-12-07 beside other
work). So the built blocks are also kept in the download cache (``prometheus-report-tsdb/``, keyed by the
stamp: month, generator version, build and rules), like Elasticsearch's zip: a new lab directory on the same
machine copies them (22 MB) instead of building again; only a new month, generator or rule builds. It needs
the checkout's ``alerts/`` (a wheel does not ship it).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from citydc import execute
from citydc.lab import ports, processes, report_history
from citydc.lab.base import LabContext, LabError, Service, need_binaries, wait_until

__all__ = ["ALERTS", "PrometheusReport", "keep_blocks", "restore_blocks", "rule_levels"]

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
ALERTS = Path(__file__).resolve().parent.parent / "alerts"
STAMP = "citydc-history.json"
CACHE = "prometheus-report-tsdb"
BUILD = 3  # bump when the way the TSDB is built changes: the lab rebuilds it
WORKERS = 2  # promtool runs at a time while building
RULE_FILE = "backfill.rules.yml"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def rule_levels(rule_files: list[Path]) -> list[list[dict]]:
    """Given rule files, return their recording rules grouped by dependency level (level 1 reads only
    raw series, level n reads a rule of level n-1). Raise LabError on a cycle."""
    rules = [r for f in rule_files for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]
             if "record" in r]
    recorded = {r["record"] for r in rules}
    level: dict[int, int] = {}
    for _ in range(len(rules) + 1):
        by_name: dict[str, int] = {}
        for i, r in enumerate(rules):
            if i in level:
                by_name[r["record"]] = max(by_name.get(r["record"], 0), level[i])
        changed = False
        for i, r in enumerate(rules):
            reads = set(_NAME.findall(re.sub(r'"(\\.|[^"\\])*"', "", str(r["expr"])))) & recorded
            if all(name in by_name for name in reads):
                new = 1 + max((by_name[n] for n in reads), default=0)
                if level.get(i) != new:
                    level[i], changed = new, True
        if not changed and len(level) == len(rules):
            break
    if len(level) != len(rules):
        raise LabError("recording rules in alerts/ depend on each other in a cycle")
    return [[r for i, r in enumerate(rules) if level[i] == n] for n in range(1, max(level.values(), default=0) + 1)]


def _cache_key(stamp: dict) -> str:
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]


def _is_block(path: Path) -> bool:
    return path.is_dir() and (path / "meta.json").is_file()


def keep_blocks(data: Path, cache: Path, stamp: dict) -> None:
    """Given a built TSDB directory, the cache directory and the build's stamp, copy its blocks and stamp
    into the cache under the stamp's key, replacing every other key (one month is kept). The copy is made
    under a temporary name and renamed, so a copy cut short is never taken for a whole one."""
    key = _cache_key(stamp)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
    for block in data.iterdir():
        if _is_block(block):
            shutil.copytree(block, tmp / block.name)
    (tmp / STAMP).write_text(json.dumps(stamp))
    tmp.chmod(0o755)
    shutil.rmtree(cache / key, ignore_errors=True)
    tmp.rename(cache / key)
    for old in cache.iterdir():
        if old.name != key:
            shutil.rmtree(old, ignore_errors=True)


def restore_blocks(cache: Path, data: Path, stamp: dict) -> bool:
    """Given the cache directory, a TSDB directory and the wanted stamp, replace the TSDB with the cached
    blocks of that stamp and return True, or return False (TSDB untouched) when the cache has none."""
    src = cache / _cache_key(stamp)
    try:
        if json.loads((src / STAMP).read_text()) != stamp:
            return False
    except (OSError, ValueError):
        return False
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    for block in src.iterdir():
        if _is_block(block):
            shutil.copytree(block, data / block.name)
    (data / STAMP).write_text(json.dumps(stamp))  # last: a restore cut short is rebuilt next start
    return True


def _argv(d: Path) -> list[str]:
    conf = d / "prometheus.yml"
    conf.write_text("global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\nscrape_configs: []\n")
    return [PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={d / 'data'}",
            f"--web.listen-address={ports.HOST}:{ports.PROMETHEUS_REPORT}", "--storage.tsdb.retention.time=10y",
            "--query.lookback-delta=5m"]


def _ready() -> bool:
    with urllib.request.urlopen(f"http://{ports.HOST}:{ports.PROMETHEUS_REPORT}/-/ready", timeout=2) as resp:
        return resp.status == 200


class PrometheusReport(Service):
    name = "prometheus-report"
    description = "Prometheus holding a backfilled month of SNMP, NetFlow and backup history (report, dashboards)"
    ready_timeout = 120.0

    def install(self, ctx: LabContext) -> None:
        need_binaries({PROMETHEUS: "prometheus", PROMTOOL: "prometheus"}, ctx)
        if not ALERTS.is_dir():
            raise LabError(f"{self.name} needs the checkout's alerts/ folder (not found at {ALERTS})")

    def span(self) -> report_history.Span:
        return report_history.span_for(time.time())

    def _stamp(self) -> dict:
        digest = hashlib.sha256()
        for f in sorted(ALERTS.glob("*.rules.yml")):
            digest.update(f.read_bytes())
        return {"month": self.span().month, "version": report_history.VERSION, "build": BUILD,
                "rules": digest.hexdigest()[:16]}

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        stamp = d / "data" / STAMP
        want = self._stamp()
        try:
            have = json.loads(stamp.read_text())
        except (OSError, ValueError):
            have = None
        if have != want:
            if restore_blocks(ctx.cache_dir(CACHE), d / "data", want):
                ctx.log(f"{self.name}: {want['month']} copied from the cache ({ctx.cache / CACHE})")
            else:
                self._build(ctx, d, want)
                keep_blocks(d / "data", ctx.cache_dir(CACHE), want)
        return processes.spawn(_argv(d), log_path=self.log_path(ctx))

    def _build(self, ctx: LabContext, d: Path, stamp: dict) -> None:
        data = d / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        span = self.span()
        ctx.log(f"{self.name}: backfilling {span.month} ({report_history.ZONE}) into {data}")
        with tempfile.TemporaryDirectory(prefix="citydc-history-", dir=d) as tmp:
            # Each promtool run is one core's work (the openmetrics import; the queries of a rule backfill
            # in Prometheus): WORKERS of them at a time, which about halves the lab's longest set-up in CI.
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(lambda path: self._import_day(path, data),
                              report_history.write_day_files(span, Path(tmp))))
            for n, rules in enumerate(rule_levels(sorted(ALERTS.glob("*.rules.yml"))), start=1):
                self._backfill_rules(ctx, d, span, n, rules, Path(tmp))
        (data / STAMP).write_text(json.dumps(stamp))

    @staticmethod
    def _import_day(path: Path, data: Path) -> None:
        res = execute.run("promtool", [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "-q", str(path),
                                       str(data)], timeout=300)
        if not res.ok:
            raise LabError(f"promtool create-blocks-from openmetrics {path.name}: {res.stderr.strip()[-500:]}")
        path.unlink()

    def _backfill_rules(self, ctx: LabContext, d: Path, span: report_history.Span, level: int, rules: list[dict],
                        tmp: Path) -> None:
        # promtool evaluates a group at the offset Prometheus would give it, a hash of its name and of the file
        # name as given. Every level and every part uses the same group name and the same relative file name
        # (each part in its own directory, promtool's working directory), so each level's samples fall on the
        # same instants as the level it reads, as rules of one group do in a live Prometheus.
        parts = [part for part in (rules[i::WORKERS] for i in range(WORKERS)) if part]
        dirs = []
        for i, part in enumerate(parts):
            work = tmp / f"level{level}-part{i}"
            work.mkdir()
            (work / RULE_FILE).write_text(
                yaml.safe_dump({"groups": [{"name": "citydc-backfill", "rules": part}]}))
            dirs.append(work)
        proc = processes.spawn(_argv(d), log_path=d / f"backfill-level{level}.log")
        rec = processes.record(proc.pid, "prometheus (backfill)")
        try:
            wait_until(_ready, 120, f"{self.name}: Prometheus for the rule backfill did not become ready")
            with ThreadPoolExecutor(len(dirs)) as pool:
                list(pool.map(lambda work: self._backfill_part(span, level, work), dirs))
        finally:
            processes.stop([rec])
        for work in dirs:
            for block in (work / "blocks").iterdir():
                shutil.move(str(block), d / "data" / block.name)
        ctx.log(f"{self.name}: level {level} recording rules backfilled ({len(rules)} rules, {len(dirs)} parts)")

    @staticmethod
    def _backfill_part(span: report_history.Span, level: int, work: Path) -> None:
        res = execute.run("promtool", [
            PROMTOOL, "tsdb", "create-blocks-from", "rules", "-q",
            f"--url=http://{ports.HOST}:{ports.PROMETHEUS_REPORT}", f"--start={span.first}",
            f"--end={span.last}", "--eval-interval=60s", "--output-dir=blocks", RULE_FILE], timeout=1800, cwd=str(work))
        if not res.ok:
            raise LabError(f"promtool create-blocks-from rules (level {level}, {work.name}): "
                           f"{res.stderr.strip()[-500:]}")

    def ready(self, ctx: LabContext) -> bool:
        return _ready()

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"http": f"http://{ports.HOST}:{ports.PROMETHEUS_REPORT}", "month": self.span().month}
