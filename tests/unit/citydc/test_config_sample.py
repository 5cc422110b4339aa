"""The reference sample (`citydc config sample`) and the README's `config check` example, against the real code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from citydc.cli.main import cli
from citydc.config import Config, ConfigInvalid, load
from citydc.config import models as config_models
from citydc.config.sample import REFERENCE_FILES, SAMPLE_PATH, reference_config, reference_text

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).with_name("fixtures")


def _models() -> list[type[BaseModel]]:
    return [c for c in vars(config_models).values()
            if isinstance(c, type) and issubclass(c, BaseModel) and c.__module__ == config_models.__name__
            and c is not config_models.Model]


def test_every_option_has_a_description_for_its_comment():
    missing = [f"{m.__name__}.{f}" for m in _models() for f, info in m.model_fields.items() if not info.description]
    assert missing == []


def test_committed_sample_equals_generated():
    assert SAMPLE_PATH.read_text(encoding="utf-8") == reference_text(), \
        "regenerate: citydc config sample > citydc/config/sample.yaml"
    assert CliRunner().invoke(cli, ["config", "sample", "--check"]).exit_code == 0


def test_sample_shows_every_section_and_every_option_with_its_comment():
    text = reference_text()
    raw = yaml.safe_load(text)
    assert list(raw) == list(Config.model_fields)  # every section, in the models' order
    # The first appearance of each model lists every one of its options, each after its comment.
    # Lines of the commented-out alternative (the Elasticsearch sink) count as shown: uncomment them.
    lines = [re.sub(r"^(\s*)# (?=\s)", r"\1", line) for line in text.splitlines()]
    for model in _models():
        if model in (config_models.Config,):
            continue
        for name, info in model.model_fields.items():
            comment = f"# {info.description}"
            assert any(line.strip().startswith(comment) and f"{name}:" in lines[i + 1]
                       for i, line in enumerate(lines[:-1])), f"{model.__name__}.{name} not shown with its comment"
    assert "(default: 127.0.0.1:9116)" in text  # a changed value names its default


def test_sample_is_a_real_data_centre_not_the_lab():
    cfg = reference_config()
    assert {d.site for d in cfg.devices} == {"siwei", "fengshan"}
    assert not any(d.address.startswith(("127.", "[::1]", "localhost")) for d in cfg.devices)
    refs = {ref.scheme for ref in _secret_refs(cfg)}
    assert refs == {"env", "file"}


def _secret_refs(cfg: Config):
    from citydc.config.loader import secret_refs

    return [ref for _, ref in secret_refs(cfg)]


def test_sample_loads_with_the_loader_beside_the_files_it_names(tmp_path):
    path = tmp_path / "citydc.yaml"
    path.write_text(reference_text(), encoding="utf-8")
    with pytest.raises(ConfigInvalid) as exc:  # the files it names are not there yet
        load(path)
    assert {e.path for e in exc.value.errors} == {
        "backup.jobs[0].offsite_repo.ssh_config", "backup.jobs[1].offsite_repo.ssh_config", "ldap[0].ca_file",
        "sso[0].ca_file",
        "device_logins.linux-hosts.key_file"}
    for name in REFERENCE_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    loaded = load(path)
    assert loaded.config.ldap[0].ca_file == tmp_path / "tls/city-ca.pem"
    result = CliRunner().invoke(cli, ["config", "check", str(path), "--json"])
    assert result.exit_code == 0, result.output


def test_readme_config_check_example_is_what_the_command_prints(monkeypatch):
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = readme.index("$ citydc config check bad.yaml")
    end = readme.index("$ echo $?", start)
    shown, shown_rc = readme[start + 1:end], int(readme[end + 1])
    monkeypatch.chdir(FIXTURES)
    result = CliRunner().invoke(cli, ["config", "check", "bad.yaml"])
    assert result.output.splitlines() == shown
    assert result.exit_code == shown_rc == 2
