"""The lab-scale LinkUtilisationHigh (lab/prometheus.py) is the production rule of alerts/snmp.rules.yml with
only its window, threshold and duration changed, for the busy link only; and the busy link's netns setup."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from citydc.lab import busy_link, softflowd
from citydc.lab.base import LabError
from citydc.lab.prometheus import (
    ALERTS,
    LAB_LINK_FOR,
    LAB_LINK_THRESHOLD,
    LAB_UTILISATION,
    lab_link_rules,
    lab_rules_yml,
)


def production_alert() -> dict:
    doc = yaml.safe_load((ALERTS / "snmp.rules.yml").read_text())
    (rule,) = [r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "LinkUtilisationHigh"]
    return rule


def test_lab_alert_is_the_production_one_at_lab_scale() -> None:
    group = lab_link_rules()
    (alert,) = [r for r in group["rules"] if "alert" in r]
    prod = production_alert()
    assert alert["alert"] == prod["alert"]
    assert alert["labels"] == {**prod["labels"], "scale": "lab"}
    assert {k: v for k, v in alert["annotations"].items() if k != "description"} == {
        k: v for k, v in prod["annotations"].items() if k != "description"}
    assert alert["expr"] == f"{LAB_UTILISATION} > {LAB_LINK_THRESHOLD}" and alert["for"] == LAB_LINK_FOR
    assert "0.2%" in alert["annotations"]["description"]
    # Every series the lab rules read is the busy link's interface: no other link can fire at lab scale.
    for rule in group["rules"]:
        if "record" in rule:
            assert f'{{ifName="{busy_link.HOST_IF}"}}' in rule["expr"], rule
    bits = [r for r in group["rules"] if r.get("record", "").startswith("link:citydc_snmp_if_bits:")]
    assert {r["labels"]["direction"] for r in bits} == {"in", "out"}


def test_lab_rule_file_keeps_the_webhook_rule_and_adds_the_link_group() -> None:
    doc = yaml.safe_load(lab_rules_yml())
    assert [g["name"] for g in doc["groups"]] == ["citydc-lab", "citydc-lab-link"]
    assert doc["groups"][0]["rules"][0]["alert"] == "LabWebhookBadRequest"


def test_a_production_rule_of_another_shape_is_a_clear_error(tmp_path: Path) -> None:
    rules = tmp_path / "snmp.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"alert": "LinkUtilisationHigh", "expr": "some_other_metric > 0.8", "labels": {"severity": "warning"},
         "annotations": {"summary": "s"}}]}]}))
    with pytest.raises(LabError, match=r"snmp.rules.yml.*lab_link_rules"):
        lab_link_rules(rules)
    rules.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": []}]}))
    with pytest.raises(LabError, match="expected one LinkUtilisationHigh alert, found 0"):
        lab_link_rules(rules)


def test_busy_link_netns_is_its_own() -> None:
    argvs = busy_link.netns_setup_argvs()
    assert argvs[0] == ("ip", "netns", "add", "citydc-noc")
    create = argvs[1]
    assert create.count("mtu") == 2 and create[create.index("netns") + 1] == busy_link.NAMESPACE
    # Nothing shared with the NetFlow lab's namespace, interfaces or subnet.
    assert busy_link.NAMESPACE != softflowd.NAMESPACE
    assert {busy_link.HOST_IF, "cdnoc1"}.isdisjoint({softflowd.HOST_IF, "cdnf1"})
    assert busy_link.HOST_ADDRESS.rsplit(".", 1)[0] != softflowd.HOST_ADDRESS.rsplit(".", 1)[0]
    assert busy_link.DATAGRAM + 28 <= busy_link.MTU  # one frame per datagram
