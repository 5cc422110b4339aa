"""The aggregate stage: FlowBatches in, bounded counters out.

Everything is computed on whole columns (np.unique / np.bincount / masks), never per record:
bytes and packets by (site, exporter, interface, direction), by (site, agency, direction) from
the configured prefixes, by (site, protocol, service) from a fixed port table, and top talkers
per site in fixed memory (talkers.py). Every label set is bounded: interfaces per exporter are
capped (the rest is 'other'), agencies, protocols and services come from fixed lists.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from citydc.collectors.netflow.records import FlowBatch
from citydc.collectors.netflow.talkers import SlidingTopN

__all__ = ["PROTOCOLS", "SERVICES", "AgencyPrefixes", "Aggregator", "talker_text"]

PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "ipv6-icmp", 132: "sctp"}
# Well-known service ports of a city data centre; anything else is "other". Ports matter only
# for TCP/UDP/SCTP; other protocols get the service "none".
SERVICES = {
    20: "ftp", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 67: "dhcp", 68: "dhcp", 80: "http",
    88: "kerberos", 110: "pop3", 123: "ntp", 137: "netbios", 138: "netbios", 139: "netbios", 143: "imap",
    161: "snmp", 162: "snmp", 389: "ldap", 443: "https", 445: "smb", 465: "smtps", 514: "syslog",
    587: "smtp", 636: "ldaps", 853: "dns", 993: "imaps", 995: "pop3s", 1194: "openvpn", 1433: "mssql",
    1521: "oracle", 2049: "nfs", 2055: "netflow", 3268: "ldap", 3306: "mysql", 3389: "rdp", 4739: "ipfix",
    5060: "sip", 5432: "postgresql", 5900: "vnc", 6443: "kubernetes", 8080: "http-alt", 8443: "https-alt",
    9200: "elasticsearch", 9995: "netflow",
}
_PORT_PROTOCOLS = (6, 17, 132)

_PROTO_NAMES = ["other", *sorted(set(PROTOCOLS.values()))]
_PROTO_INDEX = np.zeros(256, np.int64)
for _num, _name in PROTOCOLS.items():
    _PROTO_INDEX[_num] = _PROTO_NAMES.index(_name)
_SVC_NAMES = ["other", "none", *sorted(set(SERVICES.values()))]
_SVC_INDEX = np.zeros(65536, np.int64)
for _port, _name in SERVICES.items():
    _SVC_INDEX[_port] = _SVC_NAMES.index(_name)
_PORT_PROTO = np.zeros(256, bool)
_PORT_PROTO[list(_PORT_PROTOCOLS)] = True
_NSVC = len(_SVC_NAMES)


@dataclass(frozen=True)
class AgencyPrefixes:
    """An agency's prefixes as integer (network, mask) pairs for vectorised matching."""

    name: str
    v4: tuple[tuple[int, int], ...]
    v6: tuple[tuple[int, int, int, int], ...]  # (net_hi, net_lo, mask_hi, mask_lo)

    @classmethod
    def build(cls, name: str, prefixes: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network | str]
              ) -> AgencyPrefixes:
        """Given an agency name and its prefixes, return the matcher. Raise ValueError on a bad prefix."""
        v4, v6 = [], []
        for prefix in prefixes:
            net = ipaddress.ip_network(prefix)
            if net.version == 4:
                v4.append((int(net.network_address), int(net.netmask)))
            else:
                n, m = int(net.network_address), int(net.netmask)
                v6.append((n >> 64, n & (2**64 - 1), m >> 64, m & (2**64 - 1)))
        return cls(name, tuple(v4), tuple(v6))

    def match(self, batch: FlowBatch, side: str) -> np.ndarray:
        """Given a batch and 'src' or 'dst', return a boolean mask of records whose address is ours."""
        is4 = batch["ip_version"] == 4
        hit = np.zeros(len(batch), bool)
        addr4 = batch[side + "4"]
        for net, mask in self.v4:
            hit |= is4 & ((addr4 & np.uint32(mask)) == np.uint32(net))
        if self.v6:
            hi, lo = batch[side + "6_hi"], batch[side + "6_lo"]
            for nhi, nlo, mhi, mlo in self.v6:
                hit |= ~is4 & ((hi & np.uint64(mhi)) == np.uint64(nhi)) & ((lo & np.uint64(mlo)) == np.uint64(nlo))
        return hit


def talker_text(family: int, key: int, v4_prefix: int, v6_prefix: int) -> str:
    """Given an address family, a talker key and the prefix lengths, return the talker as text."""
    if family == 6:
        return str(ipaddress.IPv6Network((key << 64, v6_prefix)))
    if v4_prefix == 32:
        return str(ipaddress.IPv4Address(key))
    return str(ipaddress.IPv4Network((key, v4_prefix)))


class Aggregator:
    """Given agencies and bounds, accumulate batches into bounded counters (see module doc).

    ``ifname(exporter, ifindex)`` may return an interface name (from the SNMP collector); the
    interface label is that name, else the ifIndex. ``clock`` drives the talkers' window.
    """

    def __init__(
        self,
        agencies: Sequence[AgencyPrefixes] = (),
        *,
        ifname: Callable[[str, int], str | None] | None = None,
        max_interfaces: int = 256,
        talkers_k: int = 256,
        top_n: int = 10,
        window_seconds: float = 300.0,
        talker_prefix_v4: int = 32,
        talker_prefix_v6: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < talker_prefix_v6 <= 64 or not 0 < talker_prefix_v4 <= 32:
            raise ValueError("talker prefixes: v4 1..32, v6 1..64")
        self.agencies = list(agencies)
        self.ifname = ifname
        self.max_interfaces = max_interfaces
        self.top_n = top_n
        self.talkers_k = talkers_k
        self.window_seconds = window_seconds
        self.v4_prefix, self.v6_prefix = talker_prefix_v4, talker_prefix_v6
        self._v4_mask = np.uint32((2**32 - 1) ^ (2 ** (32 - talker_prefix_v4) - 1))
        self._v6_mask = np.uint64((2**64 - 1) ^ (2 ** (64 - talker_prefix_v6) - 1))
        self.clock = clock
        self.lock = threading.Lock()
        # (site, exporter, interface, direction) -> [bytes, packets]
        self.interfaces: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.agency: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.protocol: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._iface_labels: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
        self.talkers: dict[tuple[str, int], SlidingTopN] = {}
        self.records = 0

    def add(self, batch: FlowBatch) -> None:
        """Given a batch, add its bytes and packets to every aggregate."""
        if len(batch) == 0:
            return
        with self.lock:
            self.records += len(batch)
            self._interfaces(batch)
            self._agencies(batch)
            self._protocols(batch)
            self._talkers(batch)

    def _interfaces(self, batch: FlowBatch) -> None:
        nbytes, npkts = batch["bytes"].astype(np.float64), batch["packets"].astype(np.float64)
        labels = self._iface_labels[(batch.site, batch.exporter)]
        for direction, column in (("in", "in_if"), ("out", "out_if")):
            col = batch[column]
            first = col[0]
            if (col == first).all():  # the common case: one interface pair per exporter batch
                uniq, sums_b, sums_p = [first], [nbytes.sum()], [npkts.sum()]
            else:
                uniq, inverse = np.unique(col, return_inverse=True)
                sums_b, sums_p = np.bincount(inverse, nbytes), np.bincount(inverse, npkts)
            for index, b, p in zip(uniq, sums_b, sums_p, strict=True):
                label = labels.get(int(index))
                if label is None:
                    label = self._iface_label(batch.exporter, int(index), labels)
                acc = self.interfaces[(batch.site, batch.exporter, label, direction)]
                acc[0] += round(b)
                acc[1] += round(p)

    def _iface_label(self, exporter: str, index: int, labels: dict[int, str]) -> str:
        if len(labels) >= self.max_interfaces:
            return "other"
        name = self.ifname(exporter, index) if self.ifname else None
        labels[index] = name or str(index)
        return labels[index]

    def _agencies(self, batch: FlowBatch) -> None:
        if not self.agencies:
            return
        nbytes, npkts = batch["bytes"], batch["packets"]
        for agency in self.agencies:
            # Traffic to the agency is "in", from it "out"; inside-agency traffic counts for both.
            for direction, side in (("in", "dst"), ("out", "src")):
                hit = agency.match(batch, side)
                if hit.any():
                    acc = self.agency[(batch.site, agency.name, direction)]
                    acc[0] += int(nbytes[hit].sum())
                    acc[1] += int(npkts[hit].sum())

    def _protocols(self, batch: FlowBatch) -> None:
        proto = batch["proto"]
        svc = _SVC_INDEX[batch["dport"]]
        svc = np.where(svc == 0, _SVC_INDEX[batch["sport"]], svc)
        svc = np.where(_PORT_PROTO[proto], svc, 1)
        key = _PROTO_INDEX[proto] * _NSVC + svc
        size = len(_PROTO_NAMES) * _NSVC
        sums_b = np.bincount(key, batch["bytes"].astype(np.float64), minlength=size)
        sums_p = np.bincount(key, batch["packets"].astype(np.float64), minlength=size)
        for k in np.flatnonzero(sums_p):
            acc = self.protocol[(batch.site, _PROTO_NAMES[k // _NSVC], _SVC_NAMES[k % _NSVC])]
            acc[0] += round(sums_b[k])
            acc[1] += round(sums_p[k])

    def _talkers(self, batch: FlowBatch) -> None:
        is4 = batch["ip_version"] == 4
        now = self.clock()
        for family, rows in ((4, is4), (6, ~is4)):
            if not rows.any():
                continue
            sel = None if rows.all() else rows
            weights = batch["bytes"] if sel is None else batch["bytes"][sel]
            keys = []
            for side in ("src", "dst"):
                # A talker is an address or prefix seen at either end: its bytes sent and received.
                col = batch[side + "4"] & self._v4_mask if family == 4 else batch[side + "6_hi"] & self._v6_mask
                keys.append(col if sel is None else col[sel])
            window = self.talkers.get((batch.site, family))
            if window is None:
                window = self.talkers[(batch.site, family)] = SlidingTopN(self.talkers_k, self.window_seconds)
            w = weights.astype(np.float64)
            window.update(np.concatenate(keys), np.concatenate([w, w]), now)

    def top_talkers(self, site: str) -> tuple[list[tuple[str, float]], float]:
        """Given a site, return ([(talker, estimated bytes)] heaviest first, the error bound in bytes).

        Each estimate is at most the bound below the true byte count of the window (talkers.py).
        """
        with self.lock:
            now = self.clock()
            found: list[tuple[str, float]] = []
            bound = 0.0
            for family in (4, 6):
                window = self.talkers.get((site, family))
                if window is None:
                    continue
                merged = window.report(now)
                bound = max(bound, merged.error)
                found += [(talker_text(family, k, self.v4_prefix, self.v6_prefix), v)
                          for k, v in merged.top(self.top_n)]
        found.sort(key=lambda kv: -kv[1])
        return found[:self.top_n], bound
