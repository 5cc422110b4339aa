"""The export stage: a prometheus-client custom collector that reads the decoder's and the
aggregator's counters when Prometheus scrapes, so the hot path never touches a metric object.

All names follow the Prometheus conventions (``citydc_`` prefix, base units, ``_total``
counters) and every label set is bounded (see aggregate.py and decoder.ExporterLabels).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from citydc.collectors.netflow.aggregate import Aggregator
from citydc.collectors.netflow.decoder import Decoder

__all__ = ["ListenerInfo", "NetflowMetrics"]

_VERSIONS = {"5": "v5", "9": "v9", "10": "ipfix", "other": "other"}


@dataclass(frozen=True)
class ListenerInfo:
    """What metrics need to know about one listening socket."""

    site: str
    listener: str                        # "address:port"
    receive_buffer: Callable[[], int]
    kernel_drops: Callable[[], int | None]


class NetflowMetrics(Collector):
    """Given the decoder, the aggregator, the listeners and the sites, yield the metric families."""

    def __init__(self, decoder: Decoder, aggregator: Aggregator, listeners: Sequence[ListenerInfo] = (),
                 sites: Sequence[str] = ()) -> None:
        self.decoder = decoder
        self.aggregator = aggregator
        self.listeners = list(listeners)
        self.sites = list(sites)

    def collect(self) -> Iterator[Metric]:
        yield from self._traffic()
        yield from self._talkers()
        yield from self._collector_health()

    def _traffic(self) -> Iterator[Metric]:
        agg = self.aggregator
        with agg.lock:
            interfaces = {k: tuple(v) for k, v in agg.interfaces.items()}
            agency = {k: tuple(v) for k, v in agg.agency.items()}
            protocol = {k: tuple(v) for k, v in agg.protocol.items()}
        for unit, index in (("bytes", 0), ("packets", 1)):
            fam = CounterMetricFamily(f"citydc_netflow_interface_{unit}",
                                      f"Flow {unit} by exporter interface (ifName when known, else ifIndex) "
                                      "and direction, scaled by the sampling rate.",
                                      labels=["site", "exporter", "interface", "direction"])
            for (site, exporter, iface, direction), values in sorted(interfaces.items()):
                fam.add_metric([site, exporter, iface, direction], values[index])
            yield fam
            fam = CounterMetricFamily(f"citydc_netflow_agency_{unit}",
                                      f"Flow {unit} to (in) and from (out) each agency's prefixes.",
                                      labels=["site", "agency", "direction"])
            for key, values in sorted(agency.items()):
                fam.add_metric(list(key), values[index])
            yield fam
            fam = CounterMetricFamily(f"citydc_netflow_protocol_{unit}",
                                      f"Flow {unit} by IP protocol and well-known service port.",
                                      labels=["site", "protocol", "service"])
            for key, values in sorted(protocol.items()):
                fam.add_metric(list(key), values[index])
            yield fam

    def _talkers(self) -> Iterator[Metric]:
        top = GaugeMetricFamily("citydc_netflow_top_talker_bytes",
                                "Estimated bytes sent plus received by the top talkers over the sliding window "
                                "(Misra-Gries summary; underestimates by at most the error bound).",
                                labels=["site", "rank", "talker"])
        bound = GaugeMetricFamily("citydc_netflow_top_talker_error_bound_bytes",
                                  "Largest underestimate of a top-talker value in the current window.",
                                  labels=["site"])
        window = GaugeMetricFamily("citydc_netflow_top_talker_window_seconds",
                                   "Length of the top-talker sliding window.", labels=["site"])
        for site in self.sites:
            talkers, error = self.aggregator.top_talkers(site)
            for rank, (talker, value) in enumerate(talkers, start=1):
                top.add_metric([site, str(rank), talker], value)
            bound.add_metric([site], error)
            window.add_metric([site], self.aggregator.window_seconds)
        yield from (top, bound, window)

    def _collector_health(self) -> Iterator[Metric]:
        stats = self.decoder.stats
        fam = GaugeMetricFamily("citydc_netflow_decoder_info",
                                "Which decode path runs: compiled (C extension) or numpy; always 1.",
                                labels=["path"])
        fam.add_metric([self.decoder.path], 1)
        yield fam
        for name, counter, text in (("datagrams", stats.datagrams, "Export datagrams received"),
                                    ("records", stats.records, "Flow data records decoded")):
            fam = CounterMetricFamily(f"citydc_netflow_{name}", f"{text} per exporter and protocol version.",
                                      labels=["site", "exporter", "version"])
            for (site, exporter, version), value in sorted(dict(counter).items()):
                fam.add_metric([site, exporter, _VERSIONS[version]], value)
            yield fam
        fam = CounterMetricFamily("citydc_netflow_decode_errors",
                                  "Datagrams, sets (reserved_set) or records (implausible_counter) dropped as "
                                  "malformed, by reason.", labels=["site", "exporter", "reason"])
        for key, value in sorted(dict(stats.errors).items()):
            fam.add_metric(list(key), value)
        yield fam
        fam = CounterMetricFamily("citydc_netflow_dropped_datagrams",
                                  "Datagrams dropped before decoding, by reason (unknown_exporter: its source "
                                  "address is not in netflow.exporters).", labels=["site", "exporter", "reason"])
        for key, value in sorted(dict(stats.dropped).items()):
            fam.add_metric(list(key), value)
        yield fam
        seq = self.decoder.sequences
        fam = CounterMetricFamily("citydc_netflow_sequence_lost",
                                  "Export lost between exporter and collector by the header sequence numbers' gaps, "
                                  "in their unit: flow records (v5), export datagrams (v9), data records (IPFIX).",
                                  labels=["site", "exporter", "version"])
        for (site, exporter, version), value in sorted(dict(seq.lost).items()):
            fam.add_metric([site, exporter, _VERSIONS[version]], value)
        yield fam
        fam = CounterMetricFamily("citydc_netflow_sequence_events",
                                  "Datagrams out of sequence: gap (some lost before it), late (reordered), replay "
                                  "(a copy of one already seen), reset (the exporter restarted its sequence).",
                                  labels=["site", "exporter", "version", "event"])
        for (site, exporter, version, event), value in sorted(dict(seq.events).items()):
            fam.add_metric([site, exporter, _VERSIONS[version], event], value)
        yield fam
        fam = CounterMetricFamily("citydc_netflow_unknown_template_sets",
                                  "Data sets that arrived before their template: replayed once it came, "
                                  "or dropped (held too long or too many held).",
                                  labels=["site", "exporter", "version", "outcome"])
        for (site, exporter, version, outcome), value in sorted(dict(stats.unknown_template_sets).items()):
            fam.add_metric([site, exporter, _VERSIONS[version], outcome], value)
        yield fam
        fam = GaugeMetricFamily("citydc_netflow_templates", "Templates and options templates known.",
                                labels=["site", "version"])
        for (site, version), value in sorted(self.decoder.templates.counts().items()):
            fam.add_metric([site, _VERSIONS[str(version)]], value)
        yield fam
        fam = CounterMetricFamily("citydc_netflow_templates_removed",
                                  "Templates forgotten: evicted (cache bound), expired (not refreshed), withdrawn.",
                                  labels=["reason"])
        for reason in ("evicted", "expired", "withdrawn"):
            fam.add_metric([reason], self.decoder.templates.removed[reason])
        yield fam
        drops = CounterMetricFamily("citydc_netflow_socket_drops",
                                    "Datagrams the kernel dropped because the socket's receive buffer was full.",
                                    labels=["site", "listener"])
        rcvbuf = GaugeMetricFamily("citydc_netflow_socket_receive_buffer_bytes",
                                   "Receive buffer granted by the kernel for the socket.", labels=["site", "listener"])
        for info in self.listeners:
            value = info.kernel_drops()
            if value is not None:
                drops.add_metric([info.site, info.listener], value)
            rcvbuf.add_metric([info.site, info.listener], info.receive_buffer())
        yield from (drops, rcvbuf)

