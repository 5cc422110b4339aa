"""The demo's own security event: ``demo-started``, emitted and shipped into the configured store.

ECS mapping (the project's choice, as in DESIGN.md's table): kind ``event``, category ``process``,
type ``start``, action ``demo-started``, dataset ``citydc.demo``; the id comes from the run's
own identity (a fresh run id), so each demo run is one event.
"""

from __future__ import annotations

import getpass
import socket
import uuid

from citydc.config.loader import LoadedConfig
from citydc.seclog import emit_configured, make_event, open_store
from citydc.seclog.emit import spool_for
from citydc.seclog.shipper import Shipper
from citydc.seclog.spool import SpoolBusy

__all__ = ["record_demo_started"]


def record_demo_started(loaded: LoadedConfig, services: list[str]) -> dict:
    """Given the loaded config and the lab services started, emit ``demo-started`` and ship it; return a demo step.

    The step is ``{"step", "ok", "detail"}``; a delivery failure is reported in it, never raised.
    """
    run_id = uuid.uuid4().hex
    site = loaded.config.sites[0].id
    event = make_event(action="demo-started", dataset="citydc.demo", kind="event", category=["process"],
                       type=["start"], outcome="success", message=f"citydc demo started on {socket.gethostname()}",
                       site=site, id_key=run_id, user=getpass.getuser(), host=socket.gethostname(),
                       details={"run_id": run_id, "services": services})
    emit_configured(loaded, [event])
    spool = spool_for(loaded)
    store = open_store(loaded)
    try:
        with spool.shipping():
            result = Shipper(spool, store, max_attempts=2).ship()
        total = store.count()
    except SpoolBusy:
        return {"step": "security log", "ok": True, "detail": "demo-started spooled; a running shipper delivers it"}
    finally:
        store.close()
    if result.error is not None:
        return {"step": "security log", "ok": False, "detail": f"demo-started spooled, delivery failed: "
                                                                f"{result.error}"}
    return {"step": "security log", "ok": True,
            "detail": f"demo-started {event['event']['id'][:12]} stored ({total} event(s); `citydc log search`)"}
