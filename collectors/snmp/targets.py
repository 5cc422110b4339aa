"""Prometheus ``file_sd`` targets from the device inventory, and the matching scrape config.

One target group per (site, role, module, auth): the device's address is ``__address__``; the
relabelling in ``scrape_config()`` moves it to ``?target=``, copies module and auth into the
query string and points ``__address__`` at the exporter — the snmp_exporter multi-target pattern.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from citydc import atomicfile
from citydc.config.models import Device

__all__ = ["file_sd", "scrape_config", "write_atomic"]


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
    """Given the file_sd path and the exporter's host:port, return a Prometheus scrape_configs entry (YAML)."""
    return f"""\
  - job_name: {job_name}
    scrape_interval: {scrape_interval}
    scrape_timeout: {scrape_timeout}
    metrics_path: /snmp
    # The exporter sets site and device on every sample from citydc.yaml; they equal the target labels.
    honor_labels: true
    file_sd_configs:
      - files: ["{file_sd_path}"]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {exporter_address}
"""


def write_atomic(path: Path, groups: list[dict]) -> None:
    """Write the file_sd JSON through a temporary file and rename, so Prometheus never reads half a file."""
    # 0644: Prometheus usually runs as another user, and the file holds no secret.
    atomicfile.write(path, json.dumps(groups, indent=2, ensure_ascii=False) + "\n", mode=0o644)
