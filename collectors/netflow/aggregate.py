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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from citydc.collectors.netflow.records import FlowBatch
from citydc.collectors.netflow.talkers import SlidingTopN

if TYPE_CHECKING:
    from citydc.collectors.netflow.fastpath import Partial

__all__ = ["PROTOCOLS", "SERVICES", "AgencyPrefixes", "AgencyTable", "Aggregator", "key_sums", "talker_text"]

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
_SVC_NAMES = ["other", "none", *sorted(set(SERVICES.values()))]
_NSVC = len(_SVC_NAMES)
# Small tables (they stay in cache): protocol number -> (protocol index * _NSVC), or -1 when the
# protocol has ports; port -> service index.
_PROTO_BASE = np.zeros(256, np.int16)
for _num in range(256):
    _name = PROTOCOLS.get(_num, "other")
    _PROTO_BASE[_num] = _PROTO_NAMES.index(_name) * _NSVC + (0 if _num in _PORT_PROTOCOLS else 1)
_PORT_PROTO = np.zeros(256, bool)
_PORT_PROTO[list(_PORT_PROTOCOLS)] = True
_SVC_INDEX = np.zeros(65536, np.uint8)
for _port, _name in SERVICES.items():
    _SVC_INDEX[_port] = _SVC_NAMES.index(_name)
# Interface indexes below this are summed with np.bincount (linear); larger ones with np.unique.
_BINCOUNT_IFINDEX = 1 << 16


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


class AgencyTable:
    """Given agencies, match IPv4 addresses to all of them at once: the prefixes' boundaries cut
    the address space into elementary intervals, each belonging to a fixed set of agencies, so
    one np.searchsorted per address column finds every address's interval (prefixes may overlap).
    IPv6 prefixes are matched by masks on the (rare) IPv6 rows only."""

    def __init__(self, agencies: Sequence[AgencyPrefixes]) -> None:
        self.agencies = tuple(agencies)
        edges = {0}
        for agency in agencies:
            for net, mask in agency.v4:
                edges.add(net)
                edges.add(net + ((~mask) & 0xFFFFFFFF) + 1)
        # 2**32 is past the last address: the last interval runs to the end without it.
        self.bounds = np.array(sorted(e for e in edges if e < 2**32), np.uint32)
        # member[i, a]: interval i lies inside one of agency a's prefixes
        self.member = np.zeros((len(self.bounds), len(agencies)), np.float64)
        for a, agency in enumerate(agencies):
            for net, mask in agency.v4:
                end = net + ((~mask) & 0xFFFFFFFF) + 1
                self.member[(self.bounds >= net) & (self.bounds.astype(np.int64) < end), a] = 1.0

    def intervals(self, addresses: np.ndarray) -> np.ndarray:
        """Given IPv4 addresses (uint32), return each one's elementary interval (intp)."""
        if len(self.bounds) > 16:
            return np.searchsorted(self.bounds, addresses, side="right") - 1
        # Few boundaries (the usual handful of agency prefixes): one vectorised compare per
        # boundary is cheaper than a binary search per address.
        interval = np.zeros(len(addresses), np.intp)
        for bound in self.bounds[1:]:
            interval += addresses >= bound
        return interval

    def sums(self, dst: np.ndarray, src: np.ndarray, weights: list[np.ndarray]
             ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Given destination and source IPv4 addresses and weight columns, return per weight
        column (sums to each agency, sums from each agency), arrays of len(agencies)."""
        m = len(self.bounds)
        # One bincount over (destination interval, source interval) pairs per weight column.
        pair = self.intervals(dst) * m + self.intervals(src)
        out = []
        for w in weights:
            joint = np.bincount(pair, w, minlength=m * m).reshape(m, m)
            out.append((joint.sum(axis=1) @ self.member, joint.sum(axis=0) @ self.member))
        return out


def key_sums(keys: list[np.ndarray], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Given key columns that all share one weight column, return (distinct keys as uint64, the
    summed weight of each, float64).

    Why not np.unique(return_inverse=True): with 32-bit keys and weights below 2**32 (IPv4 and
    any real flow's bytes) each (key, weight) pair packs into one uint64, and a plain sort of
    those (SIMD in numpy) is several times cheaper than an argsort and a gather.
    """
    w = weights.astype(np.uint64, copy=False)
    if all(k.dtype.itemsize <= 4 for k in keys) and (len(w) == 0 or int(w.max()) < 2**32):
        n = len(w)
        packed = np.empty(n * len(keys), np.uint64)
        for i, k in enumerate(keys):  # in place: no temporaries the size of the batch
            part = packed[i * n:(i + 1) * n]
            part[:] = k
            part <<= np.uint64(32)
            part |= w
        packed.sort()
        sorted_keys = packed >> np.uint64(32)
        starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
        packed &= np.uint64(0xFFFFFFFF)
        sums = np.add.reduceat(packed, starts)  # exact in uint64: each sum < 2**32 * len(packed)
        return sorted_keys[starts], sums.astype(np.float64)
    uniq, inverse = np.unique(np.concatenate(keys).astype(np.uint64), return_inverse=True)
    return uniq, np.bincount(inverse.reshape(-1), np.tile(weights.astype(np.float64), len(keys)))


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
        self._agency_table: AgencyTable | None = None

    def add(self, batch: FlowBatch | Partial) -> None:
        """Given a batch (or the compiled path's sums of one, fastpath.Partial), add its bytes and
        packets to every aggregate."""
        if len(batch) == 0:
            return
        if not isinstance(batch, FlowBatch):
            self._add_partial(batch)
            return
        # float64 weights for np.bincount, made once: exact while a batch sums below 2**53
        weights = [batch["bytes"].astype(np.float64), batch["packets"].astype(np.float64)]
        with self.lock:
            self.records += len(batch)
            self._interfaces(batch, weights)
            self._agencies(batch, weights)
            self._protocols(batch, weights)
            self._talkers(batch)

    def _interfaces(self, batch: FlowBatch, weights: list[np.ndarray]) -> None:
        for direction, column in (("in", "in_if"), ("out", "out_if")):
            col = batch[column]
            if int(col.max()) < _BINCOUNT_IFINDEX:
                sums_b, sums_p = (np.bincount(col, w) for w in weights)
                uniq = np.flatnonzero(sums_p)
                sums_b, sums_p = sums_b[uniq], sums_p[uniq]
            else:
                uniq, inverse = np.unique(col, return_inverse=True)
                sums_b, sums_p = (np.bincount(inverse, w) for w in weights)
            self._add_interfaces(batch.site, batch.exporter, direction,
                                 zip(uniq.tolist(), sums_b.tolist(), sums_p.tolist(), strict=True))

    def _add_interfaces(self, site: str, exporter: str, direction: str,
                        sums: Iterable[tuple[int, float, float]]) -> None:
        # (ifIndex, bytes, packets) sums of one direction, under their labels (both paths; lock held).
        labels = self._iface_labels[(site, exporter)]
        for index, b, p in sums:
            label = labels.get(index)
            if label is None:
                label = self._iface_label(exporter, index, labels)
            acc = self.interfaces[(site, exporter, label, direction)]
            acc[0] += round(b)
            acc[1] += round(p)

    def interface_snapshot(self) -> tuple[dict[tuple[str, str, str, str], int], dict[tuple[str, str], dict[int, str]]]:
        """Return (bytes by (site, exporter, interface label, direction), the ifIndex -> label map of
        each (site, exporter)), copied under the lock (snmp_feed.py reconciles them with SNMP)."""
        with self.lock:
            return ({k: v[0] for k, v in self.interfaces.items()},
                    {k: dict(v) for k, v in self._iface_labels.items()})

    def name_interfaces(self) -> int:
        """Relabel interfaces first seen while their name was unknown (their SNMP device had not
        answered yet) with the name ``ifname`` knows now; return how many were renamed.

        Each keeps its counters: the ifIndex series ends and the named one continues from the same
        values, so ``rate()`` sees a new series, not a jump."""
        if self.ifname is None:
            return 0
        renamed = 0
        with self.lock:
            for (site, exporter), labels in self._iface_labels.items():
                for index, label in list(labels.items()):
                    name = self.ifname(exporter, index) if label == str(index) else None
                    if not name or name == label:
                        continue
                    labels[index] = name
                    for direction in ("in", "out"):
                        old = self.interfaces.pop((site, exporter, label, direction), None)
                        if old is not None:
                            new = self.interfaces[(site, exporter, name, direction)]
                            new[0] += old[0]
                            new[1] += old[1]
                    renamed += 1
        return renamed

    def _iface_label(self, exporter: str, index: int, labels: dict[int, str]) -> str:
        if len(labels) >= self.max_interfaces:
            return "other"
        name = self.ifname(exporter, index) if self.ifname else None
        labels[index] = name or str(index)
        return labels[index]

    def _agencies(self, batch: FlowBatch, weights: list[np.ndarray]) -> None:
        table = self.agency_table()
        if table is None:
            return
        is4 = batch["ip_version"] == 4
        all4 = bool(is4.all())
        w4 = weights if all4 else [w[is4] for w in weights]
        dst, src = (batch[c] if all4 else batch[c][is4] for c in ("dst4", "src4"))
        (to_b, from_b), (to_p, from_p) = table.sums(dst, src, w4) if len(dst) else ((None, None), (None, None))
        # Traffic to the agency is "in", from it "out"; inside-agency traffic counts for both.
        for direction, side, sums_b, sums_p in (("in", "dst", to_b, to_p), ("out", "src", from_b, from_p)):
            for a, agency in enumerate(self.agencies):
                b = round(sums_b[a]) if sums_b is not None else 0
                p = round(sums_p[a]) if sums_p is not None else 0
                if not all4 and agency.v6:
                    hit = ~is4 & agency.match(batch, side)
                    b += int(batch["bytes"][hit].sum())
                    p += int(batch["packets"][hit].sum())
                if p:
                    acc = self.agency[(batch.site, agency.name, direction)]
                    acc[0] += b
                    acc[1] += p

    def agency_table(self) -> AgencyTable | None:
        """Return the interval table of the current agencies, None when there are none."""
        if not self.agencies:
            return None
        if self._agency_table is None or self._agency_table.agencies != tuple(self.agencies):
            self._agency_table = AgencyTable(self.agencies)  # self.agencies may be reassigned
        return self._agency_table

    def _add_partial(self, part: Partial) -> None:
        # The compiled path's sums (float64 like np.bincount's above), folded in with the same
        # keys, order and rules as the column path.
        with self.lock:
            self.records += part.records
            for direction, rows, top in (("in", part.in_if, part.max_in), ("out", part.out_if, part.max_out)):
                rows = rows[np.argsort(rows["key"], kind="stable")]
                if top < _BINCOUNT_IFINDEX:  # np.bincount path above: interfaces without packets are left out
                    rows = rows[rows["packets"] != 0]
                self._add_interfaces(part.site, part.exporter, direction, rows.tolist())
            if part.table is not None:
                member = part.table.member > 0
                for a, agency in enumerate(part.table.agencies):
                    for direction, col in (("in", 0), ("out", 2)):
                        if part.is6:
                            b, p = part.agencies6[a, col:col + 2].tolist() if agency.v6 else (0, 0)
                        else:
                            b, p = part.intervals[member[:, a], col:col + 2].sum(axis=0).tolist()
                        if p:
                            acc = self.agency[(part.site, agency.name, direction)]
                            acc[0] += round(b)
                            acc[1] += round(p)
            for k in np.flatnonzero(part.protocols[:, 1]).tolist():
                acc = self.protocol[(part.site, _PROTO_NAMES[k // _NSVC], _SVC_NAMES[k % _NSVC])]
                acc[0] += round(part.protocols[k, 0])
                acc[1] += round(part.protocols[k, 1])
            family = 6 if part.is6 else 4
            window = self.talkers.get((part.site, family))
            if window is None:
                window = self.talkers[(part.site, family)] = SlidingTopN(self.talkers_k, self.window_seconds)
            window.update(part.talkers["key"], part.talkers["bytes"], self.clock())

    def _protocols(self, batch: FlowBatch, weights: list[np.ndarray]) -> None:
        proto = batch["proto"]
        svc = _SVC_INDEX.take(batch["dport"])
        svc = np.where(svc == 0, _SVC_INDEX.take(batch["sport"]), svc)
        # Port-less protocols get the service "none" (index 1, already in _PROTO_BASE).
        key = _PROTO_BASE.take(proto) + np.where(_PORT_PROTO.take(proto), svc, 0)
        size = len(_PROTO_NAMES) * _NSVC
        sums_b, sums_p = (np.bincount(key, w, minlength=size) for w in weights)
        for k in np.flatnonzero(sums_p).tolist():
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
            uniq, sums = key_sums(keys, weights)
            window.update(uniq, sums, now)

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
