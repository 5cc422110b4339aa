"""The ``report:`` section: committed rates with units, the Prometheus URL, and its references to
devices, agencies and sites, all checked at load with the path of the wrong value."""

from __future__ import annotations

import pytest

from citydc.config import ConfigInvalid, load_text
from citydc.config.units import format_bit_rate, parse_bit_rate

HEAD = """\
sites:
  - {id: siwei, name: 四維 Siwei}
devices:
  - {name: sw1, address: 10.0.0.1, site: siwei, role: core}
netflow:
  agencies:
    - {name: police, prefixes: [10.10.2.0/24]}
"""


def errors_of(text: str) -> dict[str, str]:
    with pytest.raises(ConfigInvalid) as exc:
        load_text(text)
    return {e.path: e.message for e in exc.value.errors}


@pytest.mark.parametrize("text,bps", [
    ("100 Mbit/s", 100e6), ("100Mbps", 100e6), ("1.5 Gbit/s", 1.5e9), ("800 kbit/s", 800e3),
    ("2 Tbit/s", 2e12), ("64000 bit/s", 64000), ("10 gbps", 10e9),
])
def test_bit_rates_with_units(text: str, bps: float) -> None:
    assert parse_bit_rate(text) == bps


@pytest.mark.parametrize("text,words", [
    ("100", "with its unit"), ("100 MB/s", "in bytes"), ("fast", "with its unit"), ("0 Mbit/s", "above 0"),
    ("100 Xbit/s", "with its unit"),
])
def test_bad_bit_rates_say_what_is_expected(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_bit_rate(text)


def test_format_bit_rate() -> None:
    assert format_bit_rate(123_456_789) == "123.5 Mbit/s"
    assert format_bit_rate(2.5e9) == "2.50 Gbit/s"
    assert format_bit_rate(999) == "999 bit/s"
    # three significant figures: a 95th percentile just above a 1 Gbit/s commitment does not read as equal to it
    assert format_bit_rate(1.049e9) == "1.05 Gbit/s"
    assert format_bit_rate(999.96e6) == "1.00 Gbit/s"  # the unit chosen after rounding, not "1000.0 Mbit/s"
    assert format_bit_rate(9.996e6) == "10.0 Mbit/s"
    assert format_bit_rate(None) == "-"


def test_a_good_report_section_loads() -> None:
    cfg = load_text(HEAD + """\
report:
  prometheus_url: http://127.0.0.1:9090/
  links: [{name: internet, device: sw1, interface: Te1/1/1, committed_rate: 100 Mbit/s}]
  agencies: [{name: police, committed_rate: 50Mbps}]
  sites: [{id: siwei, committed_rate: 1 Gbit/s}]
""")
    assert cfg.report.prometheus_url == "http://127.0.0.1:9090"
    assert parse_bit_rate(cfg.report.links[0].committed_rate) == 100e6


def test_every_report_error_is_named_at_load() -> None:
    errors = errors_of(HEAD + """\
report:
  prometheus_url: ftp://prom.example
  links:
    - {name: internet, device: sw9, interface: Te1/1/1, committed_rate: 100 MB/s}
    - {name: internet, device: sw1, interface: Te1/1/2, committed_rate: lots}
  agencies: [{name: fire}]
  sites: [{id: kaohsiung}]
""")
    assert "http:// or https://" in errors["report.prometheus_url"]
    assert "in bytes" in errors["report.links[0].committed_rate"]
    assert "with its unit" in errors["report.links[1].committed_rate"]
    assert errors["report.links[0].device"].startswith('unknown device "sw9"')
    assert "duplicate link name" in errors["report.links[1].name"]
    assert errors["report.agencies[0].name"] == 'unknown agency "fire" (netflow.agencies: police)'
    assert errors["report.sites[0].id"].startswith('unknown site "kaohsiung"')


def test_a_url_with_credentials_is_refused() -> None:
    errors = errors_of(HEAD + "report: {prometheus_url: 'http://admin:pw@prom.example:9090'}\n")
    assert "must not carry a user or password" in errors["report.prometheus_url"]
    assert "pw" not in errors["report.prometheus_url"]
