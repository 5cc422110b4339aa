"""The SNMP lab's pure parts: generated switch data, net-snmp argv and output parsing (citydc.lab.snmpsim)."""

import pytest

from citydc.lab.snmpsim import REBOOT, SWITCHES, bulkwalk_argv, lab_config, parse_bulkwalk
from citydc.lab.snmpsim_data import SwitchSpec, rate_of, records


def test_bulkwalk_argv_is_numeric_and_carries_no_community():
    assert bulkwalk_argv("127.0.0.1:1611", "1.3.6.1.2.1.31.1.1.1.6", 25) == (
        "snmpbulkwalk", "-On", "-Oe", "-Ot", "-OU", "-Ox", "-Cr25", "-t", "2", "-r", "1", "127.0.0.1:1611",
        "1.3.6.1.2.1.31.1.1.1.6")


def test_parse_bulkwalk_reads_each_type():
    out = parse_bulkwalk('.1.3.6.1.2.1.31.1.1.1.18.1 = ""\n'
                         ".1.3.6.1.2.1.31.1.1.1.1.2 = Hex-STRING: 47 69 30 2F 31 \n"
                         ".1.3.6.1.2.1.31.1.1.1.6.1 = Counter64: 18446744073709551615\n"
                         ".1.3.6.1.2.1.2.2.1.8.1 = INTEGER: 2\n"
                         ".1.3.6.1.2.1.2.2.1.2.9 = Hex-STRING: 47 69 67 61 62 69 74 45 74 68 65 72 6E 65 74 31 \n"
                         "2F 30 \n")
    assert out == {(1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18, 1): b"", (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1, 2): b"Gi0/1",
                   (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 1): 2**64 - 1, (1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 1): 2,
                   (1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 9): b"GigabitEthernet1/0"}


def test_parse_bulkwalk_names_the_bad_line():
    with pytest.raises(ValueError, match="line 2"):
        parse_bulkwalk(".1.3 = INTEGER: 1\ngarbage\n")


def test_generated_switch_has_54_interfaces_sorted_and_deterministic():
    text = records(SWITCHES[0])
    assert text == records(SWITCHES[0])
    oids = [tuple(int(x) for x in line.split("|")[0].split(".")) for line in text.splitlines()]
    assert oids == sorted(oids)
    names = [line for line in text.splitlines() if line.startswith("1.3.6.1.2.1.31.1.1.1.1.")]
    assert len(names) == 54


def test_32bit_only_switch_has_no_hc_columns():
    text = records(SwitchSpec("x", hc=False))
    assert "1.3.6.1.2.1.31.1.1.1.6." not in text and "1.3.6.1.2.1.2.2.1.10." in text


def test_reboot_switch_counters_start_at_zero_and_its_wrap_port_wraps_on_time():
    rate = rate_of(REBOOT, 10102, "ifInOctets")
    assert rate == 25_000_000.0
    line = next(x for x in records(REBOOT).splitlines() if x.startswith("1.3.6.1.2.1.2.2.1.10.10102|"))
    initial = int(line.split("initial=")[1].split(",")[0])
    assert (2**32 - initial) / rate == pytest.approx(25.0)
    hc = next(x for x in records(REBOOT).splitlines() if x.startswith("1.3.6.1.2.1.31.1.1.1.6.10601|"))
    assert "initial=0" in hc


def test_lab_config_is_a_valid_citydc_config():
    from citydc.config.models import Config

    cfg = Config.model_validate(lab_config(fleet=True))
    addresses = [d.address for d in cfg.devices]
    assert len(addresses) == len(set(addresses))
    assert {d.site for d in cfg.devices} == {"siwei", "fengshan"}
    assert all(d.snmp_auth in cfg.snmp_auth for d in cfg.devices)


def test_every_served_recording_is_package_data_with_its_licence_and_source():
    import json
    from importlib import resources

    from citydc.lab.snmpsim import RECORDED, RECORDINGS, recording

    folder = resources.files("citydc.lab").joinpath(RECORDINGS)
    sources = {e["file"]: e for e in json.loads(folder.joinpath("sources.json").read_text())}
    for name in RECORDED:
        assert recording(name).startswith("1.3.6.1.2.1.1.1.0|"), name
        entry = sources[f"{name}.snmprec"]
        assert entry["license"]
        if "LICENSE-" in entry["license"]:
            assert folder.joinpath(entry["license"].split("see ")[1].rstrip(")")).is_file()


def test_recording_names_the_missing_file():
    from citydc.lab.base import LabError
    from citydc.lab.snmpsim import recording

    with pytest.raises(LabError, match=r"lab-data/snmp/nope\.snmprec is missing"):
        recording("nope")


# That nothing of the SNMP lab reads outside the repository is tests/unit/test_stands_alone.py's job (every file).


def test_committed_quirk_recordings_equal_their_generator():
    from importlib import resources

    from citydc.lab.snmpsim_quirks import QUIRKS, quirk_records

    for q in QUIRKS:
        committed = resources.files("citydc.lab").joinpath(f"lab-data/snmp/{q.name}.snmprec").read_text()
        assert committed == quirk_records(q), "regenerate: python -m citydc.lab.snmpsim_quirks lab/lab-data/snmp"


def test_quirk_devices_disagree_with_their_ifnumber_both_ways():
    from citydc.lab.snmpsim_quirks import QUIRKS, quirk_records

    shapes = {}
    for q in QUIRKS:
        lines = quirk_records(q).splitlines()
        rows = [x for x in lines if x.startswith("1.3.6.1.2.1.2.2.1.1.")]
        names = [x for x in lines if x.startswith("1.3.6.1.2.1.31.1.1.1.1.")]
        if_number = int(next(x for x in lines if x.startswith("1.3.6.1.2.1.2.1.0|")).rsplit("|", 1)[1])
        assert len(rows) == len(names) == len(q.interfaces)
        shapes[q.name] = (if_number, len(rows))
    assert shapes == {"hpe-procurve-6120xg": (33, 42), "juniper-mx960": (143, 61)}
