"""citydc's command loads no pydantic plugin: none sees the config it validates.

A real plugin is installed on PYTHONPATH (a module and a dist-info whose ``entry_points.txt`` declares the
``pydantic`` group, as logfire's does); it leaves a mark when pydantic imports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def plugin_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    mark = tmp_path / "plugin-loaded"
    site = tmp_path / "site"
    site.mkdir()
    (site / "nosy_plugin.py").write_text(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['NOSY_MARK']).write_text('loaded')\n"
        "class Nosy:\n"
        "    def new_schema_validator(self, schema, schema_type, schema_type_path, schema_kind, config,"
        " plugin_settings):\n"
        "        return None, None, None\n"
        "plugin = Nosy()\n")
    info = site / "nosy_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nosy-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pydantic]\nnosy = nosy_plugin:plugin\n")
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env["NOSY_MARK"] = str(mark)
    return env, mark


def test_a_plain_model_loads_the_installed_plugin(plugin_env):
    """The control: the plugin is really installed and pydantic alone would load it."""
    env, mark = plugin_env
    subprocess.run([sys.executable, "-c", "import pydantic\nclass M(pydantic.BaseModel):\n    x: int = 1\n"],
                   env=env, check=True, timeout=120)
    assert mark.read_text() == "loaded"


def test_citydc_validates_its_config_with_no_plugin_loaded(plugin_env, tmp_path):
    env, mark = plugin_env
    config = tmp_path / "citydc.yaml"
    config.write_text("sites:\n  - {id: siwei, name: Siwei}\n  - {id: fengshan, name: Fengshan}\n")
    citydc = Path(sys.executable).with_name("citydc")
    proc = subprocess.run([str(citydc), "config", "check", str(config)], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not mark.exists()
