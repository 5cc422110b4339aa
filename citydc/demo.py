"""One operations cycle on the lab, as a newcomer would run it by hand.

Every step drives the real ``citydc`` command (through ``citydc.execute``) or the real exporter
over HTTP against the lab's services, so what the demo shows is what the product does:
SNMP polls of the simulated switches of both sites, real NetFlow v5/v9/IPFIX captures replayed to
the NetFlow collector and reconciled with nfdump's totals, a backup of each site to its own repository
with an off-site copy to the other site and a restore drill, then the security log shipped and its
hash chains verified.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from citydc import execute
from citydc.collectors.netflow.pcapfile import PcapError, udp_payloads
from citydc.config.loader import LoadedConfig
from citydc.config.models import Config
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, LabError, wait_until

__all__ = ["DEMO_SERVICES", "NETFLOW_CAPTURES", "Step", "backup_steps", "netflow_step", "prepare_data",
           "security_log_steps", "snmp_step"]

# The lab services the cycle uses; Elasticsearch is not among them (the demo runs on SQLite).
DEMO_SERVICES = ("snmpd", "snmpsim", "snmpsim-switches", "sftp")


@dataclass
class Step:
    step: str
    ok: bool
    detail: str
    rows: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"step": self.step, "ok": self.ok, "detail": self.detail, "rows": self.rows}


def citydc_argv(config: Path, *args: str) -> list[str]:
    """Return argv running this installation's citydc on ``config``."""
    return [sys.executable, "-m", "citydc.cli.main", "-c", str(config), *args]


def prepare_data(root: Path, seed: int = 7) -> None:
    """Write the demo's source data (an LDAP export, device configs) unless it exists.

    The data stays between runs, so a second demo shows an incremental backup.
    """
    ldap = root / "data" / "siwei-ldap"
    if not (ldap / "directory.ldif").exists():
        ldap.mkdir(parents=True, exist_ok=True)
        rng = random.Random(seed)  # noqa: S311 - sample data, not cryptography
        units = ["civil-affairs", "police", "fire", "health", "it"]
        lines = ["dn: dc=city,dc=example", "objectClass: domain", "dc=city", ""]
        for i in range(2000):
            ou = units[i % len(units)]
            lines += [f"dn: uid=user{i:05d},ou={ou},dc=city,dc=example", "objectClass: inetOrgPerson",
                      f"uid: user{i:05d}", f"cn: User {i}", f"sn: {rng.choice(['Chen', 'Lin', 'Huang', 'Chang'])}",
                      f"mail: user{i:05d}@city.example", ""]
        (ldap / "directory.ldif").write_text("\n".join(lines), encoding="utf-8")
        (ldap / "scratch.tmp").write_text("excluded by the job's excludes\n")
    configs = root / "data" / "fengshan-configs"
    if not configs.exists():
        configs.mkdir(parents=True)
        for k, name in enumerate(("sw-fengshan-acc1", "sw-fengshan-acc2", "sw-fengshan-old1",
                                  "sw-fengshan-core1", "fw-fengshan-edge1", "lb-fengshan-1", "sw-fengshan-dmz1")):
            body = [f"hostname {name}", "!"]
            body += [f"interface GigabitEthernet1/0/{p}\n description port {p}\n switchport access vlan {10 + k}\n!"
                     for p in range(1, 49)]
            (configs / f"{name}.cfg").write_text("\n".join(body) + "\nend\n")


def _get(url: str, timeout: float = 15) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return resp.read().decode()


_UP = re.compile(r"^citydc_snmp_up\{[^}]*\} (\S+)$", re.M)
_RX = re.compile(r"^citydc_snmp_if_receive_bytes_total\{", re.M)
_VARBINDS = re.compile(r"^citydc_snmp_scrape_varbinds\{[^}]*\} (\S+)$", re.M)
_REASON = re.compile(r'^citydc_snmp_scrape_errors\{[^}]*reason="([^"]+)"[^}]*\} [1-9]', re.M)


def snmp_step(loaded: LoadedConfig, ctx: LabContext) -> Step:
    """Start ``citydc collect snmp``, scrape every device of the config through it, stop it."""
    listen = loaded.config.snmp.listen
    base = f"http://{listen}"
    proc = processes.spawn(citydc_argv(loaded.path, "collect", "snmp"), log_path=ctx.service_dir("demo") / "snmp.log")
    rec = processes.record(proc.pid, "citydc collect snmp")
    try:
        try:
            wait_until(lambda: bool(_get(f"{base}/metrics", 2)), 30, "the SNMP exporter did not answer")
        except LabError as exc:
            return Step("snmp", False, f"{exc}; see {ctx.service_dir('demo') / 'snmp.log'}")

        def scrape(device) -> dict:
            row = {"device": device.name, "site": device.site, "address": device.address}
            try:
                text = _get(f"{base}/snmp?target={device.address}")
            except (urllib.error.URLError, OSError) as exc:
                return {**row, "up": 0, "interfaces": 0, "varbinds": 0, "reason": str(exc)}
            up = _UP.search(text)
            varbinds = _VARBINDS.search(text)
            reasons = sorted(set(_REASON.findall(text)))
            return {**row, "up": int(float(up.group(1))) if up else 0, "interfaces": len(_RX.findall(text)),
                    "varbinds": int(float(varbinds.group(1))) if varbinds else 0, "reason": ",".join(reasons)}

        with ThreadPoolExecutor(max_workers=8) as pool:
            rows = list(pool.map(scrape, loaded.config.devices))
    finally:
        processes.stop([rec])
    up = sum(r["up"] for r in rows)
    return Step("snmp", up == len(rows),
                f"{up}/{len(rows)} devices up, {sum(r['interfaces'] for r in rows)} interfaces, "
                f"{sum(r['varbinds'] for r in rows)} varbinds via {base}/snmp", rows)


# --- NetFlow: real captures replayed to the real collector -------------------------------------------

# The shared softflowd captures and their nfdump sidecars; the project always runs with shared/ beside
# the repository (citydc/ is at the repository root in the editable install the demo runs from).
NETFLOW_CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "netflow"
# v5 and v9 both reach siwei from the one exporter, and the collector's byte counters carry no
# version label, so v9 goes in a second phase: each format's bytes are a phase's difference.
NETFLOW_PHASES: tuple[tuple[tuple[str, str], ...], ...] = ((("v5", "siwei"), ("ipfix", "fengshan")),
                                                           (("v9", "siwei"),))
NETFLOW_DURATION = 60  # seconds the collector runs at most; the step needs a few
_FLUSH_SECONDS = 1.0  # the collector moves decoded sums to its counters once a second
_SUMMARY = re.compile(r"^netflow: (\d+) datagrams, (\d+) records, (\d+) decode errors$", re.M)
_TRAFFIC = ("citydc_netflow_records_total", "citydc_netflow_protocol_bytes_total", "citydc_netflow_agency_bytes_total")


@dataclass(frozen=True)
class Capture:
    """One shared capture: its UDP payloads and what nfdump decoded from them (the sidecar)."""

    fmt: str
    payloads: tuple[bytes, ...]
    flows: int
    bytes: int


def load_captures(directory: Path, formats: tuple[str, ...] = ("v5", "v9", "ipfix")) -> dict[str, Capture]:
    """Given the captures directory, return format -> Capture for softflowd-<format>-shared.{pcap,json}.

    Raise LabError naming the file and what was expected if a file is missing or unreadable.
    """
    if not directory.is_dir():
        raise LabError(f"NetFlow captures not found: {directory} is missing (expected the shared/ folder "
                       "beside the repository, with data/netflow/softflowd-*-shared.pcap)")
    out = {}
    for fmt in formats:
        pcap, sidecar = (directory / f"softflowd-{fmt}-shared.{ext}" for ext in ("pcap", "json"))
        try:
            payloads = tuple(p for _, _, p in udp_payloads(pcap))
            meta = json.loads(sidecar.read_text())
            out[fmt] = Capture(fmt, payloads, int(meta["flows"]), int(meta["bytes"]))
        except (OSError, PcapError) as exc:
            raise LabError(f"NetFlow capture {fmt}: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(f"{sidecar}: expected JSON with integer 'flows' and 'bytes' ({exc!r})") from None
        if not payloads:
            raise LabError(f"{pcap}: no UDP datagram in the capture")
    return out


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


def netflow_step(loaded: LoadedConfig, ctx: LabContext, captures_dir: Path = NETFLOW_CAPTURES) -> Step:
    """Given the example config and the lab, run ``citydc collect netflow``, replay the shared
    softflowd captures to its listeners, and return a Step that is ok only when records and bytes
    per format equal nfdump's totals for the same datagrams and the collector exited 0 with its summary."""
    try:
        captures = load_captures(captures_dir)
    except LabError as exc:
        return Step("netflow", False, str(exc))
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
            return bool(_get(f"{base}/metrics", 2))

        wait_until(answers, 30, "the NetFlow collector did not answer")

        def scrape() -> Samples:
            return parse_samples(_get(f"{base}/metrics", 5))

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


def _citydc_json(loaded: LoadedConfig, *args: str, timeout: float = 600) -> tuple[int, dict]:
    res = execute.run("citydc", citydc_argv(loaded.path, *args, "--json"), env=dict(ports.LAB_ENV), timeout=timeout)
    try:
        return res.rc, json.loads(res.stdout)
    except ValueError:
        return res.rc, {"status": "failure", "error": res.stderr.strip()[-300:]}


def backup_steps(loaded: LoadedConfig, log: Callable[[str], None]) -> list[Step]:
    """For every backup job: init the repositories if needed, run (backup + off-site copy), drill."""
    steps = []
    for job in loaded.config.backup.jobs:
        rows, ok, notes = [], True, []
        for action in ("init", "run", "drill"):
            log(f"backup {action} {job.name}")
            rc, report = _citydc_json(loaded, "backup", action, job.name)
            for st in report.get("steps", []):
                d = st.get("details") or {}
                rows.append({"job": job.name, "step": st["step"], "repo": st["repo"], "status": st["status"],
                             "snapshot": st.get("snapshot_id") or "", "bytes_added": d.get("bytes_added"),
                             "verified_files": d.get("verified_files")})
            if rc != 0:
                ok = False
                notes.append(f"{action}: {report.get('status')} {report.get('error', '')}".strip())
        drills = [r for r in rows if r["step"] == "drill" and r["status"] == "success"]
        detail = (f"{job.site} → local + off-site ({job.offsite_repo.site if job.offsite_repo else '-'}); "
                  f"drill verified {sum(r['verified_files'] or 0 for r in drills)} files")
        steps.append(Step(f"backup {job.name}", ok, detail if ok else "; ".join(notes), rows))
    return steps


def security_log_steps(loaded: LoadedConfig) -> list[Step]:
    """Ship the spool, verify the chains, and count the events by action."""
    res = execute.run("citydc", citydc_argv(loaded.path, "log", "ship"), timeout=600)
    shipped = Step("security log ship", res.rc == 0, _last_line(res) or "spool delivered to the store")
    res = execute.run("citydc", citydc_argv(loaded.path, "log", "verify"), timeout=300)
    verified = Step("security log verify", res.rc == 0, _last_line(res))
    rc, rows = _citydc_json(loaded, "log", "stats", "--by", "event.action")
    rows = rows if isinstance(rows, list) else []
    counts = ", ".join(f"{r.get('event.action') or '?'}={r.get('count')}" for r in rows)
    return [shipped, verified, Step("security log stats", rc == 0, counts or "no events", rows)]


def _last_line(res: execute.Result) -> str:
    text = (res.stdout.strip() or res.masked_stderr().strip())
    return text.splitlines()[-1] if text else f"exit {res.rc}"


def elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.1f} s"
