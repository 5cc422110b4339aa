"""Metrics of the security-log pipeline, on a registry the caller passes in.

Per-event counters carry the event's ``labels.site``; spool-level metrics carry the site of the
host running the spool (given by the caller, ``CITYDC_SITE`` for the CLI). Delivery errors are
labelled by the bounded ``DeliveryError.reason``. ``citydc log ship`` also writes them as a
node_exporter textfile (atomically), because a one-shot shipper is not scraped.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

from citydc.files import public_textfile
from citydc.seclog.event import Encoded

__all__ = ["SeclogMetrics", "write_textfile"]


class SeclogMetrics:
    """The pipeline's metrics, registered on ``registry`` (never the global one, except from the CLI)."""

    def __init__(self, registry: CollectorRegistry, site: str = "unknown"):
        self.registry = registry
        self.site = site
        self.emitted = Counter("citydc_seclog_events_emitted_total", "Events written to the spool.",
                               ["site", "dataset"], registry=registry)
        self.duplicates = Counter("citydc_seclog_events_duplicate_total",
                                  "Events dropped at emit because their event.id was already spooled.",
                                  ["site", "dataset"], registry=registry)
        self.delivered = Counter("citydc_seclog_events_delivered_total",
                                 "Events acknowledged by the store (redelivered duplicates included once per "
                                 "acknowledgement).", ["site"], registry=registry)
        self.backlog_events = Gauge("citydc_seclog_spool_backlog_events", "Events spooled but not acknowledged.",
                                    ["site"], registry=registry)
        self.backlog_bytes = Gauge("citydc_seclog_spool_backlog_bytes", "Spool bytes not acknowledged.",
                                   ["site"], registry=registry)
        self.errors = Counter("citydc_seclog_delivery_errors_total", "Failed delivery attempts by reason.",
                              ["site", "reason"], registry=registry)
        self.corrupt = Counter("citydc_seclog_spool_corrupt_lines_total", "Spool lines skipped as corrupted.",
                               ["site"], registry=registry)
        self.last_delivery = Gauge("citydc_seclog_last_delivery_timestamp_seconds",
                                   "Time of the last acknowledged delivery.", ["site"], registry=registry)

    def count_emitted(self, events: Iterable[dict], requested: Iterable[dict]) -> None:
        """Given the events spooled and those asked for, count emitted and duplicate events per site/dataset."""
        spooled = Tally(_site_dataset(e) for e in events)
        asked = Tally(_site_dataset(e) for e in requested)
        for (site, dataset), n in asked.items():
            if spooled[(site, dataset)]:
                self.emitted.labels(site, dataset).inc(spooled[(site, dataset)])
            if n > spooled[(site, dataset)]:
                self.duplicates.labels(site, dataset).inc(n - spooled[(site, dataset)])

    def count_delivered(self, events: Iterable[dict], when: float) -> None:
        self.count_delivered_sites(Tally(e["labels"]["site"] for e in events), when)

    def count_delivered_sites(self, sites: Mapping[str, int], when: float) -> None:
        """Given the delivered events per labels.site and the time, count them."""
        for site, n in sites.items():
            self.delivered.labels(site).inc(n)
        self.last_delivery.labels(self.site).set(when)

    def set_backlog(self, events: int, size: int) -> None:
        self.backlog_events.labels(self.site).set(events)
        self.backlog_bytes.labels(self.site).set(size)


def _site_dataset(event: Mapping) -> tuple[str, str]:
    """Given an event (a dict, or an ``Encoded`` one: read without decoding it), return its site and dataset."""
    if type(event) is Encoded:
        return event.site, event.dataset
    return event["labels"]["site"], event["event"]["dataset"]


def write_textfile(registry: CollectorRegistry, path: str | Path) -> None:
    """Given a registry and a ``.prom`` path, write the node_exporter textfile atomically (tmp + rename).

    Raise OSError naming ``path`` (the client's own names the temporary file beside it, which the
    user never gave): a missing or unwritable directory, a full disk."""
    try:
        write_to_textfile(str(path), registry)
        public_textfile(Path(path))  # node_exporter's user reads it; it holds metrics only
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
