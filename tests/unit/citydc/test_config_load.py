"""Checked and resolved once, at load: modules, patterns, files that must exist, the one path rule,
the tools section, and the import boundary of citydc.config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from citydc.config import ConfigInvalid, load, load_text
from citydc.config.models import BUILTIN_SNMP_MODULES, Repository

HEAD = """\
sites:
  - {id: siwei, name: 四維 Siwei}
  - {id: fengshan, name: 鳳山 Fengshan}
"""


def errors_of(text: str, **kwargs) -> dict[str, str]:
    with pytest.raises(ConfigInvalid) as exc:
        load_text(text, **kwargs)
    return {e.path: e.message for e in exc.value.errors}


# -- snmp_module and name_pattern -------------------------------------------------------------------------


def test_builtin_module_names_are_the_exporters():
    # citydc.config cannot import the collectors, so it names the built-in modules as data.
    from citydc.collectors.snmp.modules import BUILTIN_MODULES

    assert set(BUILTIN_SNMP_MODULES) == set(BUILTIN_MODULES)


def test_snmp_module_must_be_built_in_or_configured():
    text = HEAD + """\
snmp:
  modules:
    uplinks: {columns: [ifName, ifHCInOctets]}
devices:
  - {name: a, address: 10.0.0.1, site: siwei, role: core, snmp_module: if_mib}
  - {name: b, address: 10.0.0.2, site: siwei, role: core, snmp_module: if_mib_bytes}
  - {name: c, address: 10.0.0.3, site: siwei, role: core, snmp_module: uplinks}
  - {name: d, address: 10.0.0.4, site: siwei, role: core, snmp_module: if_mbi}
"""
    assert errors_of(text) == {
        "devices[3].snmp_module": 'unknown SNMP module "if_mbi" (built in or in snmp.modules: if_mib, '
                                  "if_mib_bytes, uplinks)"}


def test_name_pattern_must_compile():
    text = HEAD + "snmp:\n  modules:\n    m: {columns: [ifName], filter: {name_pattern: '^(Te'}}\n"
    errors = errors_of(text)
    assert list(errors) == ["snmp.modules.m.filter.name_pattern"]
    assert errors["snmp.modules.m.filter.name_pattern"].startswith("not a valid regular expression: missing )")


# -- files that must exist --------------------------------------------------------------------------------

REPO_BODY = """\
backup:
  jobs:
    - name: j
      site: siwei
      sources: [data]
      local_repo: {{url: restic/local, password: 'file:secrets/pw', site: siwei}}
      offsite_repo: {{url: 'sftp:u@h:/r', password: env:PW, site: fengshan, ssh_config: {ssh}}}
ldap:
  - {{name: d, url: 'ldap://h', bind_dn: cn=a, bind_password: env:P, base_dn: dc=x, site: siwei, ca_file: {ca}}}
security_log:
  sink: {{kind: elasticsearch, url: 'https://es:9200', ca_file: {ca}}}
"""


def repo_with_ssh(ssh: str, ca: str) -> str:
    return HEAD + REPO_BODY.format(ssh=ssh, ca=ca)


def test_files_citydc_reads_must_exist_at_load_and_errors_say_the_rule(tmp_path):
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text(repo_with_ssh("ssh/config", "/nonexistent/ca.pem"))
    with pytest.raises(ConfigInvalid) as exc:
        load(cfg)
    errors = {e.path: e.message for e in exc.value.errors}
    assert errors == {
        "backup.jobs[0].offsite_repo.ssh_config":
            f"file not found: {tmp_path}/ssh/config (relative paths are relative to the config file)",
        "ldap[0].ca_file": "file not found: /nonexistent/ca.pem",
        "security_log.sink.ca_file": "file not found: /nonexistent/ca.pem",
    }
    # A directory is not a file either.
    (tmp_path / "ssh" / "config").mkdir(parents=True)
    with pytest.raises(ConfigInvalid) as exc:
        load(cfg)
    assert {e.path: e.message for e in exc.value.errors}["backup.jobs[0].offsite_repo.ssh_config"] == \
        f"not a regular file: {tmp_path}/ssh/config"


def test_every_path_field_is_relative_to_the_config_file_and_absolute_after_load(tmp_path, monkeypatch):
    (tmp_path / "etc" / "ssh").mkdir(parents=True)
    (tmp_path / "etc" / "ssh" / "config").write_text("Host *\n")
    (tmp_path / "etc" / "ca.pem").write_text("x\n")
    cfg = tmp_path / "etc" / "citydc.yaml"
    cfg.write_text(repo_with_ssh("ssh/config", "ca.pem") + """\
  spool_dir: spool
sso:
  - {name: kc, log_path: ../log/events.json, site: siwei}
snmp:
  state_dir: state/snmp
tools:
  restic: bin/restic
  ssh: ssh
""")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory plays no part
    c = load(cfg).config
    etc = tmp_path / "etc"
    job = c.backup.jobs[0]
    assert job.sources == [etc / "data"]
    assert job.local_repo.url == f"{etc}/restic/local"
    assert job.local_repo.password.file_path() == etc / "secrets/pw"
    assert job.offsite_repo.url == "sftp:u@h:/r"  # remote: not a local path
    assert job.offsite_repo.ssh_config == etc / "ssh/config"
    assert c.ldap[0].ca_file == etc / "ca.pem" and c.security_log.sink.ca_file == etc / "ca.pem"
    assert c.security_log.spool_dir == etc / "spool"
    assert c.sso[0].log_path == tmp_path / "log/events.json"
    assert c.snmp.state_dir == etc / "state/snmp"
    assert c.backup.state_dir == etc / "var/backup"  # a default follows the rule too
    assert c.tools.restic == f"{etc}/bin/restic" and c.tools.ssh == "ssh"  # a bare name is looked up in PATH


def test_local_prefix_and_absolute_urls_of_restic(tmp_path):
    base = {"base_dir": tmp_path}
    assert Repository.model_validate({"url": "local:r", "password": "env:P", "site": "x"}, context=base).url == \
        f"local:{tmp_path}/r"
    for url in ("/srv/r", "rest:https://h/r", "s3:s3.example/b", "rclone:remote:r", "b2:b:r"):
        assert Repository.model_validate({"url": url, "password": "env:P", "site": "x"}, context=base).url == url


def test_check_files_off_skips_existence_but_still_resolves(tmp_path):
    c = load_text(repo_with_ssh("ssh/config", "ca.pem"), base_dir=tmp_path, check_files=False)
    assert c.ldap[0].ca_file == tmp_path / "ca.pem"


def test_relative_secret_file_is_read_relative_to_the_config_not_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "community").write_text("s3cret\n")
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text(HEAD + "snmp_auth:\n  v2: {version: 2c, community: 'file:secrets/community'}\n")
    monkeypatch.chdir(Path("/"))
    assert load(cfg).config.snmp_auth["v2"].community.reveal() == "s3cret"


# -- tools ------------------------------------------------------------------------------------------------


def test_tools_hold_only_programs_citydc_runs_and_old_keys_say_so():
    errors = errors_of(HEAD + "tools: {restic: /opt/restic, snmpbulkwalk: /usr/bin/snmpbulkwalk}\n")
    assert errors == {"tools.snmpbulkwalk": "no longer a setting: citydc does not run this program itself "
                                            "(the lab finds its own); remove it"}


def test_tools_ssh_is_the_program_restic_runs_for_sftp(tmp_path):
    from citydc.backup import restic

    (tmp_path / "ssh_config").write_text("Host *\n")
    c = load_text(HEAD + f"""\
tools: {{ssh: /opt/openssh/bin/ssh}}
backup:
  jobs:
    - name: j
      site: siwei
      sources: [/srv]
      local_repo: {{url: 'sftp:u@h:/r', password: env:PW, site: siwei, ssh_config: {tmp_path}/ssh_config}}
""")
    access = restic.repo_access(c.backup.jobs[0].local_repo, {"PW": "x"}, ssh=c.tools.ssh)
    assert access.options == (f"sftp.command=/opt/openssh/bin/ssh -F {tmp_path}/ssh_config u@h -s sftp",)


def test_backup_runner_takes_restic_and_ssh_from_tools():
    # The one place the backup commands build their runner: both programs come from the config.
    import inspect

    from citydc.cli import backup_cmd

    source = inspect.getsource(backup_cmd._runner)
    assert "binary=cfg.tools.restic" in source and "ssh=cfg.tools.ssh" in source


# -- host:port --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "message"), [
    ("10.0.0.1:0", "port must be 1-65535, got '0'"),
    ("[::1", "expected HOST, HOST:PORT or [IPv6]:PORT, got '[::1'"),
    ("[nope]:161", "expected an IPv6 address inside [brackets], got '[nope]:161'"),
    ("a:b:c", "expected HOST, HOST:PORT or [IPv6]:PORT, got 'a:b:c'"),
])
def test_device_address_and_listen_use_the_one_parser(address, message):
    text = HEAD + f"devices:\n  - {{name: a, address: '{address}', site: siwei, role: core}}\n" \
                  f"snmp: {{listen: '{address}'}}\n"
    assert errors_of(text) == {"devices[0].address": message, "snmp.listen": message}


# -- import boundary --------------------------------------------------------------------------------------

FORBIDDEN = ("citydc.lab", "citydc.collectors", "citydc.backup")


def test_config_and_seclog_import_nothing_from_lab_collectors_or_backup():
    """Import every module of citydc.config and citydc.seclog in a fresh interpreter, then look at sys.modules."""
    script = """
import importlib, json, pkgutil, sys
import citydc.config, citydc.seclog
for pkg in (citydc.config, citydc.seclog):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
# Everything a load touches, too.
from citydc.config import sample
from citydc.config.loader import load_text
load_text(sample.reference_text(), check_files=False)
print(json.dumps(sorted(sys.modules)))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = json.loads(proc.stdout)
    assert "citydc.config.sample" in loaded and "citydc.seclog.shipper" in loaded  # the walk really ran
    assert [m for m in loaded if m.startswith(FORBIDDEN)] == []


def test_no_deferred_import_of_lab_collectors_or_backup_in_config_or_seclog():
    """The same boundary for imports inside functions, which a plain import does not run."""
    import ast

    import citydc.config
    import citydc.seclog

    offenders = []
    for pkg in (citydc.config, citydc.seclog):
        for path in Path(pkg.__path__[0]).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.name}: {n}" for n in names if n.startswith(FORBIDDEN)]
    assert offenders == []


def test_union_tags_are_dropped_from_paths_but_a_profile_named_like_one_keeps_its_name():
    text = HEAD + "snmp_auth:\n  '3': {version: '3', username: u, security_level: authNoPriv, bogus: 1}\n" \
                  "  sqlite: {version: 2c, community: inline-secret}\n" \
                  "security_log:\n  sink: {kind: sqlite, pth: x.db}\n"
    assert set(errors_of(text)) == {"snmp_auth.3.bogus", "snmp_auth.sqlite.community",
                                    "security_log.sink.pth"}
