"""The NetFlow socket's receive buffer beyond net.core.rmem_max: root (or CAP_NET_ADMIN) only, so lab tier.

`make test-unit` runs without root or raised kernel limits; this machine-dependent part lives here.
"""

from __future__ import annotations

import os

import pytest

from citydc.collectors.netflow import receive

pytestmark = pytest.mark.lab


def test_root_gets_the_full_buffer_past_rmem_max() -> None:
    assert os.geteuid() == 0, "the lab runs as root (lab/bootstrap.sh installs packages)"
    wanted = 8 << 20
    sock = receive.open_socket("127.0.0.1", 0, wanted)
    try:
        # SO_RCVBUFFORCE: the kernel grants the full size (and reports twice it), whatever rmem_max is.
        assert receive.receive_buffer(sock) == 2 * wanted
        assert receive.kernel_drops(sock) == 0
    finally:
        sock.close()
