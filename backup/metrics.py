"""Backup metrics in node_exporter's textfile collector format, rendered from the jobs' saved state.

Batch jobs cannot be scraped while they run, so each command rewrites one file
(``<textfile_dir>/citydc_backup.prom``) atomically; node_exporter serves it. Labels are bounded:
site, job (configured names), repo (local|offsite), step (backup|copy|check|prune|drill) and
outcome (success|partial|failure).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from citydc import atomicfile

__all__ = ["FILENAME", "registry_from_states", "write", "write_registry"]

FILENAME = "citydc_backup.prom"
OUTCOMES = ("success", "partial", "failure")


def registry_from_states(states: Iterable[Mapping[str, Any]], sites: Mapping[str, str]) -> CollectorRegistry:
    """Given job states and {job: site}, return a fresh registry holding the backup gauges."""
    reg = CollectorRegistry(auto_describe=True)
    step_labels = ["site", "job", "repo", "step"]
    repo_labels = ["site", "job", "repo"]
    attempt = Gauge("citydc_backup_last_attempt_timestamp_seconds", "Last time the step was attempted.",
                    step_labels, registry=reg)
    success = Gauge("citydc_backup_last_success_timestamp_seconds", "Last time the step succeeded.",
                    step_labels, registry=reg)
    outcome = Gauge("citydc_backup_last_outcome", "Outcome of the last attempt (1 for the current outcome).",
                    [*step_labels, "outcome"], registry=reg)
    duration = Gauge("citydc_backup_last_duration_seconds", "Duration of the last attempt.", step_labels,
                     registry=reg)
    added = Gauge("citydc_backup_last_added_bytes", "Data added by the last backup (uncompressed).", repo_labels,
                  registry=reg)
    snapshots = Gauge("citydc_backup_snapshots", "Snapshots of the job in the repository.", repo_labels,
                      registry=reg)
    size = Gauge("citydc_backup_repository_size_bytes", "Raw data size of the repository.", repo_labels,
                 registry=reg)
    latest = Gauge("citydc_backup_latest_snapshot_size_bytes",
                   "Size of the files in the job's last snapshot (restic's backup summary, total_bytes_processed).",
                   repo_labels, registry=reg)
    drill_files = Gauge("citydc_backup_drill_verified_files", "Files the last drill restored and verified.",
                        repo_labels, registry=reg)
    drill_bytes = Gauge("citydc_backup_drill_verified_bytes", "Bytes the last drill restored and verified.",
                        repo_labels, registry=reg)
    drill_failed = Gauge("citydc_backup_drill_failed_files", "Files the last drill could not restore or verify.",
                         repo_labels, registry=reg)
    cycle = Gauge("citydc_backup_check_cycle_progress_ratio",
                  "Share of the read-data cycle done (every pack is read once per cycle).", repo_labels, registry=reg)
    for st in states:
        job = str(st.get("job", ""))
        site = sites.get(job)
        if site is None:
            continue  # a job no longer configured: its series disappear
        for key, step in st.get("steps", {}).items():
            repo, _, name = key.partition("/")
            labels = (site, job, repo, name)
            if step.get("last_attempt") is not None:
                attempt.labels(*labels).set(step["last_attempt"])
            if step.get("last_success") is not None:
                success.labels(*labels).set(step["last_success"])
            for oc in OUTCOMES:
                outcome.labels(*labels, oc).set(1 if step.get("status") == oc else 0)
            duration.labels(*labels).set(step.get("duration_seconds") or 0)
            if name == "backup" and step.get("bytes_added") is not None:
                added.labels(site, job, repo).set(step["bytes_added"])
        for repo, info in st.get("repos", {}).items():
            if info.get("snapshots") is not None:
                snapshots.labels(site, job, repo).set(info["snapshots"])
            if info.get("size_bytes") is not None:
                size.labels(site, job, repo).set(info["size_bytes"])
            if info.get("latest_snapshot_bytes") is not None:
                latest.labels(site, job, repo).set(info["latest_snapshot_bytes"])
        for repo, drill in st.get("drill", {}).items():
            drill_files.labels(site, job, repo).set(drill.get("verified_files", 0))
            drill_bytes.labels(site, job, repo).set(drill.get("verified_bytes", 0))
            drill_failed.labels(site, job, repo).set(drill.get("failed_files", 0))
        for repo, cyc in st.get("check_cycle", {}).items():
            total = cyc.get("total") or 1
            cycle.labels(site, job, repo).set(len(cyc.get("read", [])) / total)
    return reg


def write(textfile_dir: Path, states: Iterable[Mapping[str, Any]], sites: Mapping[str, str]) -> Path:
    """Render the states and replace ``<textfile_dir>/citydc_backup.prom`` atomically; return its path."""
    return write_registry(textfile_dir, FILENAME, registry_from_states(states, sites))


def write_registry(textfile_dir: Path, filename: str, registry: CollectorRegistry) -> Path:
    """Render a registry and replace ``<textfile_dir>/<filename>`` atomically; return its path."""
    if not textfile_dir.is_dir():
        # node_exporter runs as its own user and must list this directory; citydc's umask (077) would
        # make it private. A directory that exists keeps the mode its owner gave it.
        textfile_dir.mkdir(parents=True)
        textfile_dir.chmod(0o755)
    path = textfile_dir / filename
    # 0644: node_exporter runs as its own user; the file holds no secret.
    atomicfile.write(path, generate_latest(registry), mode=0o644)
    return path
