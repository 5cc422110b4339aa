"""bench/seclog.py's ES figure: the interquartile mean of the paired ratios ignores a few disturbed pairs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))  # seclog.py imports seclog_sqlite as a sibling, as when run as a script
    spec = importlib.util.spec_from_file_location("bench_seclog", BENCH / "seclog.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        sys.path.remove(str(BENCH))


def test_trimmed_mean_drops_the_outer_quarters(bench):
    steady = [0.94, 0.95, 0.93, 0.94, 0.95, 0.94, 0.93, 0.95]
    disturbed = [*steady[:6], 0.52, 1.28]  # two pairs hit by other work, one each way
    assert bench.trimmed_mean(steady) == pytest.approx(0.94, abs=0.003)
    assert bench.trimmed_mean(disturbed) == pytest.approx(0.94, abs=0.003)
    assert abs(bench.pooled_ratio(disturbed, [1.0] * 8) - 0.94) > 0.03  # the old figure moved


def test_trimmed_mean_of_few_values_and_none(bench):
    assert bench.trimmed_mean([2.0]) == 2.0
    assert bench.trimmed_mean([1.0, 3.0]) == 2.0
    assert bench.trimmed_mean([1.0, 2.0, 3.0, 100.0]) == 2.5
    with pytest.raises(ValueError):
        bench.trimmed_mean([])
