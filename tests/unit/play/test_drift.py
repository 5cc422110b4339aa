"""Cross-site drift: the HAProxy settings parser of the citydc.ops collection, the comparison, the event."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from citydc.play import drift, events
from citydc.seclog.event import validate_event

MODULE_UTILS = (Path(__file__).resolve().parents[3] / "playbooks" / "collections" / "ansible_collections" / "citydc"
                / "ops" / "plugins" / "module_utils" / "haproxy_config.py")
_spec = importlib.util.spec_from_file_location("haproxy_config", MODULE_UTILS)
hc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hc)

CFG = """# rendered
global
    stats socket /run/{site}/admin.sock mode 600 level admin
    server-state-file /var/lib/{site}/state
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client {client}  # inline comment
    option redispatch
    retries 3

frontend fe_app
    bind 10.0.0.{n}:80
    default_backend be_app

backend be_app
    balance roundrobin
    option httpchk GET /health
    server app-{site}-1 10.1.{n}.1:8080 check inter 1s fall 2 rise 2 maxconn 64
    server app-{site}-2 10.1.{n}.2:8080 check inter 1s fall 2 rise 2 maxconn 64
"""


def cfg(site: str, n: int, client: str = "30s") -> str:
    return CFG.format(site=site, n=n, client=client)


def test_parse_config_flattens_comparable_settings_and_leaves_out_per_site_ones():
    s = hc.parse_config(cfg("siwei", 1))
    assert s["defaults.timeout client"] == "30s"
    assert s["defaults.option redispatch"] == ""
    assert s["global.maxconn"] == "4096"
    assert s["backend be_app.balance"] == "roundrobin"
    assert s["backend be_app.option httpchk"] == "GET /health"
    assert s["backend be_app.servers"] == "2"
    assert s["backend be_app.server options"] == "check inter 1s fall 2 rise 2 maxconn 64"
    assert not any("socket" in k or "state-file" in k or k.endswith(".bind") for k in s)
    assert "siwei" not in " ".join(s.values())  # nothing per site is left
    assert hc.parse_config(cfg("siwei", 1)) == hc.parse_config(cfg("fengshan", 2))  # same settings, other site


def test_parse_info_and_backends():
    info = hc.parse_info("Name: HAProxy\nVersion: 2.6.12\nNbthread: 2\nMaxconn: 4096\nUptime: 0d 0h00m10s\n")
    assert info == {"runtime.Version": "2.6.12", "runtime.Nbthread": "2", "runtime.Maxconn": "4096"}
    assert hc.backends(hc.parse_config(cfg("siwei", 1))) == ["be_app"]


def hosts(**settings_by_host) -> dict:
    return {h: {"site": h.split("-")[1], "settings": s} for h, s in settings_by_host.items()}


def test_identical_sites_have_no_drift():
    h = hosts(**{"lb-siwei-1": hc.parse_config(cfg("siwei", 1)), "lb-fengshan-1": hc.parse_config(cfg("fengshan", 2))})
    assert drift.compare(h) == []
    assert drift.to_json(h, [])["in_sync"] is True


def test_a_changed_timeout_is_exactly_the_drift():
    h = hosts(**{"lb-siwei-1": hc.parse_config(cfg("siwei", 1)),
                 "lb-fengshan-1": hc.parse_config(cfg("fengshan", 2, client="31s"))})
    found = drift.compare(h)
    assert [d.setting for d in found] == ["defaults.timeout client"]
    assert found[0].values == {"lb-fengshan-1": "31s", "lb-siwei-1": "30s"}
    assert found[0].sites == {"fengshan": ["31s"], "siwei": ["30s"]} and found[0].cross_site


def test_a_setting_one_host_lacks_and_a_pair_that_disagrees_within_a_site():
    h = hosts(**{"lb-siwei-1": {"a": "1", "b": "x"}, "lb-siwei-2": {"a": "2", "b": "x"},
                 "lb-fengshan-1": {"a": "1"}, "lb-fengshan-2": {"a": "2"}})
    found = {d.setting: d for d in drift.compare(h)}
    assert found["b"].values["lb-fengshan-1"] is None and found["b"].cross_site
    assert not found["a"].cross_site  # each site has both values: its own pair disagrees, the sites do not


def test_hosts_from_stats_needs_both_sites():
    stats = {"lb_settings": {"lb-siwei-1": {"site": "siwei", "settings": {"a": "1"}}}}
    with pytest.raises(drift.DriftError, match="fengshan"):
        drift.hosts_from_stats(stats)
    with pytest.raises(drift.DriftError):
        drift.hosts_from_stats({})
    stats["lb_settings"]["lb-fengshan-1"] = {"site": "fengshan", "settings": {"a": "1"}}
    assert set(drift.hosts_from_stats(stats)) == {"lb-siwei-1", "lb-fengshan-1"}


def test_drift_event_is_valid_ecs_and_fails_on_drift():
    facts = events.RunFacts(run_id="r1", user="ops", playbook="lb-drift.yml", inventory="lab", site="all", limit=None,
                            check=True, diff=True, revision="abc", host="m1")
    d = [{"setting": "defaults.timeout client", "values": {"lb-siwei-1": "30s", "lb-fengshan-1": "31s"},
          "sites": {}, "cross_site": True}]
    ev = events.drift_report(facts, in_sync=False, hosts={"lb-siwei-1": "siwei", "lb-fengshan-1": "fengshan"}, drift=d)
    validate_event(ev)
    assert ev["event"]["action"] == "playbook-drift" and ev["event"]["outcome"] == "failure"
    assert ev["citydc"]["playbook"]["drift_count"] == 1 and "defaults.timeout client" in ev["message"]
    ok = events.drift_report(facts, in_sync=True, hosts={"lb-siwei-1": "siwei"}, drift=[])
    validate_event(ok)
    assert ok["event"]["outcome"] == "success"


def _state(**weights_admin) -> dict:
    return {name: {"weight": w, "admin_state": a} for name, (w, a) in weights_admin.items()}


SITES = {"app-siwei-1": "siwei", "app-siwei-2": "siwei", "app-fengshan-1": "fengshan", "app-fengshan-2": "fengshan"}


def test_runtime_weights_are_compared_per_kind_of_server_as_a_multiset():
    """A pool half failed over (one of the other site's servers at full weight on one load balancer) differs from
    one that is not; a set of distinct weights ("0 100" on both) hid it. MAINT and DRAIN are counted."""
    normal = _state(**{"app-siwei-1": (100, 0), "app-siwei-2": (100, 0), "app-fengshan-1": (0, 0),
                       "app-fengshan-2": (0, 0)})
    half = dict(normal, **_state(**{"app-fengshan-1": (100, 0)}))
    siwei = hc.runtime_pool_settings("be_app", half, "siwei", SITES)
    assert siwei["runtime.backend be_app.weights own site"] == "100 100"
    assert siwei["runtime.backend be_app.weights other site"] == "0 100"
    fengshan_normal = _state(**{"app-siwei-1": (0, 0), "app-siwei-2": (0, 0), "app-fengshan-1": (100, 0),
                                "app-fengshan-2": (100, 0)})
    fengshan = hc.runtime_pool_settings("be_app", fengshan_normal, "fengshan", SITES)
    found = drift.compare(hosts(**{"lb-siwei-1": siwei, "lb-fengshan-1": fengshan}))
    assert [d.setting for d in found] == ["runtime.backend be_app.weights other site"]
    same = drift.compare(hosts(**{"lb-siwei-1": hc.runtime_pool_settings("be_app", normal, "siwei", SITES),
                                  "lb-fengshan-1": fengshan}))
    assert same == []
    assert hc.runtime_pool_settings("be_app", half)["runtime.backend be_app.weights"] == "0 100 100 100"
    maint = dict(normal, **_state(**{"app-siwei-1": (100, 1), "app-siwei-2": (100, 8)}))
    counts = hc.runtime_pool_settings("be_app", maint, "siwei", SITES)
    assert counts["runtime.backend be_app.servers in maint"] == "1"
    assert counts["runtime.backend be_app.servers in drain"] == "1"
    assert hc.runtime_pool_settings("be_app", normal, "siwei", SITES)["runtime.backend be_app.servers in maint"] == "0"


_kspec = importlib.util.spec_from_file_location("keepalived_config", MODULE_UTILS.parent / "keepalived_config.py")
kc = importlib.util.module_from_spec(_kspec)
_kspec.loader.exec_module(kc)

KEEPALIVED = """# keepalived of {site} (lb-{site}-1)
global_defs {{
    router_id lb-{site}-1
    enable_script_security
}}

vrrp_instance lb_{site} {{
    state BACKUP
    interface eth0
    virtual_router_id {rid}
    priority {prio}
    advert_int {advert}
{preempt}    unicast_src_ip 10.99.{rid}.1
    unicast_peer {{
        10.99.{rid}.2
    }}
    authentication {{
        auth_type PASS
        auth_pass "{password}"   ! a comment
    }}
    virtual_ipaddress {{
        10.99.{rid}.100/24 dev eth0
    }}
}}
"""


def keepalived_conf(site: str, rid: int, prio: int = 150, advert: int = 1, preempt: bool = True,
                    password: str = "s3cr#t!x") -> str:  # noqa: S107 - a test value in a test config
    return KEEPALIVED.format(site=site, rid=rid, prio=prio, advert=advert, password=password,
                             preempt="" if preempt else "    nopreempt\n")


def test_keepalived_settings_leave_out_what_is_per_node_or_site_and_never_the_password():
    siwei = kc.parse_keepalived(keepalived_conf("siwei", 82, prio=150, password="s3cr#t!x"), "siwei")
    fengshan = kc.parse_keepalived(keepalived_conf("fengshan", 83, prio=100, password="other#pw"), "fengshan")
    assert siwei == fengshan  # router ids, priorities, addresses and passwords differ by nature: no drift
    assert siwei == {
        "keepalived.global_defs.enable_script_security": "yes",
        "keepalived.vrrp_instance lb_<site>.state": "BACKUP",
        "keepalived.vrrp_instance lb_<site>.interface": "eth0",
        "keepalived.vrrp_instance lb_<site>.advert_int": "1",
        "keepalived.vrrp_instance lb_<site>.authentication.auth_type": "PASS",
        "keepalived.vrrp_instance lb_<site>.authentication.auth_pass": "set",
        "keepalived.vrrp_instance lb_<site>.unicast_peer": "1 peer(s)",
        "keepalived.vrrp_instance lb_<site>.virtual_ipaddress": "/24 dev eth0",
    }
    assert "s3cr" not in repr(siwei) and "other" not in repr(fengshan)


def test_keepalived_drift_is_found_by_the_same_comparison():
    hosts = {"lb-siwei-1": {"site": "siwei", "settings": kc.parse_keepalived(keepalived_conf("siwei", 82), "siwei")},
             "lb-fengshan-1": {"site": "fengshan", "settings": kc.parse_keepalived(
                 keepalived_conf("fengshan", 83, advert=3, preempt=False), "fengshan")}}
    found = {d.setting: d.values for d in drift.compare(hosts)}
    assert found == {
        "keepalived.vrrp_instance lb_<site>.advert_int": {"lb-siwei-1": "1", "lb-fengshan-1": "3"},
        "keepalived.vrrp_instance lb_<site>.nopreempt": {"lb-siwei-1": None, "lb-fengshan-1": "yes"},
    }
