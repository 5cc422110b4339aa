"""Config of ``citydc backup configs``: login profiles, per-device settings, checked at load."""

from __future__ import annotations

import pytest

from citydc.config import ConfigInvalid, load_text

HEAD = """\
sites:
  - {id: siwei, name: 四維 Siwei}
device_logins:
  netops: {username: backup, password: "env:DEV_PW", enable_secret: "env:DEV_EN", timeout_seconds: 12}
"""


def errors_of(text: str) -> dict[str, str]:
    with pytest.raises(ConfigInvalid) as exc:
        load_text(text)
    return {e.path: e.message for e in exc.value.errors}


def test_profile_is_shared_and_device_overrides_timeout():
    cfg = load_text(HEAD + """\
devices:
  - {name: r1, address: 10.0.0.1, site: siwei, role: core, netmiko_device_type: cisco_ios, login: netops,
     management_address: "10.9.0.1:2222", timeout_seconds: 5}
  - {name: r2, address: 10.0.0.2, site: siwei, role: core, netmiko_device_type: arista_eos, login: netops}
""")
    r1, r2 = cfg.devices
    assert r1.login == r2.login == "netops"
    assert cfg.device_logins["netops"].timeout_seconds == 12
    assert r1.timeout_seconds == 5 and r2.timeout_seconds is None
    assert cfg.device_logins["netops"].enable_secret.reference == "env:DEV_EN"


def test_unknown_profile_and_platform_name_their_field():
    errors = errors_of(HEAD + """\
devices:
  - {name: r1, address: 10.0.0.1, site: siwei, role: core, netmiko_device_type: cisco_ios, login: nope}
  - {name: r2, address: 10.0.0.2, site: siwei, role: core, netmiko_device_type: commodore64, login: netops}
  - {name: r3, address: 10.0.0.3, site: siwei, role: core, login: netops}
""")
    assert 'unknown login profile "nope"' in errors["devices[0].login"]
    assert "commodore64" in errors["devices[1].netmiko_device_type"]
    assert "needs its netmiko device type" in errors["devices[2].netmiko_device_type"]


def test_login_needs_a_credential_and_never_an_inline_secret():
    errors = errors_of("""\
sites: [{id: siwei, name: S}]
device_logins:
  a: {username: backup}
  b: {username: backup, password: hunter2-inline}
""")
    assert "password" in errors["device_logins.a"] and "key_file" in errors["device_logins.a"]
    assert "secret reference" in errors["device_logins.b.password"]
    assert "hunter2-inline" not in " ".join(errors.values())


def test_bad_management_address_and_both_golden_sources():
    errors = errors_of(HEAD + """\
devices:
  - {name: r1, address: 10.0.0.1, site: siwei, role: core, netmiko_device_type: cisco_ios, login: netops,
     management_address: "10.9.0.1:99999"}
backup:
  configs: {golden_dir: golden, golden_ref: approved}
""")
    assert "port" in errors["devices[0].management_address"]
    assert "not both" in errors["backup.configs"]
