"""Modules as data (citydc.collectors.snmp.modules)."""

import pytest

from citydc.collectors.snmp.exposition import COUNTER_METRICS
from citydc.collectors.snmp.modules import BUILTIN_MODULES, COLUMNS, FAMILIES, build_modules
from citydc.config.models import SnmpModule


def test_every_family_column_is_a_known_column_of_the_right_width():
    for fam in FAMILIES:
        assert fam.key in COUNTER_METRICS and COUNTER_METRICS[fam.key][0].startswith("citydc_snmp_if_")
        assert COLUMNS[fam.column].kind in ("counter64", "counter32")
        if fam.fallback:
            assert COLUMNS[fam.column].kind == "counter64" and COLUMNS[fam.fallback].kind == "counter32"


def test_if_mib_splits_static_and_dynamic_columns():
    m = BUILTIN_MODULES["if_mib"]
    assert {"ifName", "ifAlias", "ifDescr", "ifHighSpeed"} <= set(m.static_columns)
    assert "ifHCInOctets" in m.dynamic_columns and "ifName" not in m.dynamic_columns


def test_configured_module_adds_label_columns_and_filter():
    mods = build_modules({"uplinks": SnmpModule(columns=["ifHCInOctets"], filter={"name_pattern": "^Te"})})
    m = mods["uplinks"]
    assert m.static_columns == ("ifName", "ifAlias")
    assert m.keep({"ifName": {1: b"Te1/1/1", 2: b"Gi1/0/1"}}, 1)
    assert not m.keep({"ifName": {1: b"Te1/1/1", 2: "Gi1/0/1"}}, 2)
    assert "if_mib" in mods


def test_alias_filter_drops_empty_aliases():
    m = build_modules({"a": SnmpModule(columns=["ifHCInOctets"], filter={"alias_required": True})})["a"]
    assert m.keep({"ifAlias": {1: b"to core"}}, 1)
    assert not m.keep({"ifAlias": {1: b""}}, 1)


def test_bad_regex_names_the_field():
    # Refused by the config model, so a config with it never loads (the loader adds snmp.modules.x).
    with pytest.raises(ValueError, match=r"filter.name_pattern\n.*not a valid regular expression"):
        build_modules({"x": SnmpModule(columns=["ifHCInOctets"], filter={"name_pattern": "("})})


def test_unknown_column_is_rejected_by_the_config_model():
    with pytest.raises(ValueError, match=r"ifBogus|literal"):
        SnmpModule(columns=["ifBogus"])
