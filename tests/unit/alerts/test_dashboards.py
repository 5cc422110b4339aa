"""alerts/dashboards/*.json (Grafana dashboard models) without Grafana: stable unique uids, the
provisioned datasource uid on every panel and target (no ${DS_...} import placeholders), every panel
with PromQL targets, and every metric a target reads one the code exports or a recording rule defines.
(tests/lab/test_dashboards_promql.py runs every target against the lab's report Prometheus.)
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((ROOT / "alerts" / "dashboards").glob("*.json"))
DATASOURCE_UID = "citydc-prometheus"
# The uid each dashboard has always had: changing one breaks every link and bookmark to it.
STABLE_UIDS = {"site-overview.json": "citydc-site-overview", "link-utilisation.json": "citydc-link-utilisation",
               "interface-detail.json": "citydc-interface-detail", "agencies.json": "citydc-agencies",
               "backups.json": "citydc-backups"}

_spec = importlib.util.spec_from_file_location("alert_rules_test", Path(__file__).with_name("test_alert_rules.py"))
assert _spec and _spec.loader
_rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_rules)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def targets() -> list[tuple[str, str, str]]:
    return [(p.name, panel["title"], t["expr"]) for p in DASHBOARDS for panel in load(p)["panels"]
            for t in panel["targets"]]


def test_the_five_dashboards_with_stable_unique_uids() -> None:
    assert {p.name: load(p)["uid"] for p in DASHBOARDS} == STABLE_UIDS
    assert len(set(STABLE_UIDS.values())) == len(STABLE_UIDS)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_provisioned_datasource_and_no_import_placeholders(path: Path) -> None:
    text = path.read_text()
    assert "${DS_" not in text and "__inputs" not in text
    doc = load(path)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)) and doc["panels"]
    for panel in doc["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, panel["title"]
        assert panel["targets"], f"{path.name}: panel {panel['title']!r} has no targets"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID
            assert target["expr"].strip(), panel["title"]
    for variable in doc["templating"]["list"]:
        assert variable["datasource"]["uid"] == DATASOURCE_UID


def test_targets_read_only_exported_or_recorded_metrics() -> None:
    recorded = {r["record"] for _, r in _rules.rules() if "record" in r}
    known = _rules.exported_metrics() | recorded
    unknown = set()
    for name, title, expr in targets():
        plain = re.sub(r"\$__\w+", "5m", expr)
        unknown |= {(name, title, m) for m in _rules.metric_names(plain) if m not in known}
    assert not unknown, f"dashboards read metrics nothing exports or records: {sorted(unknown)}"


def test_provisioning_example_names_the_datasource_uid() -> None:
    doc = yaml.safe_load((ROOT / "alerts" / "dashboards" / "provisioning" / "datasources.yml").read_text())
    assert [d["uid"] for d in doc["datasources"]] == [DATASOURCE_UID]
