"""`citydc collect netflow` as an operator runs it: one collector per site from one shared config."""

from __future__ import annotations

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
