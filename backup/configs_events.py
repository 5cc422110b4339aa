"""ECS security events of the device config backup: pure builders over citydc.seclog.make_event.

Mapping (DESIGN.md): a changed config is ``configuration``/``change`` (``device-config-changed``); a
device that differs from its golden config is ``state`` ``configuration``/``change``
(``config-drift``); running ≠ startup is ``device-config-unsaved``; a device that could not be
backed up is ``device-config-backup`` with outcome failure; a host key that changed is an alert
(``device-host-key-changed``), a key pinned at first contact ``device-host-key-pinned``. Every text
in them comes from masked configs; ids come from the run id and device, so a retried emit is
stored once.
"""

from __future__ import annotations

from collections.abc import Sequence

from citydc.seclog import make_event

__all__ = ["DATASET", "changed", "drift", "failed", "host_key_changed", "host_key_pinned", "unsaved"]

DATASET = "citydc.device_config"


def changed(*, device: str, site: str, platform: str, run_id: str, commit: str, added: int, removed: int,
            sections: Sequence[str], host: str) -> dict:
    touched = ", ".join(sections) or "-"
    return make_event(
        action="device-config-changed", dataset=DATASET, kind="event", category=["configuration"], type=["change"],
        outcome="success", site=site, host=host, id_key=f"{run_id}:{device}:changed",
        message=f"configuration of {device} ({site}) changed: +{added} -{removed} lines; sections: {touched}",
        details={"device": device, "platform": platform, "run_id": run_id, "commit": commit,
                 "lines_added": added, "lines_removed": removed, "sections": list(sections)})


def unsaved(*, device: str, site: str, platform: str, run_id: str, added: int, removed: int,
            sections: Sequence[str], host: str) -> dict:
    touched = ", ".join(sections) or "-"
    return make_event(
        action="device-config-unsaved", dataset=DATASET, kind="state", category=["configuration"], type=["info"],
        outcome="unknown", site=site, host=host, id_key=f"{run_id}:{device}:unsaved",
        message=f"{device} ({site}) runs a config that is not saved to startup: +{added} -{removed} lines; "
                f"sections: {touched}",
        details={"device": device, "platform": platform, "run_id": run_id, "lines_added": added,
                 "lines_removed": removed, "sections": list(sections)})


def drift(*, device: str, site: str, platform: str, run_id: str, golden: str, added: int, removed: int,
          sections: Sequence[str], host: str) -> dict:
    touched = ", ".join(sections) or "-"
    return make_event(
        action="config-drift", dataset=DATASET, kind="state", category=["configuration"], type=["change"],
        outcome="unknown", site=site, host=host, id_key=f"{run_id}:{device}:drift",
        message=f"{device} ({site}) differs from its golden config {golden}: +{added} -{removed} lines; "
                f"sections: {touched}",
        details={"device": device, "platform": platform, "run_id": run_id, "golden": golden,
                 "lines_added": added, "lines_removed": removed, "sections": list(sections)})


def failed(*, device: str, site: str, platform: str, run_id: str, reason: str, error: str, address: str,
           host: str) -> dict:
    return make_event(
        action="device-config-backup", dataset=DATASET, kind="event", category=["configuration"], type=["access"],
        outcome="failure", site=site, host=host, id_key=f"{run_id}:{device}:failed", error=error,
        message=f"config backup of {device} ({site}) failed: {reason}: {error}",
        details={"device": device, "platform": platform, "run_id": run_id, "reason": reason, "address": address})


def host_key_changed(*, device: str, site: str, run_id: str, error: str, address: str, host: str) -> dict:
    return make_event(
        action="device-host-key-changed", dataset=DATASET, kind="alert", category=["network"], type=["info"],
        outcome="failure", site=site, host=host, id_key=f"{run_id}:{device}:host-key", severity=73,
        message=f"SSH host key of {device} ({site}) at {address} changed; not accepted, nothing sent: {error}",
        details={"device": device, "run_id": run_id, "address": address})


def host_key_pinned(*, device: str, site: str, run_id: str, key_type: str, fingerprint: str, address: str,
                    host: str) -> dict:
    return make_event(
        action="device-host-key-pinned", dataset=DATASET, kind="event", category=["configuration"],
        type=["creation"], outcome="success", site=site, host=host, id_key=f"{run_id}:{device}:pinned",
        message=f"SSH host key of {device} ({site}) at {address} pinned at first contact: {key_type} {fingerprint}",
        details={"device": device, "run_id": run_id, "address": address, "key_type": key_type,
                 "fingerprint": fingerprint})
