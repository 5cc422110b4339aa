"""The receive stage and the wired pipeline on a loopback socket, and the CLI's argument parsing."""

from __future__ import annotations

import socket
import threading
import time

import click
import numpy as np
import pytest

from citydc.cli.collect_netflow import parse_host_port
from citydc.collectors.netflow import receive, synth
from citydc.collectors.netflow.collector import Listener, build
from citydc.config.models import Netflow, NetflowExporter


def test_collector_pipeline_over_loopback_with_config_sampling() -> None:
    # No configured listener (the model wants a fixed port): bind an ephemeral one and attach it.
    collector = build(Netflow(exporters=[NetflowExporter(address="127.0.0.1", sampling_rate=4)]))
    sock = receive.open_socket("127.0.0.1", 0, 1 << 20)
    collector.listeners = [Listener(sock, "fengshan")]
    flows = synth.random_flows(600, seed=21)
    thread = threading.Thread(target=collector.run, kwargs={"until": time.monotonic() + 10})
    thread.start()
    try:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for d in synth.v5_datagrams(flows):
            out.sendto(d, sock.getsockname())
        deadline = time.monotonic() + 5
        while collector.aggregator.records < 600 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        collector.stop()
        thread.join()
        collector.close()
    assert collector.aggregator.records == 600
    total = sum(v[0] for k, v in collector.aggregator.interfaces.items() if k[3] == "in" and k[0] == "fengshan")
    assert total == 4 * int(flows.bytes.astype(np.uint64).sum())


def test_socket_buffer_and_kernel_drop_count() -> None:
    # 64 KiB: below Debian's default net.core.rmem_max, so any user gets it (the forced 8 MiB of a root
    # collector is in the lab tier: tests/lab/test_netflow_socket.py).
    sock = receive.open_socket("127.0.0.1", 0, 1 << 16)
    try:
        assert receive.receive_buffer(sock) >= 1 << 16
        assert receive.kernel_drops(sock) == 0
    finally:
        sock.close()


def test_kernel_drops_reads_proc_net_udp(tmp_path) -> None:
    sock = receive.open_socket("127.0.0.1", 0, 65536)
    try:
        inode = __import__("os").fstat(sock.fileno()).st_ino
        (tmp_path / "net").mkdir()
        header = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
                  "inode ref pointer drops\n")
        row = (f"  1: 0100007F:0807 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 "
               f"{inode} 2 0000000000000000 42\n")
        (tmp_path / "net" / "udp").write_text(header + row)
        assert receive.kernel_drops(sock, tmp_path) == 42
    finally:
        sock.close()


def test_parse_host_port() -> None:
    assert parse_host_port("127.0.0.1:9310") == ("127.0.0.1", 9310)
    assert parse_host_port("[::1]:9310") == ("::1", 9310)
    with pytest.raises(click.BadParameter, match="HOST:PORT"):
        parse_host_port("9310")
