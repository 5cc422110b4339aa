"""``citydc backup configs`` without devices: target selection, known_hosts, and a run with fetch faked at its
boundary (the lab tests run the real SSH sessions)."""

from __future__ import annotations

import subprocess

import pytest

from citydc.backup import configs
from citydc.backup.configs_fetch import Fetched, FetchFailed
from citydc.backup.configs_repo import KnownHosts
from citydc.config import load_text

CONFIG = """\
sites: [{id: siwei, name: S}, {id: fengshan, name: F}]
device_logins:
  netops: {username: backup, password: "env:T_DEV_PW", enable_secret: "env:T_DEV_EN", port: 2222}
devices:
  - {name: r1, address: "10.0.0.1:161", site: siwei, role: core, netmiko_device_type: cisco_ios, login: netops}
  - {name: r2, address: 10.0.0.2, site: fengshan, role: core, netmiko_device_type: arista_eos, login: netops,
     management_address: "10.9.0.2:22", timeout_seconds: 5}
  - {name: s1, address: 10.0.0.3, site: siwei, role: access}
backup:
  configs: {repo_dir: repo, known_hosts: kh, state_dir: state}
"""


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("T_DEV_PW", "pw-Secret-1")
    monkeypatch.setenv("T_DEV_EN", "en-Secret-2")
    return load_text(CONFIG, base_dir=tmp_path)


def test_targets_resolve_login_address_and_timeout(cfg):
    r1, r2 = configs.targets(cfg)
    assert (r1.host, r1.port, r1.timeout) == ("10.0.0.1", 2222, 30)
    assert (r2.host, r2.port, r2.timeout) == ("10.9.0.2", 22, 5)
    assert r1.password == "pw-Secret-1" and "pw-Secret-1" not in repr(r1)
    assert [t.name for t in configs.targets(cfg, site="fengshan")] == ["r2"]


@pytest.mark.parametrize(("kw", "expected"), [({"site": "mars"}, "unknown site"), ({"device": "zz"}, "unknown device"),
                                              ({"device": "s1"}, "no login profile")])
def test_target_errors_name_the_problem(cfg, kw, expected):
    with pytest.raises(configs.ConfigsError, match=expected):
        configs.targets(cfg, **kw)


def test_unset_secret_is_a_config_error_without_the_value(cfg, monkeypatch):
    monkeypatch.delenv("T_DEV_EN")
    with pytest.raises(configs.ConfigsError, match="T_DEV_EN"):
        configs.targets(cfg)


def test_known_hosts_round_trip(tmp_path):
    kh = KnownHosts(tmp_path / "kh")
    assert kh.pin([("[10.0.0.1]:2222", ("ssh-rsa", "AAAA")), ("[10.0.0.1]:2222", ("ssh-rsa", "AAAA"))]) == 1
    assert (tmp_path / "kh").stat().st_mode & 0o777 == 0o600
    assert KnownHosts(tmp_path / "kh").get("[10.0.0.1]:2222") == [("ssh-rsa", "AAAA")]


def test_a_failing_device_does_not_stop_the_others_and_no_change_commits_nothing(cfg, tmp_path, monkeypatch):
    text = {"r1": "hostname r1\nsnmp-server community c0mmunity-XYZ RO\nend\n"}

    def fake_fetch(target, pinned):
        if target.name == "r2":
            raise FetchFailed("auth", "authentication failed for user backup")
        return Fetched(text["r1"], text["r1"], ("ssh-ed25519", "AAAAC3Nz"))

    monkeypatch.setattr(configs, "fetch", fake_fetch)
    emitted: list[dict] = []
    res = configs.run(cfg, configs.targets(cfg), emit=emitted.extend, textfile_dir=tmp_path / "tf")
    assert [(r.device, r.status, r.reason) for r in res.results] == [("r1", "new", ""), ("r2", "failure", "auth")]
    assert [e["event"]["action"] for e in emitted] == ["device-config-backup", "device-host-key-pinned"]
    stored = (tmp_path / "repo" / "siwei" / "r1.cfg").read_text()
    assert "c0mmunity-XYZ" not in stored and "<masked:" in stored
    count = lambda: subprocess.run(["git", "-C", str(tmp_path / "repo"), "rev-list", "--count", "HEAD"],  # noqa: E731
                                   capture_output=True, text=True, check=True).stdout.strip()
    assert count() == "1"
    emitted.clear()
    res = configs.run(cfg, configs.targets(cfg, device="r1"), emit=emitted.extend)
    assert res.results[0].status == "unchanged" and emitted == [] and count() == "1"
    text["r1"] = text["r1"].replace("c0mmunity-XYZ", "c0mmunity-NEW")  # a secret-only change is a change
    res = configs.run(cfg, configs.targets(cfg, device="r1"), emit=emitted.extend)
    assert res.results[0].status == "changed" and count() == "2"
    assert [e["event"]["action"] for e in emitted] == ["device-config-changed"]
    assert "c0mmunity" not in str(emitted)
    prom = (tmp_path / "tf" / "citydc_device_config.prom").read_text()
    assert 'citydc_device_config_up{device="r2",site="fengshan"} 0.0' in prom
