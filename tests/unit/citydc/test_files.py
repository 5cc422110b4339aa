"""Private by default (citydc/files.py): the process umask the CLI sets, the security log created
0600, the group policy, and `config check` warning about a config file others can read."""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from citydc import files
from citydc.cli.main import cli
from citydc.seclog.store_sqlite import SqliteStore

CONFIG = """
sites:
  - {id: siwei, name: Siwei}
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)  # the usual login umask: what a file gets without citydc's care
    yield
    os.umask(old)


def test_sqlite_security_log_is_created_0600_whatever_the_umask(tmp_path, umask_022) -> None:
    store = SqliteStore(tmp_path / "log" / "seclog.db")
    store.conn.execute("CREATE TABLE IF NOT EXISTS t (x)")  # WAL and SHM appear on first write
    store.conn.execute("INSERT INTO t VALUES (1)")
    for path in (tmp_path / "log").iterdir():
        assert mode(path) == 0o600, (path, oct(mode(path)))


def test_the_cli_sets_umask_077_before_anything_runs() -> None:
    # The real entry point, main(), in a child started with the usual umask 022, dispatching to a
    # command that reports the umask it runs with (every file citydc writes without an explicit
    # mode, and every folder, gets it).
    probe = ("import os, click; from citydc.cli import main as m\n"
             "m.cli = click.command()(lambda: print(oct(os.umask(0o077))))\nm.main()")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60,
                         preexec_fn=lambda: os.umask(0o022))
    assert out.stdout.strip() == "0o77"


def test_config_check_warns_about_a_config_others_can_read(tmp_path) -> None:
    path = tmp_path / "citydc.yaml"
    path.write_text(CONFIG)
    for m, warned in ((0o644, True), (0o604, True), (0o660, True), (0o640, False), (0o600, False)):
        path.chmod(m)
        result = CliRunner().invoke(cli, ["config", "check", str(path), "--json"])
        assert result.exit_code == 0, result.output
        warnings = json.loads(result.output)["warnings"]
        assert bool([w for w in warnings if str(path) in w and "chmod 600" in w]) == warned, (oct(m), warnings)


def test_files_group_relaxes_to_027_only_for_the_process_group(umask_022) -> None:
    own = grp.getgrgid(os.getegid()).gr_name
    assert files.apply_group(own) is None and os.umask(0o022) == 0o027
    other = next((g.gr_name for g in grp.getgrall() if g.gr_gid != os.getegid()), None)
    assert other is not None
    warning = files.apply_group(other)
    assert warning is not None and "Group=" in warning and os.umask(0o022) == 0o077
    assert "no group" in (files.apply_group("no-such-group-citydc") or "") and os.umask(0o022) == 0o077
    os.umask(0o077)
    assert files.apply_group(None) is None and os.umask(0o022) == 0o077  # main()'s umask stays


def test_exposed_names_modes_that_give_access(tmp_path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    path.chmod(0o600)
    assert files.exposed(path) is None
    path.chmod(0o640)
    assert files.exposed(path) is not None and files.exposed(path, group_read=True) is None
    path.chmod(0o604)
    assert "others" in (files.exposed(path, group_read=True) or "")


def test_textfile_metrics_stay_readable_by_node_exporter(tmp_path) -> None:
    from prometheus_client import CollectorRegistry, Gauge

    from citydc.seclog.metrics import write_textfile

    os.umask(old := os.umask(0o077))
    os.umask(0o077)
    try:
        d = tmp_path / "textfile"
        d.mkdir()
        registry = CollectorRegistry()
        Gauge("citydc_x", "x", registry=registry).set(1)
        write_textfile(registry, d / "citydc_seclog.prom")
    finally:
        os.umask(old)
    assert mode(d / "citydc_seclog.prom") == 0o644 and mode(d) == 0o755
