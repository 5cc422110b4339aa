"""file_sd generation and scrape config (citydc.collectors.snmp.targets)."""

import json

import yaml

from citydc.collectors.snmp.targets import file_sd, scrape_config, write_atomic
from citydc.config.models import Device


def devices():
    return [Device(name="b", address="10.0.0.2", site="siwei", role="core", snmp_auth="v3"),
            Device(name="a", address="10.0.0.1:1161", site="fengshan", role="access", snmp_auth="v2",
                   snmp_module="if_mib_bytes"),
            Device(name="nosnmp", address="10.0.0.3", site="siwei", role="server")]


def test_file_sd_has_labels_and_params_and_skips_devices_without_auth():
    groups = file_sd(devices())
    assert groups == [
        {"targets": ["10.0.0.1:1161"], "labels": {"site": "fengshan", "role": "access", "device": "a",
                                                  "__param_module": "if_mib_bytes", "__param_auth": "v2"}},
        {"targets": ["10.0.0.2"], "labels": {"site": "siwei", "role": "core", "device": "b",
                                             "__param_module": "if_mib", "__param_auth": "v3"}},
    ]


def test_scrape_config_is_valid_yaml_with_the_multi_target_relabelling():
    job = yaml.safe_load(scrape_config("/etc/prometheus/snmp.json", "127.0.0.1:9116"))[0]
    assert job["metrics_path"] == "/snmp"
    assert job["file_sd_configs"] == [{"files": ["/etc/prometheus/snmp.json"]}]
    relabel = job["relabel_configs"]
    assert relabel[0] == {"source_labels": ["__address__"], "target_label": "__param_target"}
    assert relabel[-1] == {"target_label": "__address__", "replacement": "127.0.0.1:9116"}


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "t.json"
    write_atomic(path, file_sd(devices()))
    assert json.loads(path.read_text())[0]["labels"]["device"] == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]
