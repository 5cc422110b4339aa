"""keepalived (Debian) for each site's load-balancer pair, in network namespaces the lab creates.

Topology per site (Siwei on 10.99.82.0/24, Fengshan on 10.99.83.0/24, nothing else):

    citydc-ka-<site>-1  eth0 10.99.8x.1 ──veth── ka1 ┐
                                                     br0 10.99.8x.254 in citydc-ka-<site>-br
    citydc-ka-<site>-2  eth0 10.99.8x.2 ──veth── ka2 ┘

The virtual IP of the site is 10.99.8x.100 (playbooks/inventories/lab: keepalived_vip). Each node runs its
own ``keepalived --vrrp`` (service ``keepalived-<site>-<k>``) inside its namespace, in the foreground
(``-n``), with its config, pid files and log in its service directory, VRRP by unicast to the peer.

The lab writes a bootstrap ``keepalived.conf`` (an instance with no virtual IP) only when none is there;
``citydc play run lb-keepalived.yml`` renders the real one from the inventory and sends keepalived SIGHUP
through its pid file. A restarted node keeps the role's config. Stopping a node's service stops exactly
its recorded PIDs (keepalived's parent and VRRP child): the test of the VIP moving does that.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from citydc import execute
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, LabError, Service, need_binaries

__all__ = ["KEEPALIVED", "SERVICES", "SITES", "KeepalivedNode", "bootstrap_conf", "netns_setup_argvs",
           "node_address", "node_namespace", "vip", "vip_holders"]

KEEPALIVED = "/usr/sbin/keepalived"
SITES = ports.KEEPALIVED_NETS
NODES = (1, 2)
BRIDGE_ADDRESS = 254
VIP_HOST = 100


def node_namespace(site: str, k: int | str) -> str:
    return f"citydc-ka-{site}-{k}"


def node_address(site: str, k: int) -> str:
    return f"{SITES[site]}.{k}"


def vip(site: str) -> str:
    return f"{SITES[site]}.{VIP_HOST}"


def netns_setup_argvs(site: str) -> list[tuple[str, ...]]:
    """Given a site, return the ip(8) commands that create its bridge namespace and its two node namespaces."""
    br = node_namespace(site, "br")
    argvs: list[tuple[str, ...]] = [
        ("ip", "netns", "add", br),
        ("ip", "-n", br, "link", "add", "br0", "type", "bridge"),
        ("ip", "-n", br, "addr", "add", f"{SITES[site]}.{BRIDGE_ADDRESS}/24", "dev", "br0"),
        ("ip", "-n", br, "link", "set", "br0", "up"),
        ("ip", "-n", br, "link", "set", "lo", "up"),
    ]
    for k in NODES:
        ns = node_namespace(site, k)
        argvs += [
            ("ip", "netns", "add", ns),
            ("ip", "-n", br, "link", "add", f"ka{k}", "type", "veth", "peer", "name", "eth0", "netns", ns),
            ("ip", "-n", br, "link", "set", f"ka{k}", "master", "br0"),
            ("ip", "-n", br, "link", "set", f"ka{k}", "up"),
            ("ip", "-n", ns, "addr", "add", f"{node_address(site, k)}/24", "dev", "eth0"),
            ("ip", "-n", ns, "link", "set", "eth0", "up"),
            ("ip", "-n", ns, "link", "set", "lo", "up"),
        ]
    return argvs


def _namespaces() -> set[str]:
    res = execute.run("ip", ("ip", "netns", "list"), timeout=10)
    return {line.split()[0] for line in res.stdout.splitlines() if line.strip()} if res.ok else set()


def ensure_netns(site: str) -> None:
    """Create the site's namespaces unless they are all there. Raise LabError if ip fails."""
    names = {node_namespace(site, k) for k in (*NODES, "br")}
    if names <= _namespaces() and execute.run(
            "ip", ("ip", "-n", node_namespace(site, 2), "link", "show", "eth0"), timeout=10).ok:
        return
    for ns in names & _namespaces():  # a half-made set: nothing of ours runs in it yet
        execute.run("ip", ("ip", "netns", "delete", ns), timeout=10)
    for argv in netns_setup_argvs(site):
        res = execute.run("ip", argv, timeout=10)
        if not res.ok:
            raise LabError(f"{' '.join(argv)} failed: {res.stderr.strip()}")


def remove_netns(site: str) -> None:
    """Remove the site's namespaces if nothing runs in any of them."""
    names = [node_namespace(site, k) for k in (*NODES, "br")]
    present = _namespaces()
    for ns in names:
        pids = execute.run("ip", ("ip", "netns", "pids", ns), timeout=10)
        if ns in present and pids.ok and pids.stdout.strip():
            return
    for ns in names:
        if ns in present:
            execute.run("ip", ("ip", "netns", "delete", ns), timeout=10)


def vip_holders(site: str) -> list[int]:
    """Given a site, return the nodes (1, 2) whose eth0 holds the site's virtual IP right now."""
    out = []
    for k in NODES:
        res = execute.run("ip", ("ip", "-n", node_namespace(site, k), "-4", "-o", "addr", "show", "dev", "eth0"),
                          timeout=10)
        if res.ok and f" {vip(site)}/" in res.stdout:
            out.append(k)
    return out


def bootstrap_conf(site: str, k: int, d: Path) -> str:
    """Given a site, a node and its service directory, return the lab's first keepalived.conf: an instance
    without a virtual IP (the keepalived role's config adds it)."""
    peer = node_address(site, 3 - k)
    return "\n".join([
        "# lab bootstrap config (lab/keepalived.py); `citydc play run lb-keepalived.yml` renders the real one",
        "global_defs {",
        f"    router_id lab-{site}-{k}",
        "    script_user root",
        "    enable_script_security",
        "}",
        "vrrp_instance lab_bootstrap {",
        "    state BACKUP",
        "    interface eth0",
        "    virtual_router_id 1",
        f"    priority {200 - 50 * k}",
        "    advert_int 1",
        f"    unicast_src_ip {node_address(site, k)}",
        f"    unicast_peer {{\n        {peer}\n    }}",
        "}",
        "",
    ])


class KeepalivedNode(Service):
    ready_timeout = 20.0

    def __init__(self, site: str, k: int) -> None:
        self.site, self.k = site, k
        self.name = f"keepalived-{site}-{k}"
        self.namespace = node_namespace(site, k)
        self.description = f"keepalived of {site}'s load-balancer node {k} in netns {self.namespace}"

    def install(self, ctx: LabContext) -> None:
        need_binaries({KEEPALIVED: "keepalived", "ip": "iproute2"}, ctx)
        ensure_netns(self.site)

    def argv(self, d: Path) -> tuple[str, ...]:
        """Given the service directory, return the command that runs this node's keepalived in its namespace."""
        return ("ip", "netns", "exec", self.namespace, KEEPALIVED, "--vrrp", "--dont-fork", "--log-console",
                "--log-detail", "--use-file", str(d / "keepalived.conf"), "--pid", str(d / "keepalived.pid"),
                "--vrrp_pid", str(d / "vrrp.pid"))

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        d.chmod(0o700)
        conf = d / "keepalived.conf"
        if not conf.exists():
            conf.write_text(bootstrap_conf(self.site, self.k, d))
            conf.chmod(0o600)
        for pid in ("keepalived.pid", "vrrp.pid"):
            (d / pid).unlink(missing_ok=True)
        return processes.spawn(list(self.argv(d)), log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        d = ctx.service_dir(self.name)
        try:
            pid = int((d / "vrrp.pid").read_text().strip())
        except (OSError, ValueError):
            return False
        return Path(f"/proc/{pid}").exists()

    def down(self, ctx: LabContext) -> int:
        """Stop this node's keepalived; remove the site's namespaces once nothing runs in them."""
        stopped = super().down(ctx)
        remove_netns(self.site)
        return stopped

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        d = ctx.service_dir(self.name)
        return {"namespace": self.namespace, "address": f"{node_address(self.site, self.k)}/24 eth0",
                "vip": vip(self.site), "config": str(d / "keepalived.conf"), "pid_file": str(d / "keepalived.pid")}


SERVICES = tuple(KeepalivedNode(site, k) for site in SITES for k in NODES)
