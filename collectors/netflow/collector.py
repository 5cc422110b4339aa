"""Wiring of the stages: receive → decode → aggregate (→ optional flow output) → export.

One thread waits on all listening sockets; each wake-up drains them in batches (up to 512
datagrams per system call, decoded together), then sleeps ``batch_seconds`` so the next wake-up
finds a batch rather than a single datagram (the sockets' large receive buffers hold what
arrives meanwhile). Every ``flush_seconds``, and whenever ``chunk_bytes`` of records are
pending, the decoded records go to the aggregator in bulk. Prometheus reads the counters
through metrics.NetflowMetrics.
"""

from __future__ import annotations

import ipaddress
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from citydc.collectors.netflow import fastpath, receive
from citydc.collectors.netflow.aggregate import AgencyPrefixes, Aggregator
from citydc.collectors.netflow.decoder import Decoder, ExporterLabels
from citydc.collectors.netflow.metrics import ListenerInfo, NetflowMetrics
from citydc.collectors.netflow.records import FlowBatch
from citydc.config.models import Netflow

__all__ = ["Collector", "Listener", "build", "listed_addresses"]

log = logging.getLogger(__name__)


@dataclass
class Listener:
    """A bound socket and the site its exporters belong to."""

    sock: socket.socket
    site: str

    @property
    def name(self) -> str:
        address, port = self.sock.getsockname()[:2]
        return f"{address}:{port}"

    def info(self) -> ListenerInfo:
        return ListenerInfo(self.site, self.name, lambda: receive.receive_buffer(self.sock),
                            lambda: receive.kernel_drops(self.sock))


@dataclass
class Collector:
    """Given listeners, a decoder and an aggregator, run the pipeline (see module doc).

    ``flow_sink``, when set, receives every decoded batch (forensic flow output); when None the
    hot path does not even build the call.
    """

    listeners: Sequence[Listener]
    decoder: Decoder
    aggregator: Aggregator
    flush_seconds: float = 1.0
    # Why 20 ms: at 500k records/s that is ~330 datagrams per wake-up (about 1 MiB of the 8 MiB
    # default receive buffer), so the fixed cost of a batch is spread over ~10k records, and
    # latency does not matter for counters scraped every 15 s or more.
    batch_seconds: float = 0.02
    # Why 1 MiB (~20k records): aggregating in chunks whose columns fit the CPU cache costs
    # about a quarter less per record than one big chunk per flush_seconds.
    chunk_bytes: int = 1 << 20
    flow_sink: Callable[[FlowBatch], None] | None = None
    clock: Callable[[], float] = time.monotonic
    stopped: threading.Event = field(default_factory=threading.Event)

    def metrics(self, sites: Sequence[str]) -> NetflowMetrics:
        """Return the prometheus-client collector of this pipeline (register it on a registry)."""
        return NetflowMetrics(self.decoder, self.aggregator, [lst.info() for lst in self.listeners], sites)

    def run(self, until: float | None = None) -> None:
        """Receive and decode until stop() is called or the monotonic time ``until`` passes."""
        sel = selectors.DefaultSelector()
        receivers = {}
        for listener in self.listeners:
            sel.register(listener.sock, selectors.EVENT_READ)
            receivers[listener.sock] = (receive.BatchReceiver(listener.sock, slots=512), listener.site)
        next_flush = self.clock() + self.flush_seconds
        busy = False
        try:
            while not self.stopped.is_set() and (until is None or self.clock() < until):
                if busy:
                    # Traffic is flowing, so after the pause a batch is almost surely waiting: read
                    # every socket directly (an empty one costs one failed call) instead of asking select.
                    busy = sum(self._drain(receiver, site) for receiver, site in receivers.values()) > 0
                else:
                    ready = sel.select(timeout=max(0.0, min(next_flush - self.clock(), 0.1)))
                    for key, _ in ready:
                        receiver, site = receivers[key.fileobj]  # type: ignore[index]
                        busy = self._drain(receiver, site) > 0 or busy
                now = self.clock()
                if now >= next_flush or self.decoder.needs_flush:
                    self.flush()
                    next_flush = now + self.flush_seconds
                if busy:
                    self.stopped.wait(self.batch_seconds)
        finally:
            for receiver, site in receivers.values():  # what already arrived is not lost at stop
                self._drain(receiver, site)
            self.flush()
            sel.close()

    def _drain(self, receiver: receive.BatchReceiver, site: str, limit: int = 64) -> int:
        # Bounded: at most ``limit`` full batches per wake-up, so one busy socket cannot starve the others.
        # Return how many datagrams were read.
        got = 0
        for _ in range(limit):
            batch = receiver.receive()
            if batch is None:
                return got
            got += len(batch)
            self.decoder.feed_batch(batch, site, self.clock())
            # The compiled path keeps sums, not records: no cache-sized chunks, it flushes every flush_seconds.
            chunked = self.decoder.path == "numpy" and self.decoder.pending_bytes >= self.chunk_bytes
            if chunked or self.decoder.needs_flush:
                self.flush()
            if len(batch) < receiver.slots:
                return got
        return got

    def flush(self) -> int:
        """Move the decoded records to the aggregator (and the flow sink); return how many."""
        n = 0
        for batch in self.decoder.flush():
            self.aggregator.add(batch)
            if self.flow_sink is not None:
                self.flow_sink(batch)
            n += len(batch)
        return n

    def stop(self) -> None:
        self.stopped.set()

    def close(self) -> None:
        for listener in self.listeners:
            listener.sock.close()


def listed_addresses(config: Netflow) -> set[str] | None:
    """Given the netflow section, return the source addresses datagrams are accepted from, in the
    forms a socket reports them (an IPv4 address also as IPv4-mapped IPv6, for a listener on ::),
    or None when every source is accepted (no exporter listed, or ``accept_unlisted``)."""
    if config.accept_unlisted or not config.exporters:
        return None
    out: set[str] = set()
    for exporter in config.exporters:
        address = ipaddress.ip_address(exporter.address)
        out.add(str(address))
        if address.version == 4:
            out.add(f"::ffff:{address}")
    return out


def build(config: Netflow, *, ifname: Callable[[str, int], str | None] | None = None,
          flow_sink: Callable[[FlowBatch], None] | None = None, compiled: bool = True,
          **aggregator_options: object) -> Collector:
    """Given the netflow section of citydc.yaml, bind its listeners and return the Collector.

    The decoder runs the compiled path (fastpath.py) when ``compiled``, the extension is built
    and there is no ``flow_sink``; otherwise the numpy path.

    Raise OSError (naming the listener) if a socket cannot be bound.
    """
    listeners = []
    try:
        for cfg in config.listeners:
            try:
                sock = receive.open_socket(cfg.address, cfg.port, cfg.receive_buffer_bytes)
            except OSError as exc:
                raise OSError(f"netflow listener {cfg.address}:{cfg.port} (site {cfg.site}): {exc.strerror}") from None
            listeners.append(Listener(sock, cfg.site))
            granted = receive.receive_buffer(sock) // 2  # the kernel reports twice what it grants
            if granted < cfg.receive_buffer_bytes:
                log.warning("netflow listener %s:%d (site %s): receive buffer %d bytes, %d asked: net.core.rmem_max "
                            "caps it for a process without CAP_NET_ADMIN; bursts beyond it are dropped "
                            "(citydc_netflow_socket_drops_total)", cfg.address, cfg.port, cfg.site, granted,
                            cfg.receive_buffer_bytes)
    except OSError:
        for listener in listeners:
            listener.sock.close()
        raise
    decoder = Decoder(sampling={e.address: e.sampling_rate for e in config.exporters},
                      exporter_labels=ExporterLabels({e.address: e.address for e in config.exporters}),
                      listed=listed_addresses(config))
    if decoder.listed is not None:
        log.info("netflow: decoding only datagrams from the %d listed exporters (netflow.exporters); others are "
                 "dropped and counted (citydc_netflow_dropped_datagrams_total{reason=\"unknown_exporter\"})",
                 len(config.exporters))
    agencies = [AgencyPrefixes.build(a.name, a.prefixes) for a in config.agencies]
    aggregator = Aggregator(agencies, ifname=ifname, **aggregator_options)  # type: ignore[arg-type]
    # The compiled path sums records without keeping them, so a flow sink needs the numpy path.
    if compiled and flow_sink is None and fastpath.available():
        decoder.use_compiled(aggregator)
    log.info("netflow decode path: %s (compiled extension %s)", decoder.path,
             "built" if fastpath.available() else "not built")
    return Collector(listeners, decoder, aggregator, flow_sink=flow_sink)
