"""The demo records a demo-started event and ships it into the configured SQLite store."""

from __future__ import annotations

from citydc.config.loader import load
from citydc.lab.demo.seclog_event import record_demo_started
from citydc.seclog.store import Query
from citydc.seclog.store_sqlite import SqliteStore


def test_demo_started_is_stored(tmp_path):
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text("sites: [{id: fengshan, name: Fengshan}]\n")
    step = record_demo_started(load(cfg), ["snmpd"])
    assert step["ok"] and step["step"] == "security log"
    store = SqliteStore(tmp_path / "var" / "seclog.db")  # the default sink, relative to the config file
    try:
        [doc] = store.search(Query(filters={"event.dataset": "citydc.demo"}))
    finally:
        store.close()
    assert doc["event"]["action"] == "demo-started"
    assert (doc["event"]["kind"], doc["event"]["category"], doc["event"]["type"]) == ("event", ["process"], ["start"])
    assert doc["labels"]["site"] == "fengshan"
    assert doc["citydc"]["demo"]["services"] == ["snmpd"]
    assert doc["event"]["id"] in step["detail"] or doc["event"]["id"][:12] in step["detail"]
