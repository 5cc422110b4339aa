"""The proof of flow-vs-SNMP reconciliation: real net-snmp snmpd on the host counts the octets of
the host end ``cdnf0`` of the lab's veth pair, while softflowd in the namespace accounts the same
packets on ``cdnf1`` and exports them (NetFlow v5) to citydc. citydc polls snmpd with the SNMP
collector's code, labels the flows' interface with the real ifName and exports the windowed
flow/SNMP byte ratio: about 1 with the right sampling rate, about 10 with a wrong ``sampling_rate: 10``.

softflowd writes one ifIndex into both the input and output interface of every record, 0 unless
it is told one (``-i IFINDEX:IFACE``). This test runs its own softflowd with the host's ifIndex of
cdnf0, so flow ifIndex == SNMP ifIndex and no mapping is needed. What cdnf1 receives is exactly
what cdnf0 transmits, so the comparison is flow ``out`` against cdnf0's ifHCOutOctets. (Flow ``in``
is not comparable here: softflowd does not know direction, and cdnf0's ifHCInOctets carries the
export datagrams, which softflowd does not account.)
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from citydc import execute
from citydc.collectors.netflow.collector import build
from citydc.collectors.netflow.snmp_feed import SnmpFeed, SnmpPoller, links
from citydc.config.models import (
    Config,
    Device,
    Netflow,
    NetflowExporter,
    NetflowListener,
    Site,
    SnmpCollector,
    SnmpV2c,
)
from citydc.lab import ports, processes
from citydc.lab.softflowd import (
    HOST_ADDRESS,
    HOST_IF,
    NAMESPACE,
    NS_ADDRESS,
    NS_IF,
    build_shim,
    expire_all_argv,
    softflowd_argv,
)

PAYLOAD = 1000
COUNT = 1200
SINK_PORT = 7411
L3 = PAYLOAD + 8 + 20   # what a flow record counts per datagram: IPv4 + UDP headers + payload
L2 = L3 + 14            # what ifHCOutOctets of a veth counts: plus the Ethernet header (no FCS)
GHOST_PORT = ports.SNMPSIM_FLEET + 199  # kept closed by the lab: a dead SNMP device
# net-snmp's snmpd answers ifTable/ifXTable counters from a cache it reloads when older than about
# 3 s (measured: ifHCOutOctets moved in 3 s steps while /sys/class/net/cdnf0 counted every packet).
SNMPD_CACHE_SECONDS = 3.0

# A UDP sink in the namespace, so the test traffic draws no ICMP port-unreachable replies (they
# would be accounted by softflowd in the same ifIndex). It ends by itself after argv[3] seconds.
SINK = """import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(1.0)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        s.recv(65535)
    except OSError:
        pass
"""


def reconcile_softflowd_argv(if_index: int, ctl: Path, pidfile: Path) -> tuple[str, ...]:
    """The lab's softflowd argv (v5) with ``-i IFINDEX:cdnf1``, exporting to NETFLOW_RECONCILE and
    leaving every export port out of the capture."""
    argv = list(softflowd_argv(5, ports.NETFLOW_RECONCILE, ctl, pidfile))
    argv[argv.index("-i") + 1] = f"{if_index}:{NS_IF}"
    argv[-1] = f"not (udp and portrange {ports.NETFLOW_V5}-{ports.NETFLOW_RECONCILE})"
    return tuple(argv)


def test_reconcile_softflowd_argv() -> None:
    argv = reconcile_softflowd_argv(9, Path("/c"), Path("/p"))
    assert argv[:4] == ("ip", "netns", "exec", NAMESPACE)
    assert argv[argv.index("-i") + 1] == "9:cdnf1" and argv[argv.index("-v") + 1] == "5"
    assert argv[argv.index("-n") + 1] == f"{HOST_ADDRESS}:{ports.NETFLOW_RECONCILE}"
    assert argv[-1] == f"not (udp and portrange {ports.NETFLOW_V5}-{ports.NETFLOW_RECONCILE})"


def _udp_bound(pid: int, port: int) -> bool:
    # /proc/PID/net/udp lists the sockets of the process's own network namespace.
    try:
        return f":{port:04X} " in Path(f"/proc/{pid}/net/udp").read_text()
    except OSError:
        return False


@pytest.fixture(scope="module")
def reconcile_lab(lab_up, lab_ctx, lab_env, tmp_path_factory):
    """snmpd on the host, and our softflowd (host ifIndex of cdnf0) plus a UDP sink in the namespace."""
    lab_up("snmpd", "softflowd-v5")  # softflowd-v5 makes the namespace, the veth pair and the pcap shim
    if_index = int(Path(f"/sys/class/net/{HOST_IF}/ifindex").read_text())
    d = tmp_path_factory.mktemp("reconcile")
    ctl = d / "softflowd.ctl"
    softflowd = processes.spawn(reconcile_softflowd_argv(if_index, ctl, d / "softflowd.pid"),
                                log_path=d / "softflowd.log", env={"LD_PRELOAD": str(build_shim(lab_ctx))})
    sink = processes.spawn(("ip", "netns", "exec", NAMESPACE, sys.executable, "-c", SINK, NS_ADDRESS,
                            str(SINK_PORT), "300"), log_path=d / "sink.log")
    records = [processes.record(softflowd.pid, "ip"), processes.record(sink.pid, "ip")]
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = execute.run("softflowctl", ("ip", "netns", "exec", NAMESPACE, "softflowctl", "-c", str(ctl),
                                                "statistics"), timeout=10)
            if stats.ok and _udp_bound(sink.pid, SINK_PORT):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"softflowd or the UDP sink did not come up; see {d}")
        yield if_index, ctl
    finally:
        processes.stop(records)


def lab_config(sampling_rate: int) -> Config:
    return Config(
        sites=[Site(id="siwei", name="四維 Siwei")],
        snmp_auth={"lab": SnmpV2c(community="env:CITYDC_SNMP_COMMUNITY")},
        devices=[Device(name="lab-host", address=f"{ports.HOST}:{ports.SNMPD}", site="siwei", role="server",
                        snmp_auth="lab"),
                 Device(name="ghost", address=f"{ports.HOST}:{GHOST_PORT}", site="siwei", role="router",
                        snmp_auth="lab")],
        snmp=SnmpCollector(timeout_seconds=0.3, retries=0),
        netflow=Netflow(
            listeners=[NetflowListener(address=HOST_ADDRESS, port=ports.NETFLOW_RECONCILE, site="siwei")],
            # softflowd sends from the namespace's address; its SNMP agent is the host's snmpd, so the
            # link is explicit. The second exporter never sends; its device never answers.
            exporters=[NetflowExporter(address=NS_ADDRESS, sampling_rate=sampling_rate, snmp_device="lab-host"),
                       NetflowExporter(address="10.99.78.99", snmp_device="ghost")]))


def send_traffic(count: int) -> None:
    """Send ``count`` UDP datagrams of PAYLOAD bytes to the sink (bounded: about 2 s)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST_ADDRESS, 0))
        for i in range(count):
            s.sendto(b"r" * PAYLOAD, (NS_ADDRESS, SINK_PORT))
            if i % 20 == 19:
                time.sleep(0.02)  # paced, so the capture in the namespace keeps up


@pytest.mark.lab
@pytest.mark.parametrize("sampling_rate", [1, 10], ids=["right-rate", "wrong-rate-10"])
def test_flow_vs_snmp_ratio_against_real_snmpd_and_softflowd(reconcile_lab, sampling_rate: int) -> None:
    if_index, ctl = reconcile_lab
    cfg = lab_config(sampling_rate)
    poller = SnmpPoller(cfg)
    feed = SnmpFeed(links(cfg), poller, interval=1.0, window=120, min_snmp_bytes=100_000)
    collector = build(cfg.netflow, ifname=feed.ifname)
    registry = CollectorRegistry()
    registry.register(collector.metrics(["siwei"]))
    registry.register(feed)
    key = ("siwei", NS_ADDRESS, HOST_IF, "out")
    run = threading.Thread(target=collector.run, kwargs={"until": time.monotonic() + 120}, daemon=True)
    try:
        # The first poll must see every byte sent before it (earlier tests' traffic): wait out
        # snmpd's counter cache, so that traffic is on neither side of the ratio.
        time.sleep(SNMPD_CACHE_SECONDS + 1)
        feed.start(collector.aggregator.interface_snapshot)
        assert feed.ifname(NS_ADDRESS, if_index) == HOST_IF, "snmpd's ifName of the host's cdnf0"
        run.start()
        send_traffic(COUNT)
        want = COUNT * L3 * sampling_rate
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # force exports until our traffic is in (bounded)
            assert execute.run("softflowctl", expire_all_argv(ctl), timeout=10).ok
            time.sleep(1.0)
            with collector.aggregator.lock:
                got = collector.aggregator.interfaces.get(key, [0])[0]
            if got >= want:
                break
        assert got >= want, f"flows of the test traffic not collected: {got} of {want} bytes"
        # Then wait for a poll whose (cached) counters include all the test traffic.
        history = feed.states[0].history
        deadline = time.monotonic() + 20
        while history[-1].snmp[if_index][1] - history[0].snmp[if_index][1] < COUNT * L2:
            assert time.monotonic() < deadline, "SNMP counters of cdnf0 never showed the test traffic"
            time.sleep(0.2)
        ratios = feed.ratios()
        text = generate_latest(registry).decode()
    finally:
        collector.stop()
        run.join(10)
        collector.close()
        feed.stop()
        poller.close()
    assert key in ratios, f"no ratio for {key}: {ratios}"
    ratio, span = ratios[key]
    # L3 bytes over L2 octets of the same packets: 1028 / 1042 = 0.9866 per datagram of the test
    # traffic (the little other traffic in the window moves it by far less than the band).
    expected = sampling_rate * L3 / L2
    assert ratio == pytest.approx(expected, rel=0.02), (ratio, expected)
    assert span > 0
    labels = f'direction="out",exporter="{NS_ADDRESS}",interface="{HOST_IF}",site="siwei"'
    assert f"citydc_netflow_interface_bytes_total{{{labels}}}" in text
    assert f"citydc_netflow_snmp_bytes_ratio{{{labels}}}" in text
    assert 'citydc_netflow_snmp_feed_up{device="lab-host",exporter="10.99.78.2",site="siwei"} 1.0' in text
    # The dead device is counted, and never stopped the collector or the other device's ratio.
    assert 'citydc_netflow_snmp_feed_up{device="ghost",exporter="10.99.78.99",site="siwei"} 0.0' in text
    assert 'citydc_netflow_snmp_feed_poll_errors_total{device="ghost",exporter="10.99.78.99",reason="timeout"' in text


def scrape_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - fixed loopback http URL
        return resp.read().decode()


@pytest.mark.lab
def test_collect_netflow_cli_wires_the_snmp_feed(reconcile_lab, tmp_path: Path) -> None:
    """``citydc collect netflow`` on a config linking the exporter to snmpd: ifName labels, the feed's
    health and the ratio on its /metrics."""
    cfg = {"sites": [{"id": "siwei", "name": "Siwei"}],
           "snmp_auth": {"lab": {"version": "2c", "community": "env:CITYDC_SNMP_COMMUNITY"}},
           "devices": [{"name": "lab-host", "address": f"{ports.HOST}:{ports.SNMPD}", "site": "siwei",
                        "role": "server", "snmp_auth": "lab"}],
           "netflow": {"listeners": [{"address": HOST_ADDRESS, "port": ports.NETFLOW_RECONCILE, "site": "siwei"}],
                       "exporters": [{"address": NS_ADDRESS, "snmp_device": "lab-host"}]}}
    path = tmp_path / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    _, ctl = reconcile_lab
    metrics = f"{ports.HOST}:{ports.NETFLOW_RECONCILE_METRICS}"
    argv = (str(Path(sys.executable).with_name("citydc")), "-c", str(path), "collect", "netflow", "--metrics", metrics,
            "--duration", "90", "--snmp-interval", "1", "--snmp-window", "60")
    time.sleep(SNMPD_CACHE_SECONDS + 1)  # earlier tests' traffic is in snmpd's counters before the first poll
    proc = processes.spawn(argv, log_path=tmp_path / "collect.log")
    rec = processes.record(proc.pid, "citydc")
    labels = f'direction="out",exporter="{NS_ADDRESS}",interface="{HOST_IF}",site="siwei"'
    text = ""
    try:
        deadline = time.monotonic() + 30
        while "citydc_netflow_snmp_feed_up" not in text:
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "collect.log").read_text()
            time.sleep(0.3)
            try:
                text = scrape_text(f"http://{metrics}/metrics")
            except OSError:
                continue
        send_traffic(COUNT)
        deadline = time.monotonic() + 40
        while f"citydc_netflow_snmp_bytes_ratio{{{labels}}}" not in text:
            assert time.monotonic() < deadline, text
            assert execute.run("softflowctl", expire_all_argv(ctl), timeout=10).ok
            time.sleep(1.0)
            text = scrape_text(f"http://{metrics}/metrics")
    finally:
        processes.stop([rec])
        proc.wait(10)
    assert f"citydc_netflow_interface_bytes_total{{{labels}}}" in text
    assert f'citydc_netflow_snmp_feed_up{{device="lab-host",exporter="{NS_ADDRESS}",site="siwei"}} 1.0' in text
    ratio = float(text.split(f"citydc_netflow_snmp_bytes_ratio{{{labels}}} ")[1].split()[0])
    assert 0.5 < ratio < 2, ratio  # inside the alert's band (the exact value is proven above)
