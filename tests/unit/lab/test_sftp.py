"""The lab's SFTP service: its sshd and client configs and the argv it runs."""

from __future__ import annotations

from pathlib import Path

from citydc.lab import sftp


def test_sshd_config_is_key_only_on_loopback():
    conf = sftp.sshd_config(Path("/lab/sftp"), 12222, "citydc").splitlines()
    for line in ("Port 12222", "ListenAddress 127.0.0.1", "PasswordAuthentication no", "UsePAM no",
                 "StrictModes no", "AllowUsers citydc", "Subsystem sftp internal-sftp",
                 "HostKey /lab/sftp/host_ed25519", "AuthorizedKeysFile /lab/sftp/authorized_keys"):
        assert line in conf


def test_client_config_pins_key_port_and_known_hosts():
    conf = sftp.ssh_client_config(Path("/lab/sftp"), 12222, "citydc")
    assert "Host citydc-offsite 127.0.0.1" in conf
    for line in ("Port 12222", "User citydc", "IdentityFile /lab/sftp/client_ed25519", "BatchMode yes",
                 "UserKnownHostsFile /lab/sftp/known_hosts", "StrictHostKeyChecking yes"):
        assert f"  {line}" in conf


def test_argv():
    assert sftp.keygen_argv(Path("/k")) == ("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "citydc-lab",
                                            "-f", "/k")
    assert sftp.useradd_argv("citydc") == ("useradd", "--system", "--no-create-home", "--shell",
                                           "/usr/sbin/nologin", "citydc")


def test_untraversable_ancestors_names_the_closed_directory(tmp_path):
    closed = tmp_path / "closed"
    lab = closed / "run" / "lab"
    lab.mkdir(parents=True)
    closed.chmod(0o700)
    other_uid = 65534
    blocked = sftp.untraversable_ancestors(lab, other_uid, {65534})
    assert closed in blocked
    closed.chmod(0o711)
    assert closed not in sftp.untraversable_ancestors(lab, other_uid, {65534})
    # The owner needs only its own x bit, whatever "others" get.
    closed.chmod(0o700)
    assert closed not in sftp.untraversable_ancestors(lab, closed.stat().st_uid, set())
