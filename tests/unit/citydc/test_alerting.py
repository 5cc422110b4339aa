"""The alerting: section (checked at load, errors naming the field) and the alertmanager.yml that
``citydc alerts amconfig`` generates from it: routes, receivers by password_file, the inhibitions across
the two sites; amtool (Debian prometheus-alertmanager) accepts it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from citydc import amconfig
from citydc.cli.main import cli
from citydc.config import ConfigInvalid, load_text

HEAD = """\
sites:
  - {id: siwei, name: 四維 Siwei}
  - {id: fengshan, name: 鳳山 Fengshan}
"""
GOOD = HEAD + """\
alerting:
  prometheus_url: http://127.0.0.1:9090
  alertmanager_url: https://am.city.example:9093/
  home_site: siwei
  default_receiver: noc
  receivers:
    - name: noc
      webhooks:
        - {url: "https://noc.city.example:9095/alerts", username: alertmanager, password: "env:CITYDC_WEBHOOK_PASSWORD"}
    - name: fengshan-oncall
      webhooks:
        - {url: "http://127.0.0.1:9096/alerts", username: am, password: "file:secrets/hook.pw"}
  routes:
    - {receiver: fengshan-oncall, severity: [critical, warning], sites: [fengshan], continue_matching: true}
    - {receiver: noc, alertnames: [Watchdog], repeat_interval: 1m}
  grouping: {group_by: [alertname, site, device], group_wait: 10s}
"""


def errors_of(text: str) -> dict[str, str]:
    with pytest.raises(ConfigInvalid) as exc:
        load_text(text)
    return {e.path: e.message for e in exc.value.errors}


def test_a_good_section_loads():
    cfg = load_text(GOOD).alerting
    assert cfg.home_site == "siwei" and [r.name for r in cfg.receivers] == ["noc", "fengshan-oncall"]
    assert cfg.receivers[0].webhooks[0].password.reference == "env:CITYDC_WEBHOOK_PASSWORD"


@pytest.mark.parametrize("change, path, words", [
    (("http://127.0.0.1:9090", "ftp://127.0.0.1:9090"), "alerting.prometheus_url", "http:// or https://"),
    (("https://am.city.example:9093/", "https://user:pw@am.city.example/"), "alerting.alertmanager_url",
     "credentials in the URL"),
    (("https://am.city.example:9093/", "https://:9093/"), "alerting.alertmanager_url", "host"),
    (("https://am.city.example:9093/", "https://am:99999/"), "alerting.alertmanager_url", "not a valid URL"),
    (("home_site: siwei", "home_site: taipei"), "alerting.home_site", 'unknown site "taipei"'),
    (("default_receiver: noc", "default_receiver: nobody"), "alerting.default_receiver", 'unknown receiver "nobody"'),
    (("{receiver: noc,", "{receiver: n0c,"), "alerting.routes[1].receiver", 'unknown receiver "n0c"'),
    (("sites: [fengshan]", "sites: [kaohsiung]"), "alerting.routes[0].sites[0]", 'unknown site "kaohsiung"'),
    (("severity: [critical, warning]", "severity: [urgent]"), "alerting.routes[0].severity[0]", "critical"),
    (("group_wait: 10s", "group_wait: 10 seconds"), "alerting.grouping.group_wait", "Prometheus duration"),
    (("repeat_interval: 1m", "repeat_interval: 0s"), "alerting.routes[1].repeat_interval", "Prometheus duration"),
    (("username: am, ", ""), "alerting.receivers[1].webhooks[0]", "username and password go together"),
    (("password: \"env:CITYDC_WEBHOOK_PASSWORD\"", "password: hunter2"), "alerting.receivers[0].webhooks[0].password",
     "secret reference"),
    (("- name: fengshan-oncall", "- name: noc"), "alerting.receivers[1].name", 'duplicate receiver "noc"'),
])
def test_errors_name_the_field(change, path, words):
    old, new = change
    assert old in GOOD
    errors = errors_of(GOOD.replace(old, new, 1))
    assert path in errors, errors
    assert words in errors[path]
    assert "hunter2" not in str(errors)


def test_receivers_need_a_default_receiver():
    errors = errors_of(GOOD.replace("  default_receiver: noc\n", ""))
    assert "required" in errors["alerting.default_receiver"]


def rendered(tmp_path: Path, text: str = GOOD) -> dict:
    cfg = load_text(text, base_dir=tmp_path, check_files=False)
    return yaml.safe_load(amconfig.render(cfg, tmp_path / "secrets"))


def test_routes_receivers_and_grouping(tmp_path):
    doc = rendered(tmp_path)
    route = doc["route"]
    assert route["receiver"] == "noc" and route["group_by"] == ["alertname", "site", "device"]
    assert route["group_wait"] == "10s"
    assert route["routes"] == [
        {"receiver": "fengshan-oncall", "matchers": ['severity=~"critical|warning"', 'site=~"fengshan"'],
         "continue": True},
        {"receiver": "noc", "matchers": ['alertname=~"Watchdog"'], "repeat_interval": "1m"}]
    noc = doc["receivers"][0]["webhook_configs"][0]
    assert noc["http_config"]["basic_auth"] == {"username": "alertmanager",
                                                "password_file": str(tmp_path / "secrets" / "noc-0.password")}
    other = doc["receivers"][1]["webhook_configs"][0]
    assert other["http_config"]["basic_auth"]["password_file"] == str(tmp_path / "secrets" / "hook.pw")


def test_inhibitions_know_the_two_sites(tmp_path):
    rules = rendered(tmp_path)["inhibit_rules"]
    assert rules == [
        {"source_matchers": ['alertname="UplinkDown"', 'role="core"', 'ifAlias!~"(?i).*inter-site.*"',
                             'site=~"fengshan"'],
         "target_matchers": ['device=~".+"', 'role!="core"'], "equal": ["site"]},
        {"source_matchers": ['alertname="UplinkDown"', 'ifAlias=~"(?i).*inter-site.*"'],
         "target_matchers": ['site=~"fengshan"']}]
    # Without a home site there are no far sites; without the core rule only the link rule is left.
    no_home = rendered(tmp_path, GOOD.replace("  home_site: siwei\n", "").replace(
        "alerting:\n", "alerting:\n  core_uplink_inhibits_site: false\n"))
    assert no_home["inhibit_rules"] == []


def test_no_receivers_route_to_a_null_receiver(tmp_path):
    doc = rendered(tmp_path, HEAD)
    assert doc["route"]["receiver"] == amconfig.NULL_RECEIVER
    assert doc["receivers"] == [{"name": amconfig.NULL_RECEIVER}]


def amtool() -> str:
    path = shutil.which("amtool")
    assert path, "amtool is missing: install the Debian package prometheus-alertmanager (lab/apt-packages.txt)"
    return path


def test_amconfig_command_writes_password_files_never_the_password_and_amtool_accepts(tmp_path, monkeypatch):
    amtool()
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "hook.pw").write_text("file-password\n")
    config = tmp_path / "citydc.yaml"
    config.write_text(GOOD)
    config.chmod(0o600)
    monkeypatch.setenv("CITYDC_WEBHOOK_PASSWORD", "env-password-1234")
    out = tmp_path / "am" / "alertmanager.yml"
    result = CliRunner().invoke(cli, ["-c", str(config), "alerts", "amconfig", "--output", str(out), "--check"])
    assert result.exit_code == 0, result.output
    assert "amtool check-config: SUCCESS" in result.output
    text = out.read_text()
    assert text.startswith(amconfig.HEADER) and "env-password-1234" not in text and "file-password" not in text
    assert "env-password-1234" not in result.output
    secret = out.parent / "secrets" / "noc-0.password"
    assert secret.read_text() == "env-password-1234"
    assert os.stat(secret).st_mode & 0o077 == 0 and os.stat(out).st_mode & 0o077 == 0
    checked = subprocess.run([amtool(), "check-config", str(out)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_amtool_refuses_a_broken_config(tmp_path):
    # The check can fail: a route to a receiver that is not defined.
    bad = tmp_path / "am.yml"
    bad.write_text("route:\n  receiver: nobody\nreceivers:\n  - name: noc\n")
    checked = subprocess.run(list(amconfig.check_config_argv(bad, amtool())), capture_output=True, text=True,
                             check=False)
    assert checked.returncode != 0


def test_env_password_without_a_directory_is_a_clear_error(tmp_path, monkeypatch):
    config = tmp_path / "citydc.yaml"
    config.write_text(GOOD.replace("password: \"file:secrets/hook.pw\"", "password: \"env:CITYDC_WEBHOOK_PASSWORD\""))
    config.chmod(0o600)
    monkeypatch.setenv("CITYDC_WEBHOOK_PASSWORD", "x")
    result = CliRunner().invoke(cli, ["-c", str(config), "alerts", "amconfig"])
    assert result.exit_code == 2
    assert "--secrets-dir" in result.output and "Traceback" not in result.output


def test_unset_password_variable_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "hook.pw").write_text("p\n")
    config = tmp_path / "citydc.yaml"
    config.write_text(GOOD)
    config.chmod(0o600)
    (tmp_path / "secrets").chmod(0o700)  # also where the generated password goes: a shared one is refused
    monkeypatch.delenv("CITYDC_WEBHOOK_PASSWORD", raising=False)
    result = CliRunner().invoke(cli, ["-c", str(config), "alerts", "amconfig", "-o", str(tmp_path / "am.yml")])
    assert result.exit_code == 2 and "CITYDC_WEBHOOK_PASSWORD is not set" in result.output


def test_home_site_option_generates_the_other_sites_config(tmp_path, monkeypatch):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "hook.pw").write_text("p\n")
    config = tmp_path / "citydc.yaml"
    config.write_text(GOOD)
    config.chmod(0o600)
    monkeypatch.setenv("CITYDC_WEBHOOK_PASSWORD", "x")
    result = CliRunner().invoke(cli, ["-c", str(config), "alerts", "amconfig", "--home-site", "fengshan",
                                      "--secrets-dir", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert 'site=~"siwei"' in result.output.split("inhibit_rules:")[1]
    bad = CliRunner().invoke(cli, ["-c", str(config), "alerts", "amconfig", "--home-site", "taipei"])
    assert bad.exit_code == 2 and "unknown site" in bad.output
