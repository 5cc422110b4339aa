"""One operations cycle on the lab, as a newcomer would run it by hand.

Every step drives the real ``citydc`` command (through ``citydc.execute``) or the real exporter
over HTTP against the lab's services, so what the demo shows is what the product does:
SNMP polls of the simulated switches of both sites, NetFlow v5/v9/IPFIX exports recorded from the
lab's softflowd, replayed to the NetFlow collector and reconciled with nfdump's totals, a backup of
each site to its own repository with an off-site copy to the other site and a restore drill, then
the security log shipped and its hash chains verified.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from citydc import execute
from citydc.config.loader import LoadedConfig
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, LabError, wait_until

__all__ = ["DEMO_SERVICES", "Step", "backup_steps", "prepare_data", "security_log_steps", "snmp_step"]

# The lab services the cycle uses; Elasticsearch is not among them (the demo runs on SQLite).
DEMO_SERVICES = ("snmpd", "snmpsim", "snmpsim-switches", "sftp", "softflowd-v5", "softflowd-v9", "softflowd-ipfix")


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


def http_text(url: str, timeout: float = 15) -> str:
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
            wait_until(lambda: bool(http_text(f"{base}/metrics", 2)), 30, "the SNMP exporter did not answer")
        except LabError as exc:
            return Step("snmp", False, f"{exc}; see {ctx.service_dir('demo') / 'snmp.log'}")

        def scrape(device) -> dict:
            row = {"device": device.name, "site": device.site, "address": device.address}
            try:
                text = http_text(f"{base}/snmp?target={device.address}")
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
                             "verified_files": d.get("verified_files"), "error": st.get("error") or ""})
            if rc != 0:
                ok = False
                # the reason of the first step that did not succeed, in restic's or the tool's words
                why = next((f"{st['step']} ({st['repo']}): {st.get('error') or st['status']}"
                            for st in report.get("steps", []) if st.get("status") != "success"), "")
                notes.append(f"{action}: {report.get('status')} {why}".strip())
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
