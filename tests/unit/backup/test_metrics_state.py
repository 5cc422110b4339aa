"""Job state is saved atomically and rendered as node_exporter textfile metrics."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from citydc.backup import metrics, state


def sample_state() -> dict:
    st = state.load(__import__("pathlib").Path("/nonexistent"), "j")
    st["steps"]["local/backup"] = {"last_attempt": 200.0, "last_success": 100.0, "status": "partial",
                                   "duration_seconds": 2.5, "bytes_added": 1234}
    st["steps"]["offsite/drill"] = {"last_attempt": 300.0, "status": "failure", "duration_seconds": 1.0}
    st["repos"]["local"] = {"snapshots": 3, "size_bytes": 999, "latest_snapshot_bytes": 4321}
    st["drill"]["offsite"] = {"verified_files": 10, "verified_bytes": 2048, "failed_files": 1}
    st["check_cycle"]["local"] = {"total": 4, "next": 3, "read": [1, 2]}
    return st


def samples(tmp_path) -> dict[tuple, float]:
    path = metrics.write(tmp_path, [sample_state(), {"job": "gone", "steps": {"local/backup": {"status": "x"}}}],
                         {"j": "siwei"})
    out = {}
    for fam in text_string_to_metric_families(path.read_text()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_textfile_metrics(tmp_path):
    got = samples(tmp_path)
    base = (("job", "j"), ("repo", "local"), ("site", "siwei"))
    assert got[("citydc_backup_last_success_timestamp_seconds", (*base, ("step", "backup")))] == 100.0
    assert got[("citydc_backup_last_attempt_timestamp_seconds", (*base, ("step", "backup")))] == 200.0
    assert got[("citydc_backup_last_outcome", (*base[:1], ("outcome", "partial"), *base[1:],
                                               ("step", "backup")))] == 1
    assert got[("citydc_backup_last_added_bytes", base)] == 1234
    assert got[("citydc_backup_snapshots", base)] == 3
    assert got[("citydc_backup_latest_snapshot_size_bytes", base)] == 4321
    assert got[("citydc_backup_check_cycle_progress_ratio", base)] == 0.5
    off = (("job", "j"), ("repo", "offsite"), ("site", "siwei"))
    assert got[("citydc_backup_drill_failed_files", off)] == 1
    assert got[("citydc_backup_drill_verified_bytes", off)] == 2048
    # never succeeded: no success timestamp rather than a fake 0
    assert ("citydc_backup_last_success_timestamp_seconds", (*off, ("step", "drill"))) not in got
    # a job no longer configured disappears
    assert not any(dict(labels).get("job") == "gone" for _, labels in got)
    assert not list(tmp_path.glob("*.tmp*"))


def test_state_roundtrip_and_corruption(tmp_path):
    st = sample_state()
    state.save(tmp_path, "j", st)
    assert state.load(tmp_path, "j") == st
    assert (tmp_path / "j.json").stat().st_mode & 0o077 == 0
    (tmp_path / "j.json").write_text("{half")
    with pytest.raises(ValueError, match=r"j\.json: not valid JSON"):
        state.load(tmp_path, "j")


def test_a_textfile_directory_citydc_creates_is_readable_by_node_exporter(tmp_path):
    import os
    import stat

    from citydc.backup import metrics

    old = os.umask(0o077)  # citydc's own umask
    try:
        path = metrics.write(tmp_path / "textfile", [], {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
