"""The NOC wall page (``citydc noc serve``): a poller that reads Prometheus and Alertmanager on its
own schedule into a cache, and an HTTP server that serves every wall screen from that cache."""

from citydc.noc.poller import Poller, Snapshot

__all__ = ["Poller", "Snapshot"]
