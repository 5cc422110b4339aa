"""``citydc noc``: config errors are named, never a traceback."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from citydc.cli.main import cli


def write(tmp_path, **extra):
    doc = {"sites": [{"id": "siwei", "name": "四維 Siwei"}], **extra}
    path = tmp_path / "citydc.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return str(path)


def test_show_without_prometheus_url_is_a_config_error(tmp_path):
    res = CliRunner().invoke(cli, ["-c", write(tmp_path), "noc", "show"])
    assert res.exit_code == 2
    assert "alerting.prometheus_url is not set" in res.output
    assert "Traceback" not in res.output


def test_bad_url_is_named(tmp_path):
    res = CliRunner().invoke(cli, ["-c", write(tmp_path), "noc", "show", "--prometheus-url", "ftp://x"])
    # the error names the option the user gave, not the config field it overrides
    assert res.exit_code == 2 and "--prometheus-url: expected an http:// or https:// URL" in res.output


def test_bad_link_selector_names_the_field(tmp_path):
    res = CliRunner().invoke(cli, ["-c", write(tmp_path, noc={"link_selector": "{ifAlias=~'x'}"}), "noc", "show"])
    assert res.exit_code == 2
    assert "noc.link_selector" in res.output and "label matchers without braces" in res.output


def test_unreachable_prometheus_shows_stale_and_exits_1(tmp_path):
    res = CliRunner().invoke(cli, ["-c", write(tmp_path, noc={"query_timeout_seconds": 2}), "noc", "show",
                                   "--json", "--prometheus-url", "http://127.0.0.1:1"])
    assert res.exit_code == 1, res.output
    assert '"status": "stale"' in res.output and "127.0.0.1:1 unreachable" in res.output
