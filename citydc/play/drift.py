"""Cross-site drift of the load balancers: pure comparison of the settings ``lb-drift.yml`` reads.

``lb-drift.yml`` (role ``lb_drift``, module ``citydc.ops.haproxy_settings``) reports, per load balancer,
its site and its comparable settings (``{section.directive: value}``: the HAProxy config file without
what is per site by nature, and runtime values). A setting drifts when the load balancers do not all
have the same value for it (a setting one of them lacks counts as the value ``None``). Each drifting
setting is reported with every host's value; ``cross_site`` says whether the sites' values differ
(rather than only the two load balancers of one site).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Drift", "DriftError", "compare", "hosts_from_stats", "to_json"]


class DriftError(ValueError):
    """The run's report cannot be compared (a site is missing, a host reported nothing)."""


@dataclass(frozen=True)
class Drift:
    setting: str
    values: dict[str, str | None]  # host -> value (None: the host lacks the setting)
    sites: dict[str, list[str | None]]  # site -> its hosts' distinct values
    cross_site: bool

    def to_json(self) -> dict[str, Any]:
        return {"setting": self.setting, "values": self.values, "sites": self.sites, "cross_site": self.cross_site}


def hosts_from_stats(stats_data: Mapping[str, Any], sites: tuple[str, ...] = ("siwei", "fengshan")
                     ) -> dict[str, dict[str, Any]]:
    """Given the run's ``stats_data`` (``lb_settings: {host: {site, settings}}``), return ``{host: {site, settings}}``.

    Raise DriftError when nothing was reported or one of ``sites`` has no load balancer in the report.
    """
    hosts = stats_data.get("lb_settings") or {}
    if not isinstance(hosts, Mapping) or not hosts:
        raise DriftError("the run reported no load-balancer settings (lb_settings)")
    out: dict[str, dict[str, Any]] = {}
    for host, item in hosts.items():
        if not isinstance(item, Mapping) or not isinstance(item.get("settings"), Mapping):
            raise DriftError(f"{host}: no settings in the report")
        out[str(host)] = {"site": str(item.get("site", "?")), "settings": dict(item["settings"])}
    missing = [s for s in sites if not any(h["site"] == s for h in out.values())]
    if missing:
        raise DriftError(f"no load balancer of {', '.join(missing)} reported its settings: nothing to compare with")
    return out


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def compare(hosts: Mapping[str, Mapping[str, Any]]) -> list[Drift]:
    """Given ``{host: {site, settings}}``, return the drifting settings, sorted by setting."""
    keys = sorted({k for h in hosts.values() for k in h["settings"]})
    out = []
    for key in keys:
        values = {host: _text(hosts[host]["settings"].get(key)) for host in sorted(hosts)}
        if len(set(values.values())) <= 1:
            continue
        sites: dict[str, list[str | None]] = {}
        for host, value in values.items():
            distinct = sites.setdefault(hosts[host]["site"], [])
            if value not in distinct:
                distinct.append(value)
        site_sets = {frozenset(v) for v in sites.values()}
        out.append(Drift(setting=key, values=values, sites=sites, cross_site=len(site_sets) > 1))
    return out


def to_json(hosts: Mapping[str, Mapping[str, Any]], drift: list[Drift]) -> dict[str, Any]:
    """Given the hosts compared and the drift, return the report's JSON form."""
    return {"in_sync": not drift, "hosts": {h: hosts[h]["site"] for h in sorted(hosts)},
            "settings_compared": len({k for h in hosts.values() for k in h["settings"]}),
            "drift": [d.to_json() for d in drift]}
