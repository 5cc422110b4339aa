"""What the NOC page shows, as PromQL: the tiers of the status matrix, the link charts, backups, audits.

The link queries read the recording rules of ``alerts/snmp.rules.yml``, so the page, the alerts and
the bandwidth report agree on one definition of utilisation. The chart series and the current
value are the same expression (a share of the interface speed, 0-1) evaluated by a range and an
instant query: the last point of a chart is the value beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "BACKUP_OUTCOME",
    "BACKUP_SUCCESS",
    "LDAP_FINDINGS",
    "LDAP_RULE_FINDINGS",
    "LDAP_SUCCESS",
    "LINK_BITS",
    "LINK_UTILISATION",
    "SEVERITIES",
    "STOPPED",
    "TIERS",
    "VANISHED_LOOKBACK",
    "Tier",
    "freshness",
    "regex_literal",
    "tier_of",
]

LINK_UTILISATION = "link:citydc_snmp_if_utilisation:ratio_rate5m"  # share of the speed, 0-1
LINK_BITS = "link:citydc_snmp_if_bits:rate5m"  # bits per second
BACKUP_SUCCESS = "citydc_backup_last_success_timestamp_seconds"
BACKUP_ATTEMPT = "citydc_backup_last_attempt_timestamp_seconds"
BACKUP_OUTCOME = "citydc_backup_last_outcome == 1"
LDAP_FINDINGS = "citydc_ldap_audit_findings"
LDAP_RULE_FINDINGS = "citydc_ldap_audit_rule_findings > 0"
LDAP_SUCCESS = "citydc_ldap_audit_last_success_timestamp_seconds"
LDAP_ATTEMPT = "citydc_ldap_audit_last_attempt_timestamp_seconds"

# Most severe first; an alert with another severity counts as info.
SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True)
class Tier:
    id: str
    en: str
    zh: str
    # PromQL giving, per site, the time of the tier's newest sample (None: the tier exports no
    # metric yet, so only its alerts can speak for it).
    freshness: str | None
    # Alerts whose name matches belong to the tier (an alert's own "tier" label wins).
    alerts: str

    @property
    def alert_pattern(self) -> re.Pattern[str]:
        return re.compile(self.alerts)


# How far back a tier's metrics count as "were there": a site whose metrics of a tier vanished within it
# answers 0 instead of a time (freshness() below), so even the first poll of a server just started, and
# every `citydc noc show`, tells metrics that stopped (STALE) from metrics that never were (NO DATA).
VANISHED_LOOKBACK = "1h"
STOPPED = 0.0  # the freshness value of a site whose metrics of the tier stopped within VANISHED_LOOKBACK


def freshness(metric: str) -> str:
    """Given a metric, return PromQL giving per site the time of its newest sample, or 0 (STOPPED) for a site
    that had the metric within VANISHED_LOOKBACK but has no current sample."""
    return (f"max by (site) (timestamp({metric})) "
            f"or count by (site) (last_over_time({metric}[{VANISHED_LOOKBACK}])) * 0")


TIERS: tuple[Tier, ...] = (
    Tier("network", "Network", "網路", freshness("citydc_snmp_up"), r"^(Uplink|Link|Interface|Snmp|Netflow)"),
    Tier("lb", "Load balancers", "負載平衡", None, r"^(LoadBalancer|Lb|Haproxy|Backend)"),
    Tier("virt", "Virtualization", "虛擬化", None, r"^(Virt|Libvirt|Hypervisor|Vm)"),
    Tier("backup", "Backup", "備份", freshness(BACKUP_ATTEMPT), r"^Backup"),
    Tier("identity", "Identity", "身分識別", freshness(LDAP_ATTEMPT), r"^(Ldap|Auth|Sso|Audit|Identity)"),
    Tier("seclog", "Security log", "資安日誌", freshness("citydc_seclog_spool_backlog_events"), r"^Seclog"),
)


def tier_of(labels: dict[str, str]) -> str | None:
    """Given an alert's labels, return its tier id (its ``tier`` label, else by alert name), or None."""
    own = labels.get("tier")
    if own and any(t.id == own for t in TIERS):
        return own
    name = labels.get("alertname", "")
    for tier in TIERS:
        if tier.alert_pattern.search(name):
            return tier.id
    return None


def regex_literal(values: list[str]) -> str:
    """Given label values, return a PromQL double-quoted string of an RE2 regex matching exactly them."""
    alternatives = "|".join(re.escape(v) for v in sorted(set(values))) or "$^"
    return '"' + alternatives.replace("\\", "\\\\").replace('"', '\\"') + '"'
