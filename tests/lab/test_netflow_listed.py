"""``citydc collect netflow`` decodes only datagrams from the exporters listed in the config:
datagrams sent from an unlisted loopback address are dropped and counted, those from the listed
one are decoded, and a replayed datagram of the listed exporter is counted as a replay."""

from __future__ import annotations

import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from citydc.collectors.netflow import synth
from citydc.lab import ports, processes

LISTED, UNLISTED = "127.0.0.2", "127.0.0.3"


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - fixed loopback http URL
        return resp.read().decode()


def value(text: str, name: str, labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.split()[-1])
    return None


def send(datagrams: list[bytes], source: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        for data in datagrams:
            sock.sendto(data, (ports.HOST, ports.NETFLOW_HARDEN))
            time.sleep(0.002)


def run_collector(tmp_path: Path, netflow: dict, extra: tuple[str, ...] = ()):
    cfg = {"sites": [{"id": "siwei", "name": "Siwei"}],
           "netflow": {"listeners": [{"address": ports.HOST, "port": ports.NETFLOW_HARDEN, "site": "siwei"}],
                       **netflow}}
    path = tmp_path / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    metrics = f"{ports.HOST}:{ports.NETFLOW_HARDEN_METRICS}"
    argv = (str(Path(sys.executable).with_name("citydc")), "-c", str(path), "collect", "netflow", "--metrics", metrics,
            "--no-snmp", "--duration", "60", *extra)
    proc = processes.spawn(argv, log_path=tmp_path / "collect.log")
    rec = processes.record(proc.pid, "citydc")
    return proc, rec, f"http://{metrics}/metrics"


def wait_for(url: str, proc, log: Path, predicate, limit: float = 20) -> str:
    deadline = time.monotonic() + limit
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            text = scrape(url)
            if predicate(text):
                return text
        except OSError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)


@pytest.mark.lab
def test_only_listed_exporters_are_decoded_and_a_replay_is_counted(tmp_path: Path) -> None:
    flows = synth.random_flows(300, seed=11)
    grams = synth.v9_datagrams(flows, 9)  # 10 datagrams, sequence 0..9, template in the first
    proc, rec, url = run_collector(tmp_path, {"exporters": [{"address": LISTED}]})
    log = tmp_path / "collect.log"
    try:
        wait_for(url, proc, log, lambda t: "citydc_netflow_datagrams" in t)
        send(grams, UNLISTED)
        send(grams, LISTED)
        send([grams[4]], LISTED)  # a replay of one already seen
        dropped = f'exporter="{UNLISTED}",reason="unknown_exporter",site="siwei"'
        text = wait_for(url, proc, log, lambda t: value(t, "citydc_netflow_dropped_datagrams_total", dropped) == 10
                        and value(t, "citydc_netflow_datagrams_total",
                                  f'exporter="{LISTED}",site="siwei",version="v9"') == 11)
    finally:
        processes.stop([rec])
        proc.wait(10)
    assert value(text, "citydc_netflow_records_total", f'exporter="{LISTED}",site="siwei",version="v9"') == 330
    # nothing of the unlisted source was decoded
    assert f'exporter="{UNLISTED}",site="siwei",version' not in text
    assert value(text, "citydc_netflow_sequence_events_total",
                 f'event="replay",exporter="{LISTED}",site="siwei",version="v9"') == 1
    assert "citydc_netflow_sequence_lost_total{" not in text  # in order apart from the replay


@pytest.mark.lab
def test_accept_unlisted_restores_decoding_every_source(tmp_path: Path) -> None:
    grams = synth.v5_datagrams(synth.random_flows(90, seed=2))
    proc, rec, url = run_collector(tmp_path, {"exporters": [{"address": LISTED}], "accept_unlisted": True})
    log = tmp_path / "collect.log"
    try:
        wait_for(url, proc, log, lambda t: "citydc_netflow_datagrams" in t)
        send(grams, UNLISTED)
        text = wait_for(url, proc, log, lambda t: value(
            t, "citydc_netflow_records_total", f'exporter="{UNLISTED}",site="siwei",version="v5"') == 90)
    finally:
        processes.stop([rec])
        proc.wait(10)
    assert "citydc_netflow_dropped_datagrams_total{" not in text
