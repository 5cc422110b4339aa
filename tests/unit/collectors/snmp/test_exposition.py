"""The interface-sample writer against client_python's generate_latest (citydc.collectors.snmp.exposition)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from citydc.collectors.snmp.exposition import Sample, interface_samples, samples_text

METRICS = [("citydc_snmp_if_receive_bytes", "counter", "Octets received."),
           ("citydc_snmp_if_receive_packets", "counter", 'Packets "by" cast\\type.\nSecond line.'),
           ("citydc_snmp_if_oper_status", "gauge", "IF-MIB ifOperStatus.")]


def reference(samples: list[Sample]) -> bytes:
    """What the exporter rendered before: one client_python family per metric, through generate_latest."""
    families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
    for s in samples:
        fam = families.get(s.metric)
        if fam is None:
            cls = CounterMetricFamily if s.kind == "counter" else GaugeMetricFamily
            fam = families[s.metric] = cls(s.metric, s.help, labels=[k for k, _ in s.labels])
        fam.add_metric([v for _, v in s.labels], s.value)

    class Collector:
        def collect(self):
            yield from families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry)


label_text = st.text(st.characters(codec="utf-8"), max_size=12)
values = st.one_of(st.integers(0, 2**64 + 2**40), st.floats(allow_nan=False), st.sampled_from([0, 1e9, 2.5e10]))


@st.composite
def sample_lists(draw):
    out = []
    for _ in range(draw(st.integers(0, 30))):
        metric, kind, doc = draw(st.sampled_from(METRICS))
        labels = (("site", "siwei"), ("device", draw(label_text)), ("ifName", draw(label_text)),
                  ("ifAlias", draw(label_text)), ("ifIndex", str(draw(st.integers(1, 10**6)))))
        if metric == "citydc_snmp_if_receive_packets":
            labels = (*labels, ("cast", draw(st.sampled_from(["unicast", "multicast"]))))
        out.append(Sample(metric, kind, doc, labels, draw(values)))
    return out


@settings(max_examples=300, deadline=None)
@given(sample_lists())
def test_output_is_byte_identical_to_generate_latest(samples):
    assert samples_text(samples) == reference(samples)


def test_output_parses_back_with_escapes_intact():
    labels = (("site", "fengshan"), ("device", "sw1"), ("ifName", 'Gi0/1 "up"'), ("ifAlias", "a\\b\nc 四維"),
              ("ifIndex", "1"))
    text = samples_text([Sample("citydc_snmp_if_receive_bytes", "counter", "Octets.", labels, 2**40)]).decode()
    (family,) = text_string_to_metric_families(text)
    assert family.name == "citydc_snmp_if_receive_bytes" and family.type == "counter"
    (sample,) = family.samples
    assert sample.labels == dict(labels) and sample.value == 2**40


def test_invalid_names_are_refused():
    with pytest.raises(ValueError, match="invalid metric name"):
        samples_text([Sample("bad-name", "gauge", "", (), 1)])
    with pytest.raises(ValueError, match="invalid label name 'if-name'"):
        samples_text([Sample("ok", "gauge", "", (("if-name", "x"),), 1)])


def test_interface_rows_become_samples_with_their_labels():
    from citydc.collectors.snmp.collector import InterfaceRow

    rows = [InterfaceRow(7, "Te1/1/1", "uplink", {"receive_bytes": 2**40, "transmit_packets_broadcast": 3},
                         oper_status=1, admin_status=None, speed_bps=1e10),
            InterfaceRow(9, "Gi0/9", "", {})]
    samples = interface_samples(rows, "fengshan", "sw9")
    base = (("site", "fengshan"), ("device", "sw9"), ("ifName", "Te1/1/1"), ("ifAlias", "uplink"), ("ifIndex", "7"))
    assert [(s.metric, s.kind, s.labels, s.value) for s in samples] == [
        ("citydc_snmp_if_receive_bytes", "counter", base, 2**40),
        ("citydc_snmp_if_transmit_packets", "counter", (*base, ("cast", "broadcast")), 3),
        ("citydc_snmp_if_oper_status", "gauge", base, 1),
        ("citydc_snmp_if_speed_bits_per_second", "gauge", base, 1e10),
    ]
    text = samples_text(samples).decode()
    assert 'citydc_snmp_if_transmit_packets_total{cast="broadcast",device="sw9",ifAlias="uplink"' in text
