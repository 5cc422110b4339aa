#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)

from __future__ import annotations

DOCUMENTATION = r"""
module: libvirt_drift
short_description: Compare the VMs declared for a hypervisor with the domains it has
description:
  - Reads every domain's inactive XML (its persistent definition) and its state. A domain belongs to a
    hypervisor of the inventory through its C(<metadata>) element (C(citydc:vm hypervisor=...)), which the
    hypervisor role writes; domains of another inventory host are ignored (the lab's two hypervisors share one
    libvirtd), and domains without that element are reported as undeclared.
  - Reports declared VMs that are missing, domains that are not declared, and per VM the fields that differ
    (vcpu, memory_mib, network, disk_gib, site, state). Changes nothing.
options:
  uri: {description: libvirt connection URI., type: str, required: true}
  hypervisor: {description: Inventory name of the hypervisor., type: str, required: true}
  declared:
    description: The declared VMs (name, vcpu, memory_mib, disk_gib, network, site, state).
    type: list
    elements: dict
    required: true
author: [citydc operations]
requirements: [libvirt-python]
"""

EXAMPLES = r"""
- name: Drift of this hypervisor
  citydc.ops.libvirt_drift:
    uri: qemu:///system
    hypervisor: "{{ inventory_hostname }}"
    declared: "{{ hypervisor_vms }}"
  register: drift
"""

RETURN = r"""
missing: {description: Declared VMs that do not exist., returned: always, type: list, elements: str}
undeclared: {description: Domains nobody declared., returned: always, type: list, elements: str}
differing: {description: "Per VM, per field: {declared, actual}.", returned: always, type: dict}
in_sync: {description: True when nothing is missing or differs., returned: always, type: bool}
"""

import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule

try:
    import libvirt
except ImportError:
    libvirt = None

NS = "https://citydc.example/xmlns/vm"
FIELDS = ("vcpu", "memory_mib", "disk_gib", "network", "site", "state")


def actual_spec(dom):
    """Given a domain, return its spec as the inventory declares VMs, plus its owning hypervisor."""
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    mem = root.find("memory")
    unit = (mem.get("unit") or "KiB") if mem is not None else "KiB"
    kib = int(mem.text) * {"KiB": 1, "MiB": 1024, "GiB": 1024 * 1024, "b": 1, "bytes": 1}.get(unit, 1) if mem is not None else 0
    if unit in ("b", "bytes"):
        kib //= 1024
    net = root.find("devices/interface[@type='network']/source")
    meta = root.find("metadata/{%s}vm" % NS)
    spec = {
        "vcpu": int(root.findtext("vcpu") or 0),
        "memory_mib": kib // 1024,
        "network": net.get("network") if net is not None else None,
        "state": "running" if dom.isActive() else "shutoff",
        "disk_gib": int(meta.get("disk_gib")) if meta is not None and meta.get("disk_gib", "").isdigit() else None,
        "site": meta.get("site") if meta is not None else None,
    }
    return spec, (meta.get("hypervisor") if meta is not None else None)


def main():
    module = AnsibleModule(argument_spec=dict(uri=dict(type="str", required=True),
                                              hypervisor=dict(type="str", required=True),
                                              declared=dict(type="list", elements="dict", required=True)),
                           supports_check_mode=True)
    if libvirt is None:
        module.fail_json(msg="the libvirt Python binding is not importable (pip install libvirt-python)")
    p = module.params
    declared = {}
    for i, vm in enumerate(p["declared"]):
        if not vm.get("name"):
            module.fail_json(msg="declared[%d]: name is required" % i)
        declared[vm["name"]] = dict(vm, state=vm.get("state", "running"))
    try:
        conn = libvirt.open(p["uri"])
    except libvirt.libvirtError as exc:
        module.fail_json(msg="libvirt %s: %s" % (p["uri"], exc.get_error_message()))
    try:
        actual, undeclared = {}, []
        for dom in conn.listAllDomains(0):
            spec, owner = actual_spec(dom)
            name = dom.name()
            if name in declared:
                actual[name] = spec
            elif owner is None or owner == p["hypervisor"]:
                undeclared.append(name)
    finally:
        conn.close()
    missing = sorted(n for n in declared if n not in actual)
    differing = {}
    for name, spec in actual.items():
        fields = {f: {"declared": declared[name].get(f), "actual": spec[f]} for f in FIELDS
                  if declared[name].get(f) is not None and declared[name].get(f) != spec[f]}
        if fields:
            differing[name] = fields
    module.exit_json(changed=False, missing=missing, undeclared=sorted(undeclared), differing=differing,
                     in_sync=not missing and not differing, actual=actual)


if __name__ == "__main__":
    main()
