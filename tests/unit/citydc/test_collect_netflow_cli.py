"""`citydc collect netflow` as an operator runs it: one collector per site from one shared config."""

from __future__ import annotations

import ipaddress
import logging
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from citydc.collectors.netflow import collector, receive
from citydc.config.models import Netflow, NetflowListener


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path: Path, siwei: int, fengshan: int) -> Path:
    cfg = {"sites": [{"id": "siwei", "name": "Siwei"}, {"id": "fengshan", "name": "Fengshan"}],
           "netflow": {"listeners": [{"address": "127.0.0.1", "port": siwei, "site": "siwei"},
                                     {"address": "127.0.0.1", "port": fengshan, "site": "fengshan"}]}}
    path = tmp_path / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def citydc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("citydc")), *args], capture_output=True, text=True,
                          timeout=60)


def test_site_option_binds_only_that_sites_listeners(tmp_path) -> None:
    siwei, fengshan = free_port(), free_port()
    path = write_config(tmp_path, siwei, fengshan)
    res = citydc("-c", str(path), "collect", "netflow", "--site", "fengshan", "--duration", "0.5",
                 "--metrics", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}")
    assert res.returncode == 0, res.stderr
    assert f"listening on 127.0.0.1:{fengshan} (fengshan)" in res.stderr
    assert str(siwei) not in res.stderr.split("listening on", 1)[1].splitlines()[0]
    assert "netflow: 0 datagrams, 0 records, 0 decode errors" in res.stderr


def test_site_without_listeners_is_a_config_error_naming_the_sites(tmp_path) -> None:
    path = write_config(tmp_path, free_port(), free_port())
    res = citydc("-c", str(path), "collect", "netflow", "--site", "kaohsiung", "--duration", "0.5")
    assert res.returncode == 2
    assert "--site kaohsiung: no netflow.listeners of that site (listeners exist for: fengshan, siwei)" in res.stderr


def test_a_capped_receive_buffer_is_logged_with_its_cause(monkeypatch, caplog) -> None:
    monkeypatch.setattr(receive, "receive_buffer", lambda sock: 2 * 212992)  # what rmem_max gives a normal user
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="citydc.collectors.netflow.collector"):
        col = collector.build(Netflow(listeners=[NetflowListener(port=port, site="siwei")]))
    col.close()
    (record,) = [r for r in caplog.records if "receive buffer" in r.getMessage()]
    message = record.getMessage()
    assert f"127.0.0.1:{port} (site siwei): receive buffer 212992 bytes, 8388608 asked" in message
    assert "net.core.rmem_max" in message and "citydc_netflow_socket_drops_total" in message


def test_flow_output_lines_carry_a_timestamp_and_sighup_starts_a_new_file_after_rotation(tmp_path) -> None:
    import json
    import os
    import signal
    import time

    from citydc.collectors.netflow import synth

    siwei = free_port()
    path = write_config(tmp_path, siwei, free_port())
    out = tmp_path / "flows.jsonl"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("citydc")), "-c", str(path), "collect", "netflow",
                             "--site", "siwei", "--flow-output", str(out), "--duration", "20",
                             "--metrics", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    flows = synth.random_flows(60, seed=3)
    first, second = synth.v5_datagrams(flows)  # 30 records each

    def lines(p: Path, n: int) -> list[dict]:
        deadline = time.monotonic() + 10  # bounded: the collector writes within its 1 s flush
        while time.monotonic() < deadline:
            got = [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []
            if len(got) >= n:
                return got
            time.sleep(0.1)
        raise AssertionError(f"{p}: {len(got)} of {n} lines")

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            deadline = time.monotonic() + 10
            while "listening on" not in (proc.stderr.readline() if time.monotonic() < deadline else "listening on"):
                pass
            tx.sendto(first, ("127.0.0.1", siwei))
            old = lines(out, 30)
            out.rename(tmp_path / "flows.jsonl.1")  # what logrotate does
            os.kill(proc.pid, signal.SIGHUP)
            time.sleep(0.2)
            tx.sendto(second, ("127.0.0.1", siwei))
            new = lines(out, 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    assert len(old) == 30 and len((tmp_path / "flows.jsonl.1").read_text().splitlines()) == 30
    sent_second = {str(ipaddress.IPv4Address(a)) for a in flows.src[30:].tolist()}
    assert len(new) == 30 and {r["source.ip"] for r in new} <= sent_second
    for record in old + new:
        assert record["@timestamp"].endswith("Z") and record["labels.site"] == "siwei"
        assert record["netflow.version"] == 5 and record["network.bytes"] > 0
