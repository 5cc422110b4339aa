"""The demo's NetFlow step without the collector: captures, metrics arithmetic, summary line, replay."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from citydc import demo_netflow as demo
from citydc.config.models import Netflow, NetflowListener
from citydc.lab.base import LabError
from citydc.lab.config import lab_config

SHARED = demo.NETFLOW_CAPTURES  # shared/ lies beside the repository, in CI too


def test_captures_are_found_beside_the_repository():
    # The demo resolves shared/ from the repository root; this checkout runs with shared/ beside it.
    beside_repo = Path(__file__).resolve().parents[4] / "shared" / "data" / "netflow"
    assert beside_repo == demo.NETFLOW_CAPTURES


def test_load_captures_reads_payloads_and_sidecar_totals():
    caps = demo.load_captures(SHARED)
    assert set(caps) == {"v5", "v9", "ipfix"}
    for fmt, cap in caps.items():
        meta = json.loads((SHARED / f"softflowd-{fmt}-shared.json").read_text())
        assert len(cap.payloads) == meta["export_datagrams"]
        assert (cap.flows, cap.bytes) == (meta["flows"], meta["bytes"])


def test_missing_captures_directory_is_a_clear_error(tmp_path):
    with pytest.raises(LabError, match=r"captures not found: .*nowhere is missing .*shared/"):
        demo.load_captures(tmp_path / "nowhere")


def test_bad_sidecar_names_the_file_and_the_fields(tmp_path):
    (tmp_path / "softflowd-v5-shared.pcap").write_bytes((SHARED / "softflowd-v5-shared.pcap").read_bytes())
    (tmp_path / "softflowd-v5-shared.json").write_text('{"flows": 98}')
    with pytest.raises(LabError, match=r"softflowd-v5-shared\.json: expected JSON with integer 'flows' and 'bytes'"):
        demo.load_captures(tmp_path, ("v5",))


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
    caps = {"v9": demo.Capture("v9", (b"",), flows=3, bytes=300)}
    before, after = demo.parse_samples(METRICS_BEFORE), demo.parse_samples(METRICS_AFTER)
    [row] = demo.phase_rows(before, after, (("v9", "siwei"),), caps)
    assert row == {"exporter": "127.0.0.1", "site": "siwei", "version": "v9", "records": 3, "bytes": 300,
                   "nfdump_records": 3, "nfdump_bytes": 300, "ok": True,
                   "top_protocol": "udp/dns 67%", "top_agency": "police in 17%"}


def test_phase_rows_flag_a_difference_from_nfdump():
    caps = {"ipfix": demo.Capture("ipfix", (b"",), flows=7, bytes=1000)}
    [row] = demo.phase_rows({}, demo.parse_samples(METRICS_AFTER), (("ipfix", "fengshan"),), caps)
    assert (row["records"], row["bytes"], row["ok"]) == (7, 999, False)
    assert row["top_agency"] == "none matched"


def test_phase_rows_without_records_show_zero_not_a_crash():
    caps = {"v5": demo.Capture("v5", (b"",), flows=98, bytes=10)}
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
