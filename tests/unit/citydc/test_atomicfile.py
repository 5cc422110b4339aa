"""citydc.atomicfile: the one durable, atomic way to replace a file."""

import os
import stat

import pytest

from citydc import atomicfile


def test_write_replaces_with_mode_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "state.json"
    atomicfile.write(path, "old")
    atomicfile.write(path, b"new", mode=0o640)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["state.json"]


def test_default_mode_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        path = atomicfile.write(tmp_path / "f", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_failed_rename_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "f"
    atomicfile.write(path, "old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomicfile.os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomicfile.write(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f"]


def test_every_durable_writer_goes_through_atomicfile():
    """The SNMP state, the backup state, file_sd targets and the chain head all use this module."""
    from citydc.backup import state as backup_state
    from citydc.collectors.snmp import state as snmp_state
    from citydc.collectors.snmp import targets
    from citydc.seclog import chain
    for module in (backup_state, snmp_state, targets, chain):
        assert module.atomicfile is atomicfile, module.__name__
