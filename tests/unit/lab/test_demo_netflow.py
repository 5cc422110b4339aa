"""The demo's NetFlow step without the collector: template detection, metrics arithmetic, summary line, replay."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citydc.collectors.netflow.pcapfile import udp_payloads
from citydc.config.models import Netflow, NetflowListener
from citydc.lab.config import lab_config
from citydc.lab.demo import netflow as demo
from citydc.lab.demo import record

CAPTURES = Path(__file__).resolve().parents[2] / "data" / "netflow"


def capture_datagrams(fmt: str) -> list[bytes]:
    return [p for _, _, p in udp_payloads(CAPTURES / f"softflowd-{fmt}-shared.pcap")]


@pytest.mark.parametrize("fmt", ["v9", "ipfix"])
def test_carries_template_agrees_with_the_captures_set_list(fmt):
    # The sidecar lists every datagram's set ids, as nfdump's side of the capture saw them.
    detail = json.loads((CAPTURES / f"softflowd-{fmt}-shared.json").read_text())["datagrams_detail"]
    template_ids = {0, 1} if fmt == "v9" else {2, 3}
    want = [any(set_id in template_ids for set_id, _ in d["sets"]) for d in detail]
    assert [record.carries_template(d) for d in capture_datagrams(fmt)] == want
    assert True in want and False in want


def test_from_template_on_drops_data_before_the_first_template():
    datagrams = capture_datagrams("v9")
    data_only = [d for d in datagrams if not record.carries_template(d)]
    first_template = next(i for i, d in enumerate(datagrams) if record.carries_template(d))
    assert record.from_template_on(data_only[:2] + datagrams[first_template:]) == datagrams[first_template:]
    assert record.from_template_on(data_only) == []
    v5 = capture_datagrams("v5")
    assert record.from_template_on(v5) == v5


@given(st.binary(max_size=80))
def test_carries_template_never_raises_on_garbage(data):
    assert record.carries_template(data) in (True, False)


def test_listener_targets_take_the_first_listener_per_site_on_loopback():
    listeners = [NetflowListener(port=2055, site="siwei", address="0.0.0.0"),  # noqa: S104 - what a bind-all listener looks like
                 NetflowListener(port=2056, site="siwei"),
                 NetflowListener(port=2057, site="fengshan", address="127.0.0.5")]
    cfg = lab_config(Path("/tmp/citydc-lab")).model_copy(update={"netflow": Netflow(listeners=listeners)})
    assert demo.listener_targets(cfg) == {"siwei": ("127.0.0.1", 2055), "fengshan": ("127.0.0.5", 2057)}


METRICS_BEFORE = """\
# TYPE citydc_netflow_records counter
citydc_netflow_records_total{exporter="127.0.0.1",site="siwei",version="v5"} 98.0
# TYPE citydc_netflow_protocol_bytes counter
citydc_netflow_protocol_bytes_total{protocol="tcp",service="other",site="siwei"} 1000.0
citydc_netflow_protocol_bytes_total{protocol="udp",service="dns",site="siwei"} 200.0
"""
METRICS_AFTER = """\
# TYPE citydc_netflow_records counter
citydc_netflow_records_total{exporter="127.0.0.1",site="siwei",version="v5"} 98.0
citydc_netflow_records_total{exporter="127.0.0.1",site="siwei",version="v9"} 3.0
citydc_netflow_records_total{exporter="127.0.0.1",site="fengshan",version="ipfix"} 7.0
# TYPE citydc_netflow_protocol_bytes counter
citydc_netflow_protocol_bytes_total{protocol="tcp",service="other",site="siwei"} 1100.0
citydc_netflow_protocol_bytes_total{protocol="udp",service="dns",site="siwei"} 400.0
citydc_netflow_protocol_bytes_total{protocol="tcp",service="https",site="fengshan"} 999.0
# TYPE citydc_netflow_agency_bytes counter
citydc_netflow_agency_bytes_total{agency="police",direction="in",site="siwei"} 50.0
citydc_netflow_agency_bytes_total{agency="police",direction="out",site="siwei"} 20.0
"""


def test_phase_rows_count_only_what_the_phase_added():
    caps = {"v9": record.Capture("v9", (b"",), flows=3, bytes=300)}
    before, after = demo.parse_samples(METRICS_BEFORE), demo.parse_samples(METRICS_AFTER)
    [row] = demo.phase_rows(before, after, (("v9", "siwei"),), caps)
    assert row == {"exporter": "127.0.0.1", "site": "siwei", "version": "v9", "records": 3, "bytes": 300,
                   "nfdump_records": 3, "nfdump_bytes": 300, "ok": True,
                   "top_protocol": "udp/dns 67%", "top_agency": "police in 17%"}


def test_phase_rows_flag_a_difference_from_nfdump():
    caps = {"ipfix": record.Capture("ipfix", (b"",), flows=7, bytes=1000)}
    [row] = demo.phase_rows({}, demo.parse_samples(METRICS_AFTER), (("ipfix", "fengshan"),), caps)
    assert (row["records"], row["bytes"], row["ok"]) == (7, 999, False)
    assert row["top_agency"] == "none matched"


def test_phase_rows_without_records_show_zero_not_a_crash():
    caps = {"v5": record.Capture("v5", (b"",), flows=98, bytes=10)}
    samples = demo.parse_samples(METRICS_BEFORE)
    [row] = demo.phase_rows(samples, samples, (("v5", "siwei"),), caps)
    assert (row["exporter"], row["records"], row["bytes"], row["ok"]) == ("-", 0, 0, False)


def test_collector_summary_takes_the_last_summary_line():
    text = ("netflow: listening on 127.0.0.1:12055 (siwei)\nnetflow: 5 datagrams, 98 records, 0 decode errors\n"
            "netflow: listening on 127.0.0.1:12055 (siwei)\nnetflow: 26 datagrams, 471 records, 2 decode errors\n")
    assert demo.collector_summary(text) == (26, 471, 2)
    assert demo.collector_summary("Traceback (most recent call last):\n") is None


def test_replay_sends_every_payload_in_order():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(5)
        payloads = (b"one", b"two", b"three")
        assert demo.replay(payloads, sink.getsockname()) == 3
        assert [sink.recv(100) for _ in payloads] == list(payloads)
