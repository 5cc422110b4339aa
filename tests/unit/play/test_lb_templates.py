"""Rendering of the keepalived and lb roles' templates with plain Jinja2 (the values Ansible would give),
and the lab keepalived namespaces staying on their two subnets. The real runs are in tests/lab/."""

from __future__ import annotations

from pathlib import Path

import jinja2

from citydc.lab.keepalived import netns_setup_argvs

ROLES = Path(__file__).resolve().parents[3] / "playbooks" / "roles"


def render(role: str, name: str, **values: object) -> str:
    # Config files, not HTML: no autoescape (Ansible's template module does none either).
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLES / role / "templates"),  # noqa: S701
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    env.filters["bool"] = bool
    return env.get_template(name).render(ansible_managed="Ansible managed", **values)


def keepalived(**over: object) -> str:
    values = {"site": "siwei", "inventory_hostname": "lb-siwei-1", "keepalived_interface": "eth0",
              "keepalived_router_id": 82, "keepalived_priority": 150, "keepalived_advert_int": 1,
              "keepalived_preempt": True, "keepalived_address": "10.99.82.1", "keepalived_peers": ["lb-siwei-2"],
              "hostvars": {"lb-siwei-2": {"keepalived_address": "10.99.82.2"}}, "keepalived_auth_pass": "pw",
              "keepalived_vip": "10.99.82.100/24"}
    return render("keepalived", "keepalived.conf.j2", **{**values, **over})


def test_keepalived_conf_from_inventory_values():
    text = keepalived()
    for line in ("vrrp_instance lb_siwei {", "    virtual_router_id 82", "    priority 150",
                 "    unicast_src_ip 10.99.82.1", "        10.99.82.2", "        auth_pass \"pw\"",
                 "        10.99.82.100/24 dev eth0"):
        assert line + "\n" in text, line
    assert "nopreempt" not in text
    assert "    nopreempt\n" in keepalived(keepalived_preempt=False)


def test_keepalived_auth_pass_is_quoted_so_comment_and_brace_characters_are_kept():
    """keepalived reads an unquoted `#` or `!` as a comment and `}` as the end of a block: quoted, the whole
    password reaches it (the role refuses `"`, `\\`, spaces and non-ASCII)."""
    assert '        auth_pass "ab#c!d}"\n' in keepalived(keepalived_auth_pass="ab#c!d}")


def test_haproxy_pool_has_both_sites_remote_ones_at_the_remote_weight():
    servers = ["app-siwei-1", "app-fengshan-1"]
    hostvars = {"app-siwei-1": {"site": "siwei", "app_address": "10.1.1.1", "app_port": 80},
                "app-fengshan-1": {"site": "fengshan", "app_address": "10.2.1.1", "app_port": 80}}
    text = render("lb", "haproxy.cfg.j2", site="siwei", inventory_hostname="lb-siwei-1", lb_servers=servers,
                  hostvars=hostvars, lb_weight=100, lb_remote_weight=0, lb_stats_bind="0.0.0.0:8404",
                  lb_backend_name="be_app", haproxy_admin_socket="/a", haproxy_state_file="/s", lb_maxconn=1,
                  lb_timeout_connect="1s", lb_timeout_client="1s", lb_timeout_server="1s",
                  lb_retries=1, haproxy_frontend_bind=":80", lb_balance="roundrobin",
                  lb_health_path="/health", lb_check="check", lb_server_maxconn=1)
    assert "server app-siwei-1 10.1.1.1:80 check maxconn 1 weight 100\n" in text
    assert "server app-fengshan-1 10.2.1.1:80 check maxconn 1 weight 0\n" in text
    assert "http-request use-service prometheus-exporter if { path /metrics }" in text


def test_lab_keepalived_namespaces_use_only_their_site_subnet():
    for site, net in (("siwei", "10.99.82."), ("fengshan", "10.99.83.")):
        addrs = [a for argv in netns_setup_argvs(site) for a in argv if a[:1].isdigit()]
        assert addrs and all(a.startswith(net) for a in addrs), addrs
        assert {a for argv in netns_setup_argvs(site) for a in argv if a.startswith("citydc-ka-")} == {
            f"citydc-ka-{site}-br", f"citydc-ka-{site}-1", f"citydc-ka-{site}-2"}
