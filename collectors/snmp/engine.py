"""The SNMP poll engine: devices of the config polled on request, on one asyncio loop thread.

``Engine.resolve`` finds the job (device, module, auth profile) for a target; ``Engine.poll`` runs it
and returns the ``ScrapeResult`` with structured interface rows (``collector.py``). Two polls of the
same target at once (an HA pair of Prometheus servers) share one poll, which also keeps the counter
state in order. Nothing here knows HTTP or the exposition format: the exporter's HTTP front
(``exporter.py``) and the NetFlow SNMP feed (``collectors/netflow/snmp_feed.py``) both call it.
The engine's own health (polls, errors, state writes) is in ``registry``, served on ``/metrics``.

With a state file, the counter state (the 32-bit wrap carries) is saved every
``snmp.state_save_seconds`` and at stop, and loaded at start (``state.py``), so a restart does not
show up in Prometheus as a reset of every carried counter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

from citydc.collectors.snmp import state as state_file
from citydc.collectors.snmp.collector import ScrapeResult, TargetState, poll_target
from citydc.collectors.snmp.counters import RESUME_OUTCOMES
from citydc.collectors.snmp.modules import Module, build_modules
from citydc.collectors.snmp.poller import PollError, Session, auth_data, parse_address
from citydc.collectors.snmp.v2c import V2cSession
from citydc.config.models import Config, Device, SnmpV2c
from citydc.secrets import SecretUnavailable

__all__ = ["BadRequest", "Engine", "Job"]

log = logging.getLogger(__name__)

STOP_SECONDS = 5  # how long stop() waits for the SNMP loop to end its tasks, and then for its thread
STOPPED = "the exporter stopped before the poll finished"


class BadRequest(ValueError):
    """The request's parameters are wrong; the message says which and what was expected."""


@dataclass(frozen=True)
class Job:
    device: Device
    host: str
    port: int
    module: Module
    auth_name: str

    @property
    def key(self) -> tuple:
        return (self.host, self.port, self.module.name, self.auth_name)


class Engine:
    """Given the config, poll devices on request. ``start()`` runs the SNMP loop thread, ``stop()`` ends it."""

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None, state_path: Path | None = None,
                 wall_clock=time.time, clock=time.monotonic):
        """``state_path``: the counter state file (None: carries are not kept across restarts)."""
        self.config = config
        self.state_path = state_path
        self.wall_clock, self.clock = wall_clock, clock
        self._saver: threading.Thread | None = None
        self._stopping = threading.Event()
        self._save_lock = threading.Lock()
        self.settings = config.snmp
        self.modules = build_modules(config.snmp.modules)
        self.environ = environ
        self.devices: dict[tuple[str, int], Device] = {}
        for dev in config.devices:
            self.devices[parse_address(dev.address)] = dev
        self.states: dict[tuple, TargetState] = {}
        self.inflight: dict[tuple, asyncio.Future] = {}
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self.engine = None
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests_total = Counter("citydc_snmp_exporter_requests", "Requests to /snmp by outcome.",
                                      ["site", "module", "outcome"], registry=self.registry)
        self.poll_errors_total = Counter("citydc_snmp_exporter_poll_errors", "Poll errors by reason.",
                                         ["site", "reason"], registry=self.registry)
        self.poll_seconds = Histogram("citydc_snmp_exporter_poll_duration_seconds", "Time to poll one device.",
                                      ["site", "module"], registry=self.registry,
                                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
        self.in_flight = Gauge("citydc_snmp_exporter_polls_in_flight", "Polls running now.", registry=self.registry)
        self.polls_total = Counter("citydc_snmp_exporter_polls", "Polls by the path that ran them: fast_v2c "
                                   "(citydc's BER codec) or pysnmp (SNMPv3, or snmp.v2c_path: pysnmp).",
                                   ["site", "path"], registry=self.registry)
        self.state_restored_total = Counter(
            "citydc_snmp_counter_state_restored", "First polls after a restart with saved counter state, by "
            "outcome: restored (carries continue), stale, reboot, clock (sysUpTime disagrees with the time "
            "passed), no_uptime.", ["site", "outcome"], registry=self.registry)
        self.state_writes_total = Counter("citydc_snmp_counter_state_writes", "Writes of the counter state file.",
                                          ["outcome"], registry=self.registry)
        self.state_load_problems_total = Counter(
            "citydc_snmp_counter_state_load_problems", "Counter state files or entries ignored at start "
            "(unreadable, corrupted, wrong version).", registry=self.registry)
        for outcome in ("ok", "error"):
            self.state_writes_total.labels(outcome)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self.state_path is not None:
            self.load_state()
        self._thread = threading.Thread(target=self.loop.run_forever, name="snmp-loop", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._init(), self.loop).result(10)
        if self.state_path is not None:
            self._saver = threading.Thread(target=self._save_every, name="snmp-state", daemon=True)
            self._saver.start()

    def load_state(self) -> None:
        """Load the state file: each saved target waits for its first poll to check the saved state."""
        assert self.state_path is not None
        resumes, problems = state_file.load(self.state_path, self.clock(), self.wall_clock(),
                                            self.settings.state_max_age_seconds)
        self.state_load_problems_total.inc(problems)
        for key, resume in resumes.items():
            self.states.setdefault(key, TargetState()).resume = resume
        if resumes:
            log.info("loaded SNMP counter state of %d targets from %s", len(resumes), self.state_path)

    def save_state(self) -> bool:
        """Write the state file now; return False (logged, counted) if it could not be written."""
        assert self.state_path is not None
        if self._thread is not None and self._thread.is_alive() and self.loop.is_running():
            # The states change on the loop thread: take the snapshot there, between two polls' steps.
            doc = asyncio.run_coroutine_threadsafe(self._snapshot(), self.loop).result(30)
        else:
            doc = state_file.dump(self.states, self.clock(), self.wall_clock())
        with self._save_lock:
            try:
                state_file.write_atomic(self.state_path, doc)
            except OSError as exc:
                log.warning("cannot write SNMP counter state %s: %s", self.state_path, exc)
                self.state_writes_total.labels("error").inc()
                return False
        self.state_writes_total.labels("ok").inc()
        return True

    async def _snapshot(self) -> dict:
        return state_file.dump(self.states, self.clock(), self.wall_clock())

    def _save_every(self) -> None:
        while not self._stopping.wait(self.settings.state_save_seconds):
            try:
                self.save_state()
            except Exception:  # the next interval tries again; the exporter keeps serving
                log.exception("saving the SNMP counter state failed")

    async def _init(self) -> None:
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

        self.engine = SnmpEngine()
        self.semaphore = asyncio.Semaphore(self.settings.max_concurrent_polls)

    def stop(self) -> None:
        self._stopping.set()
        if self._saver:
            self._saver.join(30)  # before the loop stops: a save in progress needs the loop for its snapshot
        if self._thread is not None and self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(STOP_SECONDS)
            except TimeoutError:
                log.warning("the SNMP loop did not end its tasks within %s s of the stop", STOP_SECONDS)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(STOP_SECONDS)
        if not self.loop.is_running():
            self.loop.close()
        if self.state_path is not None:
            self.save_state()  # the loop has stopped: the states no longer change

    async def _close(self) -> None:
        """Close pysnmp's dispatcher and end every task of the loop, polls in flight included.

        pysnmp 7's dispatcher keeps a timer task (``handle_timeout``) while it has a transport; a
        loop closed with it (or a poll) still pending logs "Task was destroyed but it is pending!"
        at ERROR on every stop. Cancelling is not enough: a cancelled task ends only when the loop
        runs it once more, so the tasks are awaited here, before the loop stops.
        """
        if self.engine is not None and self.engine.transport_dispatcher is not None:
            self.engine.close_dispatcher()  # closes its UDP sockets and cancels its timer task
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- requests -------------------------------------------------------------------------------

    def resolve(self, target: str, module: str | None = None, auth: str | None = None) -> Job:
        """Given a target (host or host:port of a device in the config) and optionally a module and an
        auth profile name (default: the device's own), return the Job. Raise BadRequest saying what is wrong."""
        if not target:
            raise BadRequest("missing parameter 'target' (host or host:port of a device in citydc.yaml)")
        try:
            host, port = parse_address(target)
        except ValueError as exc:
            raise BadRequest(f"target: {exc}") from None
        device = self.devices.get((host, port))
        if device is None:
            raise BadRequest(f"target {target!r} is not a device in citydc.yaml (devices[].address)")
        module_name = device.snmp_module if module is None else module
        found = self.modules.get(module_name)
        if found is None:
            raise BadRequest(f"unknown module {module_name!r} (known: {', '.join(sorted(self.modules))})")
        auth_name = (device.snmp_auth or "") if auth is None else auth
        if not auth_name:
            raise BadRequest(f"device {device.name} has no snmp_auth; pass auth=PROFILE")
        if auth_name not in self.config.snmp_auth:
            raise BadRequest(f"unknown auth profile {auth_name!r} (known: {', '.join(sorted(self.config.snmp_auth))})")
        return Job(device, host, port, found, auth_name)

    def poll(self, job: Job, budget: float) -> ScrapeResult:
        """Given a job and a time budget (seconds), run one poll on the SNMP loop, wait for it and return
        its result; never raises for device problems (``up=False`` with a reason). Thread-safe."""
        # The budget counts from the request's arrival, not from when the busy loop gets to the poll
        # (200 scrapes at once on two cores start late): Prometheus gives up at its own timeout.
        deadline = time.monotonic() + budget
        coro = self._shared_poll(job, deadline)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # stop() closed the loop: an HTTP thread asked after it
            coro.close()
            return ScrapeResult(False, "timeout", STOPPED, budget)
        try:
            return future.result(max(deadline - time.monotonic(), 0) + 0.25)
        except TimeoutError:
            future.cancel()
            return ScrapeResult(False, "timeout", "poll did not finish within its budget", budget)
        except concurrent.futures.CancelledError:  # stop() ended the poll in flight
            return ScrapeResult(False, "timeout", STOPPED, budget)

    async def _shared_poll(self, job: Job, deadline: float) -> ScrapeResult:
        running = self.inflight.get(job.key)
        if running is None:
            running = asyncio.ensure_future(self._poll(job, deadline))
            self.inflight[job.key] = running
            running.add_done_callback(lambda _f: self.inflight.pop(job.key, None))
        return await asyncio.shield(running)

    async def _poll(self, job: Job, deadline: float) -> ScrapeResult:
        started = time.monotonic()
        budget = max(deadline - started, 0.05)
        auth = self.config.snmp_auth[job.auth_name]
        # Each request may be resent: its timeout shrinks so all tries fit inside the budget.
        per_try = min(self.settings.timeout_seconds, budget / (self.settings.retries + 1) * 0.9)
        state = self.states.setdefault(job.key, TargetState())
        async with self.semaphore:
            self.in_flight.inc()
            session: Session | V2cSession | None = None
            try:
                session = await self._open(job, auth, per_try)
                self.polls_total.labels(job.device.site, session.path).inc()
                log.debug("poll %s (%s) via %s", job.device.name, job.module.name, session.path)
                result = await asyncio.wait_for(
                    poll_target(session, job.module, state, deadline, self.settings.static_refresh_seconds),
                    timeout=max(deadline - time.monotonic(), 0.05))
            except SecretUnavailable as exc:
                result = ScrapeResult(False, "secret_unavailable", str(exc))
            except PollError as exc:
                result = ScrapeResult(False, exc.reason, str(exc))
            except TimeoutError:
                result = ScrapeResult(False, "timeout", "poll did not finish within its budget")
            except Exception as exc:  # a bug must fail this scrape, never the exporter
                log.exception("poll of %s failed", job.device.name)
                result = ScrapeResult(False, "internal", f"{type(exc).__name__}")
            finally:
                if session is not None:
                    session.close()
                self.in_flight.dec()
        result.duration_seconds = time.monotonic() - started
        if not result.up:
            if not result.errors:
                result.errors[result.reason] = 1
            log.info("poll %s (%s): %s: %s", job.device.name, job.module.name, result.reason, result.message)
        site = job.device.site
        if result.resume_outcome in RESUME_OUTCOMES:
            self.state_restored_total.labels(site, result.resume_outcome).inc()
        self.requests_total.labels(site, job.module.name, "up" if result.up else "down").inc()
        self.poll_seconds.labels(site, job.module.name).observe(result.duration_seconds)
        for reason, n in result.errors.items():
            self.poll_errors_total.labels(site, reason).inc(n)
        return result

    async def _open(self, job: Job, auth, per_try: float) -> Session | V2cSession:
        """Given a job and its auth profile, return the session for its path: v2c on citydc's codec unless
        ``snmp.v2c_path`` is ``pysnmp``; SNMPv3 always on pysnmp (USM needs its engine)."""
        if isinstance(auth, SnmpV2c) and self.settings.v2c_path == "fast":
            return await V2cSession.open(auth.community.reveal(self.environ), job.host, job.port, per_try,
                                         self.settings.retries)
        return await Session.open(self.engine, auth_data(auth, self.environ), job.host, job.port,
                                  per_try, self.settings.retries, getattr(auth, "context_name", ""))

