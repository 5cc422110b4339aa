from __future__ import annotations

import pytest
from click.testing import CliRunner

from citydc.cli.main import LAZY_COMMANDS, PLANNED, cli

ALL_GROUPS = ["config", "lab", "collect", "play", "backup", "audit", "log", "noc", "report", "demo"]


def test_root_help_lists_every_concern():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ALL_GROUPS:
        assert f"\n  {name} " in result.output


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_every_command_imports_and_has_help(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: "), result.output
    command = cli.get_command(None, name)
    assert command is not None and command.name == name  # the mapping points at the right object


def test_planned_groups_say_so(monkeypatch):
    # Every concern is built today; a group added to PLANNED later must still say so in its help.
    monkeypatch.setitem(PLANNED, "someday", ("A concern still to come.", "a later issue"))
    result = CliRunner().invoke(cli, ["someday", "--help"])
    assert result.exit_code == 0 and "Not built yet" in result.output and "a later issue" in result.output


def test_unknown_command_is_a_usage_error():
    assert CliRunner().invoke(cli, ["nosuch"]).exit_code == 2


def test_commands_run_with_the_cyclic_collector_on(monkeypatch):
    """main() pauses the cyclic GC while a command's modules are imported; the command itself runs with it on."""
    import gc

    import click

    from citydc.cli.main import LazyGroup

    seen = []

    @click.command("probe")
    def probe() -> None:
        seen.append(gc.isenabled())

    monkeypatch.setattr(LazyGroup, "get_command", lambda self, ctx, name: probe)
    gc.disable()  # as main() leaves it
    try:
        result = CliRunner().invoke(cli, ["probe"])
    finally:
        gc.enable()
    assert result.exit_code == 0, result.output
    assert seen == [True]


def test_audit_ldap_turns_the_collector_back_on_when_it_ends(tmp_path):
    import gc

    cfg = tmp_path / "citydc.yaml"
    cfg.write_text("sites: [{id: siwei, name: Siwei}]\n")
    try:
        result = CliRunner().invoke(cli, ["--config", str(cfg), "audit", "ldap"])
        assert result.exit_code == 2, result.output  # no ldap sources: the config error, from inside the audit
        assert gc.isenabled()
    finally:
        gc.enable()


def test_audit_auth_restores_the_collector_settings_when_it_ends(tmp_path):
    import gc

    cfg = tmp_path / "citydc.yaml"
    cfg.write_text("sites: [{id: siwei, name: Siwei}]\n")
    before = gc.get_threshold()
    result = CliRunner().invoke(cli, ["--config", str(cfg), "audit", "auth"])
    assert result.exit_code == 2, result.output  # nothing to read: the config error, from inside the command
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
