"""Every lab service by name, and the up/down/status operations over a selection of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from citydc.lab import processes
from citydc.lab.alertmanager import Alertmanager, AlertWebhook
from citydc.lab.app_backends import AppBackends
from citydc.lab.base import LabContext, LabError, Service
from citydc.lab.busy_link import BusyLink
from citydc.lab.elasticsearch import Elasticsearch
from citydc.lab.es_tls import EsTls
from citydc.lab.haproxy import SERVICES as HAPROXY_SERVICES
from citydc.lab.keepalived import SERVICES as KEEPALIVED_SERVICES
from citydc.lab.keycloak import Keycloak
from citydc.lab.libvirt import Libvirt
from citydc.lab.netdevices import SERVICES as NETDEVICE_SERVICES
from citydc.lab.node_exporter import NodeExporter
from citydc.lab.prometheus import Prometheus
from citydc.lab.prometheus_report import PrometheusReport
from citydc.lab.sftp import Sftp
from citydc.lab.slapd import Slapd
from citydc.lab.snmpd import Snmpd
from citydc.lab.snmpsim import SERVICES as SNMPSIM_SERVICES
from citydc.lab.softflowd import SERVICES as SOFTFLOWD_SERVICES
from citydc.lab.web_secured import AlertmanagerTls, PrometheusTls

__all__ = ["SERVICES", "ServiceStatus", "UnknownService", "down", "select", "status", "up"]

SERVICES: dict[str, Service] = {s.name: s for s in (Snmpd(), Elasticsearch(), EsTls(), Sftp())}
SERVICES.update({s.name: s for s in (*SNMPSIM_SERVICES, Prometheus())})  # SNMP collector
SERVICES.update({s.name: s for s in SOFTFLOWD_SERVICES})  # softflowd-v5/v9/ipfix (NetFlow collector)
SERVICES["slapd"] = Slapd()  # LDAP directory audit
SERVICES["keycloak"] = Keycloak()  # SSO audit: Keycloak federated to the lab slapd
SERVICES.update({s.name: s for s in NETDEVICE_SERVICES})  # device config backup (fakenos, linux sshd)
SERVICES.update({s.name: s for s in (AlertWebhook(), Alertmanager())})  # alerts: webhook receiver, Alertmanager
SERVICES["node-exporter"] = NodeExporter()  # textfile metrics for the NOC page
SERVICES["busy-link"] = BusyLink()  # a veth the NOC end-to-end test drives over its utilisation threshold
SERVICES["prometheus-report"] = PrometheusReport()  # a backfilled month: bandwidth report, dashboards
# Prometheus (reading prometheus-report's month) and Alertmanager behind the lab's web config (TLS, basic auth).
SERVICES.update({s.name: s for s in (PrometheusTls(), AlertmanagerTls())})
# Playbooks (issue 11): application servers, one HAProxy per site, libvirtd with the test driver.
SERVICES.update({s.name: s for s in (AppBackends(), *HAPROXY_SERVICES, Libvirt())})
# keepalived-<site>-<k>: each site's load-balancer pair holding its virtual IP, in namespaces citydc-ka-*.
SERVICES.update({s.name: s for s in KEEPALIVED_SERVICES})


class UnknownService(LabError):
    """A service name the lab does not know (a usage error)."""


def select(names: Sequence[str]) -> list[Service]:
    """Given service names (empty = all), return the services. Raise LabError on an unknown name."""
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise UnknownService(f"unknown lab service {', '.join(unknown)} (known: {', '.join(SERVICES)})")
    return [SERVICES[n] for n in names] if names else list(SERVICES.values())


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    description: str
    running: bool
    pids: tuple[int, ...]
    endpoints: dict[str, str]
    owner: dict | None = None  # who started it: checkout and code digest (base.Service.fingerprint)

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "running": self.running,
                "pids": list(self.pids), "endpoints": self.endpoints, "owner": self.owner}


def up(ctx: LabContext, names: Sequence[str] = ()) -> list[ServiceStatus]:
    for svc in select(names):
        ctx.log(f"starting {svc.name}")
        svc.up(ctx)
    return status(ctx, names)


def down(ctx: LabContext, names: Sequence[str] = ()) -> dict[str, int]:
    return {svc.name: svc.down(ctx) for svc in reversed(select(names))}


def status(ctx: LabContext, names: Sequence[str] = ()) -> list[ServiceStatus]:
    out = []
    for svc in select(names):
        recs = svc.records(ctx)
        live = tuple(r.pid for r in recs if processes.alive(r))
        out.append(ServiceStatus(svc.name, svc.description, bool(recs) and len(live) == len(recs),
                                 live, svc.endpoints(ctx), svc.owner(ctx) if recs else None))
    return out
