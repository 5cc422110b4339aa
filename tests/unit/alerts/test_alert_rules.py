"""alerts/*.rules.yml without promtool: every alert is labelled, annotated, has a runbook and promtool
test cases that fire it and that show it quiet, and every metric a rule reads is one the code exports
or a recording rule defines. (promtool itself runs in tests/lab/test_alert_rules_promtool.py.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from citydc.collectors.snmp.exposition import COUNTER_METRICS

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "alerts"
RUNBOOKS = ROOT / "docs" / "runbooks"
RULE_FILES = sorted(p for p in ALERTS.glob("*.rules.yml"))
SEVERITIES = {"critical", "warning", "info"}
RUNBOOK_SECTIONS = ("## What it means", "## First checks", "## Likely causes", "## How to resolve")
# An always-firing alert has no quiet case to test.
ALWAYS_FIRING = {"Watchdog"}

# The modules whose metric families are what Prometheus scrapes from citydc today.
EXPORTING_MODULES = ("collectors/snmp/exposition.py", "collectors/netflow/metrics.py",
                     "collectors/netflow/snmp_feed.py", "backup/metrics.py", "citydc/seclog/metrics.py",
                     "citydc/alert_webhook.py", "sso/metrics.py", "backup/configs.py")
# Metrics of other exporters the rules read, each with where it comes from.
EXTERNAL_METRICS = {
    "haproxy_server_status": "HAProxy's built-in prometheus-exporter (playbooks/roles/lb: the stats frontend)",
    "up": "Prometheus' own scrape health of a target (the scrape jobs of docs/operations.md)",
}
_FAMILY = re.compile(r"\b(Counter|CounterMetricFamily|Gauge|GaugeMetricFamily|gauge)\(\s*\"(citydc_[a-z0-9_]+)\"")
# Families named by an f-string over the units (netflow/metrics.py: interface, agency, protocol).
_UNIT_FAMILY = re.compile(r"\bCounterMetricFamily\(\s*f\"(citydc_[a-z0-9_]+)\{unit\}\"")
_UNITS_LOOP = 'for unit, index in (("bytes", 0), ("packets", 1))'
_SAMPLE = re.compile(r"\bSample\(\s*\"(citydc_[a-z0-9_]+)\",\s*\"(gauge|counter)\"")
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "offset"}


def exported_metrics() -> set[str]:
    """Given the exporting modules' source, return the series names they expose (counters with _total)."""
    names: set[str] = set()
    for rel in EXPORTING_MODULES:
        for kind, name in _FAMILY.findall((ROOT / rel).read_text()):
            counter = kind.startswith("Counter")
            names.add(f"{name}_total" if counter and not name.endswith("_total") else name)
        source = (ROOT / rel).read_text()
        for prefix in _UNIT_FAMILY.findall(source):
            assert _UNITS_LOOP in source, f"{rel}: {prefix}{{unit}} no longer loops over bytes and packets"
            names.update(f"{prefix}{unit}_total" for unit in ("bytes", "packets"))
        for name, kind in _SAMPLE.findall((ROOT / rel).read_text()):
            names.add(f"{name}_total" if kind == "counter" else name)
    for metric, _help, _labels in COUNTER_METRICS.values():
        names.add(f"{metric}_total")
    return names


def metric_names(expr: str) -> set[str]:
    """Given a PromQL expression, return the metric names it selects."""
    s = re.sub(r'"(\\.|[^"\\])*"', "", expr)
    s = re.sub(r"\{[^}]*\}", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\boffset\s+-?\w+", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", " ", s)
    tokens = re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", s)
    return {m.group(1) for m in tokens if not m.group(2) and m.group(1) not in PROMQL_WORDS}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in RULE_FILES:
        for group in load(path)["groups"]:
            for rule in group["rules"]:
                yield path, rule


def alerts() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, r) for p, r in rules() if "alert" in r]


def test_metric_name_parser() -> None:
    # The guard below is only as good as this parser: labels, functions, durations and numbers are not names.
    assert metric_names('time() - a_b{step=~"x|y"} > 26 * 3600 or (c unless d)') == {"a_b", "c", "d"}
    assert metric_names("sum by (site) (rate(x_total[5m])) / ignoring(direction) group_left() y:z:w > 1e9") == \
        {"x_total", "y:z:w"}
    assert metric_names("a - a offset 1d <= -10") == {"a"}


def test_exported_metrics_are_read_from_the_code() -> None:
    names = exported_metrics()
    assert {"citydc_snmp_up", "citydc_snmp_if_receive_bytes_total", "citydc_netflow_socket_drops_total",
            "citydc_backup_last_outcome", "citydc_seclog_spool_backlog_events",
            "citydc_netflow_snmp_feed_up", "citydc_snmp_if_oper_status", "citydc_netflow_agency_bytes_total",
            "citydc_netflow_interface_packets_total"} <= names
    assert "citydc_snmp_up_total" not in names and "citydc_seclog_delivery_errors_total_total" not in names


def test_rules_read_only_exported_or_recorded_metrics() -> None:
    recorded = {r["record"] for _, r in rules() if "record" in r}
    known = exported_metrics() | recorded | set(EXTERNAL_METRICS)
    unknown = {(p.name, r.get("alert") or r["record"], name)
               for p, r in rules() for name in metric_names(str(r["expr"])) if name not in known}
    assert not unknown, f"rules read metrics nothing exports or records: {sorted(unknown)}"


def test_recording_rule_names_follow_level_metric_operations() -> None:
    for path, rule in rules():
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:citydc_[a-z0-9_]+:[a-z0-9_]+", rule["record"]), (path.name, rule["record"])


def test_every_recording_rule_has_a_promtool_case() -> None:
    recorded = {r["record"] for _, r in rules() if "record" in r}
    evaluated = {name for path in RULE_FILES
                 for case in load(path.with_name(path.name.replace(".rules.yml", ".rules.test.yml")))["tests"]
                 for check in case.get("promql_expr_test", []) for name in metric_names(check["expr"])}
    assert recorded - evaluated == set(), "recording rules no promql_expr_test evaluates"


def test_alert_names_are_unique() -> None:
    names = [r["alert"] for _, r in alerts()]
    assert len(names) == len(set(names))
    assert len(names) >= 18


@pytest.mark.parametrize("path,rule", alerts(), ids=lambda v: v["alert"] if isinstance(v, dict) else v.name)
def test_alert_has_labels_annotations_and_runbook(path: Path, rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name}: annotation {key} missing"
    assert annotations["runbook_url"] == f"docs/runbooks/{name}.md"
    runbook = ROOT / annotations["runbook_url"]
    assert runbook.is_file(), f"{name}: no runbook {runbook}"
    text = runbook.read_text()
    assert text.startswith(f"# {name}\n")
    for section in RUNBOOK_SECTIONS:
        assert section in text, f"{runbook.name}: no section {section!r}"


def test_every_runbook_belongs_to_an_alert() -> None:
    names = {r["alert"] for _, r in alerts()}
    assert {p.stem for p in RUNBOOKS.glob("*.md")} == names


def promtool_cases() -> tuple[dict[str, list[dict[str, Any]]], set[str]]:
    """Return {alert: firing exp_alerts} and the alerts some case expects quiet, over every test file."""
    firing: dict[str, list[dict[str, Any]]] = {}
    quiet: set[str] = set()
    for rule_file in RULE_FILES:
        test_file = rule_file.with_name(rule_file.name.replace(".rules.yml", ".rules.test.yml"))
        assert test_file.is_file(), f"{rule_file.name} has no promtool test file {test_file.name}"
        doc = load(test_file)
        assert doc["rule_files"] == [rule_file.name]
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    firing.setdefault(check["alertname"], []).extend(check["exp_alerts"])
                else:
                    quiet.add(check["alertname"])
    return firing, quiet


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    firing, quiet = promtool_cases()
    names = {r["alert"] for _, r in alerts()}
    assert names - firing.keys() == set(), "alerts no promtool case fires"
    assert names - ALWAYS_FIRING - quiet == set(), "alerts no promtool case shows quiet"
    assert (firing.keys() | quiet) - names == set(), "promtool cases of alerts that do not exist"


def test_every_firing_case_carries_site_and_severity() -> None:
    # site comes from the series (or a static label): the expected labels prove the expression keeps it.
    firing, _ = promtool_cases()
    severity = {r["alert"]: r["labels"]["severity"] for _, r in alerts()}
    for name, expected in firing.items():
        for alert in expected:
            labels = alert["exp_labels"]
            assert labels.get("site"), f"{name}: a firing case without site"
            assert labels.get("severity") == severity[name]
            assert alert["exp_annotations"]["runbook_url"] == f"docs/runbooks/{name}.md"


def test_interface_samples_share_the_label_set_the_rules_join_on() -> None:
    # utilisation = bits / speed (ignoring direction), errors / packets (sum without cast), and
    # UplinkDown = oper and admin all match on the full label set: they hold only while the exporter
    # gives every sample of one interface the same labels, packets adding nothing but cast.
    from citydc.collectors.snmp.collector import InterfaceRow
    from citydc.collectors.snmp.exposition import interface_samples

    row = InterfaceRow(7, "Te1/1/1", "uplink to core-1", dict.fromkeys(COUNTER_METRICS, 1),
                       oper_status=1, admin_status=1, speed_bps=1e10)
    samples = interface_samples([row], "siwei", "sw1")
    assert {s.metric for s in samples} >= {"citydc_snmp_if_speed_bits_per_second", "citydc_snmp_if_oper_status",
                                           "citydc_snmp_if_admin_status", "citydc_snmp_if_receive_bytes"}
    label_sets = {tuple(kv for kv in s.labels if kv[0] != "cast") for s in samples}
    assert label_sets == {(("site", "siwei"), ("device", "sw1"), ("ifName", "Te1/1/1"),
                           ("ifAlias", "uplink to core-1"), ("ifIndex", "7"))}
    assert {k for s in samples for k, _ in s.labels if k == "cast"} == {"cast"}
