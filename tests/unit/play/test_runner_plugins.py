"""citydc.play.runner.import_ansible_runner: no ansible-runner plugin sees a citydc run's events.

Each case runs in a fresh interpreter with a real plugin installed beside ansible-runner: a distribution
on PYTHONPATH whose ``entry_points.txt`` declares ``ansible_runner.plugins``, as ansible-runner-http does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import json, sys
mode = sys.argv[1]
if mode == "citydc-first":
    from citydc.play.runner import import_ansible_runner
    runner = import_ansible_runner()
elif mode == "plain":
    import ansible_runner as runner
else:  # another import got there first, then citydc's
    import ansible_runner
    from citydc.play.runner import import_ansible_runner
    runner = import_ansible_runner()
from ansible_runner.interface import init_runner  # noqa: F401 (the API citydc calls is whole)
metadata = "importlib.metadata" in sys.modules
import ansible_runner.utils.importlib_compat as compat  # the real module again, for whoever asks later
print(json.dumps({"plugins": sorted(runner.plugins), "metadata": metadata,
                  "compat_real": hasattr(compat.importlib_metadata, "version")}))
"""


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """A directory holding an installed ansible-runner plugin (module and dist-info)."""
    (tmp_path / "leaky_plugin.py").write_text(
        "def event_handler(config, data):\n    pass\n\ndef status_handler(config, data):\n    pass\n")
    info = tmp_path / "leaky_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: leaky-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ansible_runner.plugins]\nleaky = leaky_plugin\n")
    return tmp_path


def probe(mode: str, path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout)


def test_a_plain_import_loads_the_installed_plugin(plugin_path):
    """The control: the plugin is really installed, and ansible-runner on its own would call it."""
    assert probe("plain", plugin_path) == {"plugins": ["leaky"], "metadata": True, "compat_real": True}


def test_citydc_loads_no_plugin_and_skips_the_entry_point_scan(plugin_path):
    got = probe("citydc-first", plugin_path)
    assert got == {"plugins": [], "metadata": False, "compat_real": True}


def test_a_plugin_loaded_by_an_earlier_import_is_dropped(plugin_path):
    assert probe("other-first", plugin_path)["plugins"] == []
