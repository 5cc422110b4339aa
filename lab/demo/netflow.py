"""The demo's NetFlow step: softflowd exports recorded by the lab (``record.py``) replayed to
``citydc collect netflow``.

Records and bytes per format must equal what nfdump decoded from the same datagrams; the collector
must exit 0 with its summary line.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from citydc.config.loader import LoadedConfig
from citydc.config.models import Config
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, LabError, wait_until
from citydc.lab.demo.cycle import Step, citydc_argv, http_text
from citydc.lab.demo.record import Capture

__all__ = ["netflow_step", "parse_samples", "phase_rows"]


# v5 and v9 both reach siwei from the one exporter, and the collector's byte counters carry no
# version label, so v9 goes in a second phase: each format's bytes are a phase's difference.
NETFLOW_PHASES: tuple[tuple[tuple[str, str], ...], ...] = ((("v5", "siwei"), ("ipfix", "fengshan")),
                                                           (("v9", "siwei"),))
NETFLOW_DURATION = 60  # seconds the collector runs at most; the step needs a few
_FLUSH_SECONDS = 1.0  # the collector moves decoded sums to its counters once a second
_SUMMARY = re.compile(r"^netflow: (\d+) datagrams, (\d+) records, (\d+) decode errors$", re.M)
_TRAFFIC = ("citydc_netflow_records_total", "citydc_netflow_protocol_bytes_total", "citydc_netflow_agency_bytes_total")


def listener_targets(config: Config) -> dict[str, tuple[str, int]]:
    """Given the config, return site -> (address, port) of its first NetFlow listener, reachable on loopback."""
    out: dict[str, tuple[str, int]] = {}
    for lst in config.netflow.listeners:
        address = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(lst.address, lst.address)  # noqa: S104 - a bind-all listener
        out.setdefault(lst.site, (address, lst.port))
    return out


def replay(payloads: tuple[bytes, ...], target: tuple[str, int]) -> int:
    """Send the payloads, in order, as UDP datagrams from one socket to target; return how many."""
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for payload in payloads:  # bounded: a capture holds a handful of datagrams
            sock.sendto(payload, target)
    return len(payloads)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_samples(text: str, names: tuple[str, ...] = _TRAFFIC) -> Samples:
    """Given a /metrics text, return (sample name, sorted labels) -> value for the named samples."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if s.name in names}


def _sums(samples: Samples, name: str, site: str, key: Callable[[dict], str | None]) -> dict[str, float]:
    # Sum the samples of one site by key(labels); a key of None leaves the sample out.
    out: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        lab = dict(labels)
        k = key(lab) if sample == name and lab.get("site") == site else None
        if k is not None:
            out[k] = out.get(k, 0.0) + value
    return out


def _protocol_key(lab: dict) -> str:
    return f"{lab.get('protocol')}/{lab.get('service')}"


def _agency_key(lab: dict) -> str:
    # per direction: a flow between two hosts of one agency counts once to it and once from it
    return f"{lab.get('agency')} {lab.get('direction')}"


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def _top(sums: dict[str, float], total: float, none: str) -> str:
    # The largest key and its share of the format's bytes.
    if not sums:
        return none
    name, value = max(sums.items(), key=lambda kv: (kv[1], kv[0]))
    return f"{name} {value / total:.0%}" if total else name


def records_by(samples: Samples, site: str, version: str) -> dict[str, int]:
    """Given samples, return exporter -> records decoded for that site and protocol version."""
    return {k: int(v) for k, v in _sums(samples, "citydc_netflow_records_total", site,
                                         lambda lab: lab.get("exporter") if lab.get("version") == version else None
                                         ).items()}


def phase_rows(before: Samples, after: Samples, phase: tuple[tuple[str, str], ...],
               captures: dict[str, Capture]) -> list[dict]:
    """Given the samples scraped before and after one replay phase, return a row per (exporter, format).

    Records are the collector's own counter per version; bytes are the phase's growth of the site's
    protocol byte counters (each flow counted once), which is why a phase sends one format per site.
    A row is ok when records and bytes equal the capture's nfdump sidecar.
    """
    rows = []
    for fmt, site in phase:
        cap = captures[fmt]
        protocols = _delta(_sums(after, "citydc_netflow_protocol_bytes_total", site, _protocol_key),
                           _sums(before, "citydc_netflow_protocol_bytes_total", site, _protocol_key))
        agencies = _delta(_sums(after, "citydc_netflow_agency_bytes_total", site, _agency_key),
                          _sums(before, "citydc_netflow_agency_bytes_total", site, _agency_key))
        records = _delta({k: float(v) for k, v in records_by(after, site, fmt).items()},
                         {k: float(v) for k, v in records_by(before, site, fmt).items()})
        got_bytes = int(sum(protocols.values()))
        got_records = int(sum(records.values()))
        rows.append({"exporter": ",".join(sorted(records)) or "-", "site": site, "version": fmt,
                     "records": got_records, "bytes": got_bytes, "nfdump_records": cap.flows,
                     "nfdump_bytes": cap.bytes, "ok": got_records == cap.flows and got_bytes == cap.bytes,
                     "top_protocol": _top(protocols, got_bytes, "-"),
                     "top_agency": _top(agencies, got_bytes, "none matched")})
    return rows


def _settle(scrape: Callable[[], Samples], reached: Callable[[Samples], bool], timeout: float) -> Samples:
    # Records are counted as datagrams are decoded, bytes when the collector flushes: wait until the
    # records are all in and two scrapes more than a flush interval apart agree. Bounded by timeout.
    deadline = time.monotonic() + timeout
    first: tuple[float, Samples] | None = None
    samples: Samples = {}
    while time.monotonic() < deadline:
        samples = scrape()
        if reached(samples):
            if first is not None and first[1] == samples and time.monotonic() - first[0] > _FLUSH_SECONDS:
                return samples
            if first is None or first[1] != samples:
                first = (time.monotonic(), samples)
        time.sleep(0.25)
    return samples


def collector_summary(log_text: str) -> tuple[int, int, int] | None:
    """Given the collector's output, return (datagrams, records, decode errors) of its summary line."""
    found = _SUMMARY.findall(log_text)
    return tuple(int(x) for x in found[-1]) if found else None  # type: ignore[return-value]


def _stop_collector(proc: subprocess.Popen, rec: processes.ProcessRecord | None, timeout: float = 20) -> int | None:
    # SIGTERM by PID and wait on the Popen itself (processes.stop reaps any child, which would hide
    # the exit code); SIGKILL through processes.stop only if it does not end in time.
    if proc.poll() is None and rec is not None and processes.alive(rec):
        os.kill(rec.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        processes.stop([rec] if rec else [])
        return None


def netflow_step(loaded: LoadedConfig, ctx: LabContext, captures: dict[str, Capture]) -> Step:
    """Given the lab config, the lab and the captures recorded from its softflowd, run
    ``citydc collect netflow``, replay the captures to its listeners, and return a Step that is ok
    only when records and bytes per format equal nfdump's totals for the same datagrams and the
    collector exited 0 with its summary."""
    targets = listener_targets(loaded.config)
    missing = sorted({site for phase in NETFLOW_PHASES for _, site in phase} - set(targets))
    if missing:
        return Step("netflow", False, f"netflow.listeners has no listener for site(s) {', '.join(missing)}")
    base = f"http://{ports.HOST}:{ports.NETFLOW_DEMO_METRICS}"
    log_path = ctx.service_dir("demo") / "netflow.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    proc = processes.spawn(citydc_argv(loaded.path, "collect", "netflow", "--metrics",
                                       f"{ports.HOST}:{ports.NETFLOW_DEMO_METRICS}",
                                       "--duration", str(NETFLOW_DURATION)), log_path=log_path)
    rec = None
    rows: list[dict] = []
    problem = ""
    try:
        rec = processes.record(proc.pid, "citydc collect netflow")

        def answers() -> bool:
            if proc.poll() is not None:  # e.g. a listener port taken: no point waiting
                tail = _log_since(log_path, offset).strip().splitlines()
                said = " ".join(tail[-2:]) or "no output"  # the error line and its hint
                raise LabError(f"the NetFlow collector exited {proc.returncode}: {said}")
            return bool(http_text(f"{base}/metrics", 2))

        wait_until(answers, 30, "the NetFlow collector did not answer")

        def scrape() -> Samples:
            return parse_samples(http_text(f"{base}/metrics", 5))

        want: dict[tuple[str, str], int] = {}
        before = scrape()
        for phase in NETFLOW_PHASES:
            for fmt, site in phase:
                replay(captures[fmt].payloads, targets[site])
                want[(site, fmt)] = captures[fmt].flows

            def reached(samples: Samples) -> bool:
                return all(sum(records_by(samples, s, v).values()) >= n for (s, v), n in want.items())

            after = _settle(scrape, reached, 20)
            rows += phase_rows(before, after, phase, captures)
            before = after
    except (LabError, RuntimeError, OSError, ValueError) as exc:
        problem = str(exc)
    finally:
        rc = _stop_collector(proc, rec)
    rows.sort(key=lambda r: list(captures).index(r["version"]))
    summary = collector_summary(_log_since(log_path, offset))
    sent = sum(len(c.payloads) for c in captures.values())
    expected_summary = (sent, sum(c.flows for c in captures.values()), 0)
    parts = [f"{r['version']} {r['records']}/{r['nfdump_records']} records, {r['bytes']:,}/{r['nfdump_bytes']:,} B"
             for r in rows]
    same = len(rows) == len(captures) and all(r["ok"] for r in rows)
    if problem:
        parts.append(f"{problem}; see {log_path}")
    elif not same:
        parts.append("differs from nfdump's totals (the captures' .json sidecars)")
    if rc != 0:
        parts.append(f"collector exit {rc}, expected 0; see {log_path}")
    elif summary != expected_summary:
        parts.append(f"collector summary (datagrams, records, errors) {summary}, expected {expected_summary}")
    elif same and not problem:
        parts.append(f"= nfdump; collector exit 0 ({summary[0]} datagrams, {summary[1]} records, 0 decode errors)")
    return Step("netflow", same and not problem and rc == 0 and summary == expected_summary, "; ".join(parts), rows)


def _log_since(path: Path, offset: int) -> str:
    # The log is appended to by every run: only what this run wrote counts.
    try:
        return path.read_bytes()[offset:].decode(errors="replace")
    except OSError:
        return ""
