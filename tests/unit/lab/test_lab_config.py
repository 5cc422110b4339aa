"""The lab's config: built by the lab from its ports and directory, written by `citydc lab config`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from citydc.cli.main import cli
from citydc.config import ConfigInvalid, load
from citydc.lab import ports
from citydc.lab.base import LabContext
from citydc.lab.config import lab_config, lab_config_text, write_lab_config


def test_written_config_loads_to_the_built_one_once_sftp_wrote_its_ssh_config(tmp_path):
    root = tmp_path / "lab"
    path = write_lab_config(LabContext(root=root))
    assert path == root / "citydc.yaml"
    assert path.read_text(encoding="utf-8").startswith(f"# citydc.yaml for the lab ({root})")
    with pytest.raises(ConfigInvalid) as exc:  # before `lab up sftp`: its ssh_config is missing
        load(path)
    assert {e.path for e in exc.value.errors} == {"backup.jobs[0].offsite_repo.ssh_config",
                                                  "backup.jobs[1].offsite_repo.ssh_config"}
    (root / "sftp").mkdir()
    (root / "sftp" / "ssh_config").write_text("Host *\n")
    assert load(path).config == lab_config(root)


def test_every_path_lives_under_the_lab_directory_and_devices_on_lab_ports(tmp_path):
    text = lab_config_text(tmp_path)
    assert "/tmp/citydc-lab" not in text
    cfg = lab_config(tmp_path)
    paths = [cfg.snmp.state_dir, cfg.backup.state_dir, cfg.backup.textfile_dir, cfg.security_log.spool_dir,
             cfg.security_log.sink.path, *(p for j in cfg.backup.jobs for p in j.sources)]
    assert all(p.is_relative_to(tmp_path) for p in paths), paths
    assert cfg.snmp.listen == f"{ports.HOST}:{ports.SNMP_EXPORTER}"
    assert f"{ports.HOST}:{ports.SNMPD}" in {d.address for d in cfg.devices}
    assert {j.offsite_repo.url for j in cfg.backup.jobs} == {
        f"sftp:citydc@127.0.0.1:{tmp_path}/sftp/repos/siwei", f"sftp:citydc@127.0.0.1:{tmp_path}/sftp/repos/fengshan"}


def test_cli_honours_citydc_lab_dir_and_output(tmp_path, monkeypatch):
    from citydc.cli import lab_cmd

    root = tmp_path / "mylab"
    monkeypatch.setattr(lab_cmd, "lab_context", lambda: LabContext(root=root))
    result = CliRunner().invoke(cli, ["lab", "config"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(root / "citydc.yaml")
    out = tmp_path / "elsewhere.yaml"
    result = CliRunner().invoke(cli, ["lab", "config", "--output", str(out)])
    assert result.exit_code == 0 and out.read_text(encoding="utf-8") == lab_config_text(root)
    result = CliRunner().invoke(cli, ["lab", "config", "-o", "-"])
    assert result.exit_code == 0 and result.output == lab_config_text(root)


def test_lab_dir_comes_from_the_environment():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "citydc.cli.main", "lab", "config", "-o", "-"],
                          env={"CITYDC_LAB_DIR": "/tmp/citydc-lab-elsewhere", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=True)
    assert "state_dir: /tmp/citydc-lab-elsewhere/var/snmp-state" in proc.stdout
    assert Path("/tmp/citydc-lab-elsewhere/citydc.yaml").exists() is False  # -o - writes nothing
