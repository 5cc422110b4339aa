"""``citydc backup configs``: fetch device configs, store them in git, report changes, drift and failures.

Flow: config → :func:`targets` (devices with a login, secrets resolved) → a bounded thread pool of
:func:`citydc.backup.configs_fetch.fetch` → as each device answers, in this thread: strip volatile
lines and mask secrets (``configs_rules``), compare with the stored file, commit a changed one
(``configs_repo``), compare running with startup (unsaved changes) and with the golden config
(drift), and emit its events at once; at the end pin the host keys seen at first contact, save the
per-device state and write the textfile metrics. A device that fails is a result and an event; the
run goes on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge

from citydc import atomicfile
from citydc.backup import configs_events as ev
from citydc.backup.configs_fetch import Fetched, FetchFailed, Target, fetch, host_key_name
from citydc.backup.configs_repo import ConfigRepo, GitFailed, KnownHosts
from citydc.backup.configs_rules import diff_summary, mask, strip, unified_diff
from citydc.backup.metrics import write_registry
from citydc.config.models import Config, Device
from citydc.execute import mask as mask_values
from citydc.hostport import parse_host_port
from citydc.secrets import SecretUnavailable

__all__ = ["METRICS_FILE", "ConfigsError", "DeviceResult", "RunResult", "masked_diff", "run", "targets"]

log = logging.getLogger(__name__)
METRICS_FILE = "citydc_device_config.prom"


class ConfigsError(RuntimeError):
    """A usage or config problem found before anything runs (unknown device, unreadable secret)."""


@dataclass
class DeviceResult:
    device: str
    site: str
    platform: str
    status: str  # new, changed, unchanged, failure
    reason: str = ""
    error: str = ""
    added: int = 0
    removed: int = 0
    sections: list[str] = field(default_factory=list)
    unsaved: bool | None = None
    drift: bool | None = None
    commit: str = ""
    seconds: float = 0.0
    # what the unsaved/drift events were about (digests of masked texts): an event is emitted when they change
    unsaved_digest: str = field(default="", repr=False)
    drift_digest: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return self.status != "failure"


@dataclass
class RunResult:
    run_id: str
    started: float
    seconds: float
    results: list[DeviceResult]

    @property
    def failed(self) -> list[DeviceResult]:
        return [r for r in self.results if not r.ok]

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "started": datetime.fromtimestamp(self.started, UTC).isoformat(),
                "seconds": round(self.seconds, 3),
                "devices": [{k: v for k, v in asdict(r).items() if not k.endswith("_digest")} for r in self.results]}


def _reveal(ref, what: str) -> str | None:
    if ref is None:
        return None
    try:
        return ref.reveal()
    except SecretUnavailable as exc:
        raise ConfigsError(f"{what}: {exc}") from None


def _target(config: Config, dev: Device) -> Target:
    login = config.device_logins[dev.login or ""]
    if dev.management_address:
        host, port = parse_host_port(dev.management_address, default_port=login.port)
    else:
        host, port = parse_host_port(dev.address, default_port=161)[0], login.port
    return Target(
        name=dev.name, site=dev.site, platform=dev.netmiko_device_type or "", host=host, port=port,
        username=login.username, password=_reveal(login.password, f"device_logins.{dev.login}.password"),
        key_file=login.key_file, enable_secret=_reveal(login.enable_secret, f"device_logins.{dev.login}.enable_secret"),
        timeout=dev.timeout_seconds or login.timeout_seconds,
        running_command=dev.config_commands.get("running"), startup_command=dev.config_commands.get("startup"))


def targets(config: Config, *, site: str | None = None, device: str | None = None) -> list[Target]:
    """Given the config and optional filters, return the devices to back up (those with a login).
    Raise ConfigsError for an unknown site or device, a device without a login, or a secret that
    cannot be read."""
    devices = [d for d in config.devices if d.login]
    if site is not None:
        known = sorted({s.id for s in config.sites})
        if site not in known:
            raise ConfigsError(f"unknown site {site!r} (known: {', '.join(known)})")
        devices = [d for d in devices if d.site == site]
    if device is not None:
        match = [d for d in config.devices if d.name == device]
        if not match:
            raise ConfigsError(f"unknown device {device!r} (known: {', '.join(d.name for d in config.devices)})")
        if not match[0].login:
            raise ConfigsError(f"device {device!r} has no login profile (devices[].login), so it cannot be backed up")
        devices = [d for d in devices if d.name == device]
    return [_target(config, d) for d in devices]


def mask_key(state_dir: Path) -> bytes:
    """Return the key of the masked fingerprints (created once, 32 random bytes, mode 0600)."""
    path = state_dir / "mask.key"
    try:
        return base64.b64decode(path.read_text().strip())
    except FileNotFoundError:
        key = os.urandom(32)
        atomicfile.write(path, base64.b64encode(key).decode() + "\n", mode=0o600)
        return key


def _load_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def _golden(settings, repo: ConfigRepo, relpath: str, name: str, platform: str, key: bytes,
            secrets: Iterable[str]) -> tuple[str, str] | None:
    if settings.golden_dir is not None:
        path = Path(settings.golden_dir) / f"{name}.cfg"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return mask(strip(text, platform), platform, key, secrets)[0], str(path)
    if settings.golden_ref:
        text = repo.show(settings.golden_ref, relpath)
        return (mask(text, platform, key, secrets)[0], f"{settings.golden_ref}:{relpath}") if text else None
    return None


def run(config: Config, selected: list[Target], *, emit: Callable[[list[dict]], None],
        textfile_dir: Path | None = None, progress: Callable[[DeviceResult], None] | None = None) -> RunResult:
    """Given the config and the targets, back them up; return the per-device results (never raises for a
    device; raises GitFailed or OSError when the repository itself cannot be written)."""
    settings = config.backup.configs
    started, t0 = time.time(), time.monotonic()
    run_id = uuid.uuid4().hex[:16]
    host = socket.gethostname()
    state_dir = Path(settings.state_dir)
    masked_store = settings.store_secrets == "masked"
    repo = ConfigRepo(Path(settings.repo_dir), private=not masked_store)
    repo.ensure()
    key = mask_key(state_dir)
    known = KnownHosts(Path(settings.known_hosts))
    state_path = state_dir / "devices.json"
    state = _load_state(state_path)
    results: list[DeviceResult] = []
    to_pin: list[tuple[str, tuple[str, str]]] = []
    pinned_events: list[dict] = []
    workers = max(1, min(settings.max_workers, len(selected)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="configs") as pool:
        futures: dict[Future, tuple[Target, float]] = {}
        for t in selected:
            futures[pool.submit(_timed, t, known.get(host_key_name(t.host, t.port)))] = (t, time.monotonic())
        for fut in as_completed(futures):
            t, _ = futures[fut]
            outcome, seconds = fut.result()
            prev = state.get(t.name, {})
            events: list[dict] = []
            if isinstance(outcome, FetchFailed):
                res = DeviceResult(t.name, t.site, t.platform, "failure", outcome.reason,
                                   mask_values(outcome.message, t.secrets()), seconds=seconds)
                address = f"{t.host}:{t.port}"
                events.append(ev.failed(device=t.name, site=t.site, platform=t.platform, run_id=run_id,
                                        reason=res.reason, error=res.error, address=address, host=host))
                if outcome.reason == "host-key-changed":
                    events.append(ev.host_key_changed(device=t.name, site=t.site, run_id=run_id, error=res.error,
                                                      address=address, host=host))
            else:
                res = _store(t, outcome, repo, key, masked_store, run_id, host, settings, prev, events, started)
                res.seconds = seconds
                name = host_key_name(t.host, t.port)
                if not known.get(name):
                    to_pin.append((name, outcome.host_key))
                    pinned_events.append(ev.host_key_pinned(
                        device=t.name, site=t.site, run_id=run_id, key_type=outcome.host_key[0],
                        fingerprint=_fingerprint(outcome.host_key[1]), address=f"{t.host}:{t.port}", host=host))
            state[t.name] = _device_state(prev, res, started)
            results.append(res)
            log.info("config backup %s (%s): %s %s", t.name, t.site, res.status, res.error)
            if events:
                emit(events)
            if progress is not None:
                progress(res)
    known.pin(to_pin)
    if pinned_events:
        emit(pinned_events)
    atomicfile.write(state_path, json.dumps(state, indent=1, sort_keys=True), mode=0o600)
    if textfile_dir is not None:
        write_registry(textfile_dir, METRICS_FILE, registry(config, state, results))
    order = {t.name: i for i, t in enumerate(selected)}
    results.sort(key=lambda r: order[r.device])
    return RunResult(run_id, started, time.monotonic() - t0, results)


def _timed(target: Target, pinned: list[tuple[str, str]]) -> tuple[Fetched | FetchFailed, float]:
    t0 = time.monotonic()
    try:
        return fetch(target, pinned), time.monotonic() - t0
    except FetchFailed as exc:
        return exc, time.monotonic() - t0


def _fingerprint(b64: str) -> str:
    digest = hashlib.sha256(base64.b64decode(b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _store(t: Target, got: Fetched, repo: ConfigRepo, key: bytes, masked_store: bool, run_id: str, host: str,
           settings, prev: dict, events: list[dict], started: float) -> DeviceResult:
    running = strip(got.running, t.platform)
    masked, _ = mask(running, t.platform, key, t.secrets())
    relpath = repo.file_for(t.site, t.name)
    stored_before = repo.read(relpath)
    old_masked = None if stored_before is None else (
        stored_before if masked_store else mask(stored_before, t.platform, key, t.secrets())[0])
    res = DeviceResult(t.name, t.site, t.platform, "unchanged")
    text = masked if masked_store else running
    if stored_before != text:
        summary = diff_summary(old_masked or "", masked)
        when = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        what = "first backup" if stored_before is None else "running config changed"
        message = (f"{t.name} ({t.site}): {what} at {when}\n\n"
                   f"+{summary.added} -{summary.removed} lines; sections: {', '.join(summary.sections) or '-'}\n"
                   f"device: {t.name}\nsite: {t.site}\nplatform: {t.platform}\nrun: {run_id}\n")
        res.commit = repo.commit_file(relpath, text, message)
        res.added, res.removed, res.sections = summary.added, summary.removed, list(summary.sections)
        if stored_before is None:
            res.status = "new"
        else:
            res.status = "changed"
            events.append(ev.changed(device=t.name, site=t.site, platform=t.platform, run_id=run_id,
                                     commit=res.commit, added=summary.added, removed=summary.removed,
                                     sections=summary.sections, host=host))
    if got.startup is not None:
        startup_masked, _ = mask(strip(got.startup, t.platform), t.platform, key, t.secrets())
        res.unsaved = startup_masked != masked
        digest = hashlib.sha256(startup_masked.encode()).hexdigest()[:16] if res.unsaved else ""
        if res.unsaved and prev.get("unsaved_digest") != digest + _digest(masked):
            s = diff_summary(startup_masked, masked)
            events.append(ev.unsaved(device=t.name, site=t.site, platform=t.platform, run_id=run_id,
                                     added=s.added, removed=s.removed, sections=s.sections, host=host))
        res.unsaved_digest = digest + _digest(masked) if res.unsaved else ""
    golden = _golden(settings, repo, relpath, t.name, t.platform, key, t.secrets())
    if golden is not None:
        golden_text, golden_name = golden
        res.drift = golden_text != masked
        if res.drift:
            res.drift_digest = _digest(golden_text) + _digest(masked)
            if prev.get("drift_digest") != res.drift_digest:
                s = diff_summary(golden_text, masked)
                events.append(ev.drift(device=t.name, site=t.site, platform=t.platform, run_id=run_id,
                                       golden=golden_name, added=s.added, removed=s.removed, sections=s.sections,
                                       host=host))
    return res


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _device_state(prev: dict, res: DeviceResult, started: float) -> dict:
    out = dict(prev)
    out.update({"site": res.site, "last_attempt": started, "status": res.status, "reason": res.reason,
                "error": res.error})
    if res.ok:
        out.update({"last_success": started, "unsaved": res.unsaved, "drift": res.drift,
                    "unsaved_digest": res.unsaved_digest, "drift_digest": res.drift_digest})
        if res.status in ("changed", "new"):
            out["last_change"] = started
    return out


def registry(config: Config, state: dict, results: list[DeviceResult]) -> CollectorRegistry:
    """Given the saved per-device state and this run's results, return the textfile gauges."""
    reg = CollectorRegistry(auto_describe=True)
    labels = ["site", "device"]
    success = Gauge("citydc_device_config_last_success_timestamp_seconds",
                    "Last time the device's config was fetched and stored.", labels, registry=reg)
    attempt = Gauge("citydc_device_config_last_attempt_timestamp_seconds",
                    "Last time the device's config backup was attempted.", labels, registry=reg)
    up = Gauge("citydc_device_config_up", "1 if the last fetch of the device succeeded.", labels, registry=reg)
    unsaved = Gauge("citydc_device_config_unsaved", "1 if running differs from startup at the last fetch.",
                    labels, registry=reg)
    drift = Gauge("citydc_device_config_drift", "1 if the device differs from its golden config.", labels,
                  registry=reg)
    changed = Gauge("citydc_device_config_last_change_timestamp_seconds",
                    "Last time a change of the device's config was stored.", labels, registry=reg)
    failed = Gauge("citydc_device_config_devices_failed", "Devices that failed in the last run.", ["site"],
                   registry=reg)
    changes = Gauge("citydc_device_config_changes_detected", "Devices whose config changed in the last run.",
                    ["site"], registry=reg)
    configured = {d.name: d.site for d in config.devices if d.login}
    for name, st in state.items():
        site = configured.get(name)
        if site is None:
            continue  # a device no longer configured: its series disappear
        if st.get("last_success") is not None:
            success.labels(site, name).set(st["last_success"])
        attempt.labels(site, name).set(st.get("last_attempt", 0))
        up.labels(site, name).set(0 if st.get("status") == "failure" else 1)
        if st.get("unsaved") is not None:
            unsaved.labels(site, name).set(1 if st["unsaved"] else 0)
        if st.get("drift") is not None:
            drift.labels(site, name).set(1 if st["drift"] else 0)
        if st.get("last_change") is not None:
            changed.labels(site, name).set(st["last_change"])
    for site in sorted({s.id for s in config.sites}):
        failed.labels(site).set(sum(1 for r in results if r.site == site and not r.ok))
        changes.labels(site).set(sum(1 for r in results if r.site == site and r.status == "changed"))
    return reg


def masked_diff(config: Config, device: str, rev: str | None = None) -> str:
    """Given a device and optionally a revision, return the masked unified diff of its stored config:
    from ``rev`` to the current file, or, without ``rev``, the last change. Raise ConfigsError."""
    dev = next((d for d in config.devices if d.name == device), None)
    if dev is None:
        raise ConfigsError(f"unknown device {device!r} (known: {', '.join(d.name for d in config.devices)})")
    settings = config.backup.configs
    repo = ConfigRepo(Path(settings.repo_dir))
    relpath = repo.file_for(dev.site, dev.name)
    if not (Path(settings.repo_dir) / ".git").exists():
        raise ConfigsError(f"no configs repository at {settings.repo_dir} yet: run `citydc backup configs` first")
    platform = dev.netmiko_device_type or "linux"
    key = mask_key(Path(settings.state_dir))
    if rev is None:
        commits = repo.log(relpath, limit=2)
        if not commits:
            raise ConfigsError(f"{device} has no stored config yet")
        new_rev, old_rev = commits[0], (commits[1] if len(commits) > 1 else None)
        new = repo.show(new_rev, relpath) or ""
        old = repo.show(old_rev, relpath) if old_rev else ""
        names = (f"{old_rev[:12]}:{relpath}" if old_rev else "/dev/null", f"{new_rev[:12]}:{relpath}")
    else:
        old = repo.show(rev, relpath)
        if old is None:
            raise ConfigsError(f"{relpath} is not in revision {rev!r} (or the revision does not exist)")
        new = repo.read(relpath) or ""
        names = (f"{rev}:{relpath}", relpath)
    try:
        old_m = mask(old or "", platform, key)[0]
        new_m = mask(new, platform, key)[0]
    except KeyError:
        raise ConfigsError(f"no rules for platform {platform!r}") from None
    return unified_diff(old_m, new_m, *names)


__all__ += ["GitFailed", "mask_key", "registry"]
