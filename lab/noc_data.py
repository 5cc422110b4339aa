"""Lab data for the NOC page: the textfile metrics of both sites' batch jobs, written by the real writers.

``write(textfile_dir, now)`` writes what node_exporter's textfile collector would find on the two
sites' hosts after a night of work: backups (Siwei's fresh; Fengshan's off-site copy 30 h old, so
the page shows a late backup), an LDAP audit of each site's directory with findings, and the
security-log shipper's metrics. Only metrics: no event, no secret.
"""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from citydc.backup import metrics as backup_metrics
from citydc.seclog.metrics import SeclogMetrics, write_textfile
from citydc.sso import metrics as audit_metrics

__all__ = ["BACKUP_JOBS", "write"]

HOUR = 3600.0
# job -> site, and the age in hours of each step's last success (backup and off-site copy).
BACKUP_JOBS = {"siwei-vm-images": ("siwei", {"local/backup": 3, "offsite/copy": 2.5}),
               "fengshan-fileserver": ("fengshan", {"local/backup": 4, "offsite/copy": 30})}


def backup_states(now: float) -> list[dict]:
    states = []
    for job, (_, steps) in BACKUP_JOBS.items():
        states.append({"job": job, "steps": {
            key: {"last_attempt": now - min(age, 2) * HOUR, "last_success": now - age * HOUR,
                  "status": "success" if age < 26 else "failure", "duration_seconds": 120.0}
            for key, age in steps.items()}, "repos": {}, "check_cycle": {}, "drill": {}})
    return states


def audit_state(now: float) -> dict[str, dict]:
    from citydc.sso.rules import RULES

    rules = list(RULES)
    return {
        "ldap-siwei": {"site": "siwei", "last_attempt": now - 5 * HOUR, "last_success": now - 5 * HOUR,
                       "result": {"by_severity": {"critical": 1, "high": 3, "medium": 12},
                                  "by_rule": {rules[0]: 1, rules[1]: 3, rules[2]: 12}, "accepted": 2,
                                  "score": 71, "accounts": 100023, "duration_seconds": 41.0}},
        "ldap-fengshan": {"site": "fengshan", "last_attempt": now - 5 * HOUR, "last_success": now - 5 * HOUR,
                          "result": {"by_severity": {"medium": 4, "low": 9},
                                     "by_rule": {rules[2]: 4, rules[3]: 9}, "accepted": 0,
                                     "score": 93, "accounts": 20011, "duration_seconds": 12.0}},
    }


def write(textfile_dir: Path, now: float | None = None) -> list[Path]:
    """Given node_exporter's textfile directory, write the lab's backup, audit and security-log metrics of
    both sites; return the files written."""
    now = time.time() if now is None else now
    paths = [backup_metrics.write(textfile_dir, backup_states(now), {j: s for j, (s, _) in BACKUP_JOBS.items()}),
             audit_metrics.write(textfile_dir, audit_state(now))]
    for site in ("siwei", "fengshan"):
        reg = CollectorRegistry()
        m = SeclogMetrics(reg, site=site)
        m.count_delivered_sites({site: 1200}, now - 30)
        m.set_backlog(3 if site == "siwei" else 0, 900 if site == "siwei" else 0)
        path = textfile_dir / f"citydc_seclog_{site}.prom"
        write_textfile(reg, path)
        paths.append(path)
    return paths
