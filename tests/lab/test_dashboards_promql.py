"""Every PromQL target and template-variable query of alerts/dashboards/*.json returns series in the
lab's report Prometheus (``prometheus-report``: a backfilled month of the series the collectors and the
backup textfile export, with the recording rules of alerts/ backfilled by promtool). Grafana's
variables are replaced by real values of the lab; ``label_values(m, l)`` becomes ``group by (l) (m)``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from citydc.lab import ports
from citydc.lab.report_history import span_for
from citydc.report.promapi import PrometheusClient

pytestmark = pytest.mark.lab

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "alerts" / "dashboards").glob("*.json"))
VALUES = {"$site": "siwei", "$device": "sw-siwei-acc1", "$interface": "Te1/1/1", "$__range": "1d",
          "$__rate_interval": "5m", "$__interval": "1m"}
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$")


def substitute(expr: str) -> str:
    for name in sorted(VALUES, key=len, reverse=True):
        expr = expr.replace(name, VALUES[name])
    assert "$" not in expr, f"a variable without a lab value: {expr}"
    m = _LABEL_VALUES.match(expr.strip())
    return f"group by ({m.group(2)}) ({m.group(1)})" if m else expr


def queries() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        out += [(f"{path.stem}: {p['title']} {t['refId']}", t["expr"]) for p in doc["panels"] for t in p["targets"]]
        out += [(f"{path.stem}: variable {v['name']}", v["query"]["query"]) for v in doc["templating"]["list"]]
    return out


QUERIES = queries()


@pytest.fixture(scope="module")
def prometheus(lab_up) -> tuple[PrometheusClient, float]:
    lab_up("prometheus-report")
    span = span_for(time.time())
    return PrometheusClient(f"http://{ports.HOST}:{ports.PROMETHEUS_REPORT}"), span.start + 15 * 86400 + 3600


def test_there_are_queries_to_run() -> None:
    assert len(DASHBOARDS) == 5 and len(QUERIES) >= 30


@pytest.mark.parametrize("name,expr", QUERIES, ids=[q[0] for q in QUERIES])
def test_every_query_returns_series(prometheus, name: str, expr: str) -> None:
    client, at = prometheus
    result = client.query(substitute(expr), at)
    assert result, f"{name}: no series for {substitute(expr)}"
