"""``emit()``: the one way every component records a security event.

The events are validated (all of them, before anything is written), chained and appended to the
local spool, fsynced, and only then does ``emit`` return. Delivery to the store is the shipper's
job; nothing here talks to a store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from citydc.seclog.spool import Spool

if TYPE_CHECKING:  # annotations only: emitting an event loads neither the config models nor prometheus_client
    from citydc.config.loader import LoadedConfig
    from citydc.seclog.metrics import SeclogMetrics

__all__ = ["emit", "emit_configured", "spool_for"]


def emit(events: Mapping | Sequence[Mapping], *, spool_dir: str | Path, writer: str | None = None,
         metrics: SeclogMetrics | None = None, clock: Callable[[], float] = time.time) -> int:
    """Given one event or a batch, spool them durably; return how many were new (not spooled before).

    ``clock`` is the spool's (its id memory's days, a new incarnation's time): tests move it forward.
    Raise EventInvalid naming the event and field if any event is invalid; then nothing of the
    batch is written. Raise SpoolDamaged (a one-line message: the spool state file, what is wrong
    with it, how to recover) when the spool's chain head is damaged; nothing is written then either.
    """
    batch = [events] if isinstance(events, Mapping) else list(events)
    written = Spool(spool_dir, writer=writer, clock=clock).append(batch)
    if metrics is not None:
        metrics.count_emitted(written, batch)
    return len(written)


def spool_for(loaded: LoadedConfig) -> Spool:
    """Given the loaded config, return its spool (``security_log.spool_dir``, relative to the config file)."""
    return Spool(loaded.resolve(loaded.config.security_log.spool_dir))


def emit_configured(loaded: LoadedConfig, events: Mapping | Sequence[Mapping],
                    metrics: SeclogMetrics | None = None) -> int:
    """Given the loaded config and events, emit them to the configured spool; return how many were new."""
    return emit(events, spool_dir=loaded.resolve(loaded.config.security_log.spool_dir), metrics=metrics)
