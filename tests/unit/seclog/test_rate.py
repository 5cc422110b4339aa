"""The bench's one call: emit N events and ship them into SQLite, both ways (no timing asserted)."""

from __future__ import annotations

import pytest

from citydc.seclog.rate import FSYNC_POLICY, sqlite_end_to_end


@pytest.mark.parametrize("concurrent", [True, False])
def test_emit_and_ship_end_to_end_stores_every_event(tmp_path, concurrent):
    figures = sqlite_end_to_end(300, tmp_path, emit_batch=70, ship_batch=50, concurrent=concurrent, timeout=60)
    assert figures["events"] == 300  # sqlite_end_to_end raises unless the store holds exactly these
    assert figures["events_per_s"] > 0 and figures["fsync_policy"] == FSYNC_POLICY
    assert sorted(p.name for p in (tmp_path / "spool").glob("seg-*")) != []
