"""``citydc alerts amconfig`` as an operator runs it (exploratory test 3a): inhibitions scoped to what
they explain, routes that reach their receivers (the docs' example, checked by amtool), files
Alertmanager's group can read (files.group), a refused config that leaves the live one alone, an
existing shared --secrets-dir never chmod'ed, and warnings for what Alertmanager accepts but gets wrong."""

from __future__ import annotations

import grp
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from citydc import amconfig, files
from citydc.cli.main import cli
from citydc.config import load_text

ROOT = Path(__file__).resolve().parents[3]
SITES = """\
sites:
  - {id: siwei, name: Siwei}
  - {id: fengshan, name: Fengshan}
"""
BASE = SITES + """\
alerting:
  home_site: siwei
  default_receiver: noc
  receivers:
    - name: noc
      webhooks:
        - {url: "http://127.0.0.1:12251/alerts", username: alertmanager, password: "env:CITYDC_WEBHOOK_PASSWORD"}
  routes:
    - {receiver: noc, severity: [critical]}
"""


@pytest.fixture(autouse=True)
def _umask():
    """amconfig applies files.group to the process umask: give the next test the umask it had."""
    old = os.umask(0o077)
    os.umask(old)
    yield
    files.set_umask(files.PRIVATE_UMASK)
    os.umask(old)


def amtool() -> str:
    path = shutil.which("amtool")
    assert path, "amtool is missing: install the Debian package prometheus-alertmanager"
    return path


def run(tmp_path: Path, text: str, *args: str):
    config = tmp_path / "citydc.yaml"
    config.write_text(text)
    config.chmod(0o600)
    return CliRunner().invoke(cli, ["-c", str(config), "alerts", "amconfig", *args],
                              env={"CITYDC_WEBHOOK_PASSWORD": "pw-1234", "CITYDC_WEBHOOK_PASSWORD_FENGSHAN": "pw-5678"})


# ---- inhibitions (finding 1) -------------------------------------------------------------------

def _matches(matcher: str, labels: dict[str, str]) -> bool:
    """Given one of Alertmanager's matchers (name op "value") and labels, return whether they match."""
    name, op, value = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', matcher).groups()
    have = labels.get(name, "")
    if op in ("=", "!="):
        return (have == value) == (op == "=")
    return bool(re.fullmatch(value, have)) == (op == "=~")


def inhibited(rules: list[dict], alerts: list[dict[str, str]]) -> list[str]:
    """Given inhibit_rules and firing alerts, return the devices (or names) of the inhibited alerts."""
    out = []
    for target in alerts:
        for rule in rules:
            for source in alerts:
                if source is target or not all(_matches(m, source) for m in rule["source_matchers"]):
                    continue
                if all(_matches(m, target) for m in rule["target_matchers"]) and all(
                        source.get(e, "") == target.get(e, "") for e in rule.get("equal", [])):
                    out.append(target.get("device", target["alertname"]))
                    break
            else:
                continue
            break
    return out


FIRING = [
    {"alertname": "UplinkDown", "site": "siwei", "role": "core", "device": "sw-siwei-core1",
     "ifAlias": "uplink inter-site to fengshan"},
    {"alertname": "SnmpTargetDown", "site": "siwei", "role": "access", "device": "sw-siwei-acc1"},
    {"alertname": "InterfaceErrors", "site": "siwei", "role": "firewall", "device": "fw-siwei-edge1"},
    {"alertname": "SnmpTargetDown", "site": "fengshan", "role": "access", "device": "sw-fengshan-acc1"},
    {"alertname": "BackupNotSucceeded", "site": "siwei"},
]


def test_inter_site_link_down_on_the_home_core_inhibits_only_the_far_site(tmp_path):
    rules = amconfig.inhibit_rules(load_text(BASE, base_dir=tmp_path, check_files=False))
    assert inhibited(rules, FIRING) == ["sw-fengshan-acc1"]


def test_a_core_uplink_down_inhibits_its_own_sites_devices_only_at_a_far_site(tmp_path):
    rules = amconfig.inhibit_rules(load_text(BASE, base_dir=tmp_path, check_files=False))
    isp = {"ifAlias": "uplink ISP-A"}
    home = [{**FIRING[0], **isp}, FIRING[1], FIRING[2]]
    assert inhibited(rules, home) == []  # the home Prometheus sees its devices without that uplink
    far = [{"alertname": "UplinkDown", "site": "fengshan", "role": "core", "device": "sw-fengshan-core1", **isp},
           FIRING[3],
           {"alertname": "SnmpTargetDown", "site": "fengshan", "role": "core", "device": "sw-fengshan-core2"}]
    assert inhibited(rules, far) == ["sw-fengshan-acc1"]


# ---- routes (finding 2) --------------------------------------------------------------------------

def docs_example() -> str:
    text = (ROOT / "docs" / "alerting.md").read_text()
    block = re.search(r"```yaml\n(alerting:\n.*?)```", text, re.S).group(1)
    return SITES + block


def test_the_docs_example_sends_fengshans_criticals_to_its_oncall_and_the_noc(tmp_path):
    cfg = load_text(docs_example(), base_dir=tmp_path, check_files=False)
    assert amconfig.shadowed_routes(cfg) == []
    am = tmp_path / "am.yml"
    am.write_text(amconfig.render(cfg, tmp_path / "secrets"))

    def receivers(*labels: str) -> str:
        done = subprocess.run([amtool(), "config", "routes", "test", "--config.file", str(am), *labels],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert receivers("severity=critical", "site=fengshan", "alertname=UplinkDown") == "noc,fengshan-oncall"
    assert receivers("severity=warning", "site=fengshan", "alertname=X") == "fengshan-oncall"
    assert receivers("severity=critical", "site=siwei", "alertname=UplinkDown") == "noc"


def test_a_route_an_earlier_one_takes_alerts_from_is_warned_about(tmp_path):
    (tmp_path / "tls").mkdir()
    for name in ("city-ca.pem", "citydc-client.pem", "citydc-client.key"):  # the example's files
        (tmp_path / "tls" / name).write_text("")
    shadowing = docs_example().replace(", continue_matching: true}", "}")
    result = run(tmp_path, shadowing, "--secrets-dir", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    assert ("alerting.routes[1] (receiver fengshan-oncall): alerts with severity critical and sites fengshan "
            "never reach it: alerting.routes[0] (receiver noc)") in " ".join(result.output.split())


# ---- files Alertmanager can read (finding 3), a refused config (5), a shared directory (4) ----------

def test_files_group_makes_the_config_and_password_files_group_readable(tmp_path):
    group = grp.getgrgid(os.getegid()).gr_name  # files.group works only with the process's own group
    out = tmp_path / "am" / "alertmanager.yml"
    result = run(tmp_path, f"files: {{group: {group}}}\n" + BASE, "-o", str(out), "--check")
    assert result.exit_code == 0, result.output
    secret = out.parent / "secrets" / "noc-0.password"
    assert stat.S_IMODE(out.stat().st_mode) == 0o640 and stat.S_IMODE(secret.stat().st_mode) == 0o640
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o750
    # (pytest's own directories above tmp_path are 0700: only those may be named as what the group cannot enter)
    assert f"{out} (" not in result.output and f"{secret} (" not in result.output
    # Without it: owner-only, and said so.
    files.set_umask(files.PRIVATE_UMASK)
    plain = tmp_path / "plain" / "alertmanager.yml"
    result = run(tmp_path, BASE, "-o", str(plain))
    assert result.exit_code == 0 and stat.S_IMODE(plain.stat().st_mode) == 0o600
    assert "only root can read" in result.output or "owner only" in result.output


def test_a_config_amtool_refuses_leaves_the_live_file_and_writes_no_password(tmp_path, monkeypatch):
    amtool()
    monkeypatch.setattr(amconfig, "check_group_by", lambda group_by: None)  # let the real amtool refuse it
    out = tmp_path / "alertmanager.yml"
    out.write_text("previous good config\n")
    result = run(tmp_path, BASE + '  grouping: {group_by: [alertname, "site-name"]}\n', "-o", str(out), "--check")
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert 'invalid label name "site-name"' in said and f"{out} left unchanged" in said
    assert out.read_text() == "previous good config\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alertmanager.yml", "citydc.yaml"]  # no temp, no secrets


@pytest.mark.parametrize("entries, words", [
    ('[alertname, "site-name"]', "alerting.grouping.group_by[1]: 'site-name' is not a label name"),
    ("[alertname, '...']", 'alerting.grouping.group_by[1]: "..." (group by all labels) must be the only entry'),
    ("[alertname, alertname]", "alerting.grouping.group_by[1]: duplicate label 'alertname'"),
    ('["", site]', "alerting.grouping.group_by[0]: '' is not a label name"),
])
def test_group_by_amtool_would_refuse_is_a_config_error_naming_the_field(tmp_path, entries, words):
    result = run(tmp_path, BASE + f"  grouping: {{group_by: {entries}}}\n", "--secrets-dir", str(tmp_path / "s"))
    assert result.exit_code == 2 and words in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_an_existing_shared_secrets_dir_is_refused_and_left_as_it_is(tmp_path):
    shared = tmp_path / "etc-prometheus"
    shared.mkdir()
    shared.chmod(0o755)
    (shared / "prometheus.yml").write_text("x\n")
    out = shared / "alertmanager.yml"
    result = run(tmp_path, BASE, "-o", str(out), "--secrets-dir", str(shared))
    assert result.exit_code == 2, result.output
    assert f"--secrets-dir {shared}: mode 0755 gives others access" in " ".join(result.output.split())
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755 and not out.exists()
    # A dedicated directory is created private, and an existing private one is used as it is.
    own = tmp_path / "am-secrets"
    assert run(tmp_path, BASE, "-o", str(out), "--secrets-dir", str(own)).exit_code == 0
    assert stat.S_IMODE(own.stat().st_mode) == 0o700 and (own / "noc-0.password").read_text() == "pw-1234"


# ---- warnings (findings 7, 14) ----------------------------------------------------------------------

def test_a_missing_password_file_is_warned_about(tmp_path):
    text = BASE.replace('"env:CITYDC_WEBHOOK_PASSWORD"', '"file:missing-pw.txt"')
    result = run(tmp_path, text)
    assert result.exit_code == 0
    assert f"warning: {tmp_path / 'missing-pw.txt'}: No such file or directory" in " ".join(result.output.split())


def test_no_receivers_is_warned_about(tmp_path):
    result = run(tmp_path, SITES)
    assert result.exit_code == 0
    assert "alerting.receivers is empty: every notification goes to the \"null\" receiver and is dropped" in \
        " ".join(result.output.split())


def test_the_generated_docs_config_passes_amtool(tmp_path):
    cfg = load_text(docs_example(), base_dir=tmp_path, check_files=False)
    am = tmp_path / "am.yml"
    am.write_text(amconfig.render(cfg, tmp_path / "secrets"))
    assert yaml.safe_load(am.read_text())["route"]["routes"][0]["continue"] is True
    checked = subprocess.run([amtool(), "check-config", str(am)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
