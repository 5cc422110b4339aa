"""Prometheus ``file_sd`` targets from the device inventory, and the matching scrape config.

One target group per (site, role, module, auth): the device's address is ``__address__``; the
relabelling in ``scrape_config()`` moves it to ``?target=``, copies module and auth into the
query string and points ``__address__`` at the exporter — the snmp_exporter multi-target pattern.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from citydc import atomicfile
from citydc.config.models import Device

__all__ = ["check_scrape_settings", "duration_seconds", "file_sd", "scrape_config", "write_atomic"]

# Prometheus' duration syntax (model.ParseDuration): units largest first, each at most once.
_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNIT_SECONDS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def duration_seconds(text: str) -> float:
    """Given a Prometheus duration (``30s``, ``1m30s``), return its seconds. Raise ValueError if it is
    not one Prometheus accepts, or is zero."""
    found = _DURATION.match(text) if text else None
    if found is None:
        raise ValueError(f"expected a Prometheus duration such as 30s or 1m30s, got {text!r}")
    seconds = sum(int(n) * unit for n, unit in zip(found.groups(), _UNIT_SECONDS, strict=True) if n)
    if seconds <= 0:
        raise ValueError(f"expected a duration above zero, got {text!r}")
    return seconds


def check_scrape_settings(scrape_interval: str, scrape_timeout: str) -> str | None:
    """Given the scrape interval and timeout, return what Prometheus would refuse in them, or None."""
    try:
        interval = duration_seconds(scrape_interval)
    except ValueError as exc:
        return f"--scrape-interval: {exc}"
    try:
        timeout = duration_seconds(scrape_timeout)
    except ValueError as exc:
        return f"--scrape-timeout: {exc}"
    if timeout > interval:
        return (f"--scrape-timeout {scrape_timeout} is longer than --scrape-interval {scrape_interval}: "
                "Prometheus refuses such a scrape config")
    return None


def file_sd(devices: Iterable[Device]) -> list[dict]:
    """Given devices, return file_sd target groups (labels site, role, device; module and auth as params).

    Devices without an SNMP auth profile are left out: they cannot be polled.
    """
    groups = []
    for dev in sorted(devices, key=lambda d: (d.site, d.name)):
        if not dev.snmp_auth:
            continue
        groups.append({"targets": [dev.address],
                       "labels": {"site": dev.site, "role": dev.role, "device": dev.name,
                                  "__param_module": dev.snmp_module, "__param_auth": dev.snmp_auth}})
    return groups


def scrape_config(file_sd_path: str | Path, exporter_address: str, job_name: str = "citydc_snmp",
                  scrape_interval: str = "30s", scrape_timeout: str = "20s") -> str:
    """Given the file_sd path and the exporter's host:port, return a Prometheus scrape_configs entry (YAML).

    The path and the address are quoted (JSON strings are YAML): ``[::1]:9116`` unquoted is a YAML list."""
    return f"""\
  - job_name: {job_name}
    scrape_interval: {scrape_interval}
    scrape_timeout: {scrape_timeout}
    metrics_path: /snmp
    # The exporter sets site and device on every sample from citydc.yaml; they equal the target labels.
    honor_labels: true
    file_sd_configs:
      - files: [{json.dumps(str(file_sd_path))}]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {json.dumps(exporter_address)}
"""


def write_atomic(path: Path, groups: list[dict]) -> None:
    """Write the file_sd JSON through a temporary file and rename, so Prometheus never reads half a file."""
    # 0644: Prometheus usually runs as another user, and the file holds no secret.
    atomicfile.write(path, json.dumps(groups, indent=2, ensure_ascii=False) + "\n", mode=0o644)
