"""Files and addresses a command is told to use that cannot work: one line naming the option, the path or
address and the reason, exit 2, no traceback (findings 3, output files, and 22 of the exploratory test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, Gauge

from citydc.cli.main import cli
from citydc.seclog.metrics import write_textfile


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "citydc.yaml"
    path.write_text("sites: [{id: siwei, name: Siwei}]\n"
                    "security_log: {spool_dir: spool, sink: {kind: sqlite, path: seclog.db}}\n", encoding="utf-8")
    return path


def refused(cfg: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["-c", str(cfg), *args])
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not an OSError traceback
    # the error line; warnings about the config (an empty receiver list, say) may come before it
    return "".join(line for line in result.stderr.splitlines(keepends=True) if not line.startswith("warning: "))


@pytest.mark.parametrize("command", [("alerts", "amconfig"), ("collect", "snmp-targets")])
def test_an_output_below_a_file_names_the_path_and_the_reason(cfg, tmp_path, command):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("", encoding="utf-8")
    target = blocker / "sub" / "out.yml"
    assert refused(cfg, *command, "--output", str(target)) == (
        f"error: --output: cannot write {target}: Not a directory\n")
    target = blocker / "out.yml"
    assert refused(cfg, *command, "--output", str(target)) == (
        f"error: --output: cannot write {target}: {blocker} is not a directory\n")


@pytest.mark.parametrize("command", [("alerts", "amconfig"), ("collect", "snmp-targets")])
def test_an_output_whose_directory_cannot_be_made(cfg, command):
    target = "/proc/no-such-dir/out.yml"  # nobody, root included, makes a directory in /proc
    assert refused(cfg, *command, "--output", target) == (
        f"error: --output: cannot write {target}: No such file or directory\n")


def test_outputs_still_written(cfg, tmp_path):
    am, targets = tmp_path / "new" / "am.yml", tmp_path / "new" / "targets.json"
    assert CliRunner().invoke(cli, ["-c", str(cfg), "alerts", "amconfig", "--output", str(am)]).exit_code == 0
    assert CliRunner().invoke(cli, ["-c", str(cfg), "collect", "snmp-targets", "-o", str(targets)]).exit_code == 0
    assert am.stat().st_mode & 0o777 == 0o600 and "route:" in am.read_text(encoding="utf-8")
    assert json.loads(targets.read_text(encoding="utf-8")) == []
    assert [p.name for p in am.parent.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_the_textfile_error_names_the_textfile_not_its_temporary(tmp_path):
    """What `log ship --textfile` reports: the .prom path the user gave (the client names a temporary file)."""
    registry = CollectorRegistry()
    Gauge("citydc_probe", "probe", registry=registry).set(1)
    target = tmp_path / "no-such-dir" / "citydc_seclog.prom"
    with pytest.raises(FileNotFoundError) as exc:
        write_textfile(registry, target)
    assert exc.value.filename == str(target)
    assert str(exc.value) == f"[Errno 2] No such file or directory: '{target}'"


@pytest.mark.parametrize("follow", [False, True])  # the service stops at its start, before following
def test_log_ship_textfile_in_a_missing_directory(cfg, tmp_path, follow):
    target = tmp_path / "no-such-dir" / "citydc_seclog.prom"
    result = CliRunner().invoke(cli, ["-c", str(cfg), "log", "ship", "--textfile", str(target),
                                      *(["--follow"] if follow else [])])
    if not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 2
    assert result.stderr.endswith(f"error: --textfile: cannot write {target}: No such file or directory\n")


# -- finding 22: an address to serve on that does not resolve -------------------------------------------------

@pytest.mark.parametrize(("listen", "message"), [
    ("bogus!", "--listen: cannot resolve 'bogus!': Name or service not known"),  # refused without asking DNS
    ("bogus!:9095", "--listen: cannot resolve 'bogus!': Name or service not known"),
    ("a..b", "--listen: 'a..b' is not a host name or an address"),
    ("127.0.0.1:99999", "--listen: port must be 1-65535, got '99999'"),  # as before
])
def test_webhook_listen_that_cannot_resolve_is_a_usage_error(cfg, listen, message):
    stderr = refused(cfg, "alerts", "webhook", "--listen", listen)
    assert stderr.startswith(f"error: {message}\n"), stderr
    assert not (cfg.parent / "var").exists()  # refused before the ledger was opened
