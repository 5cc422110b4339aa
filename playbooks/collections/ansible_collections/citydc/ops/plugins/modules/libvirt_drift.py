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
    hypervisor role writes; domains of another inventory host are not this one's to declare (the lab's two
    hypervisors share one libvirtd) and are reported apart as C(foreign) with their owner (a VM migrated here
    from its owner keeps that element: the hypervisor role refuses to define it again on its owner), and
    domains without that element are reported as undeclared.
  - Reports declared VMs that are missing, domains that are not declared, and per VM the fields that differ
    (vcpu, memory_mib, network, disk_gib, site, state, description when declared). vcpu and memory_mib are what
    the VM boots with (the C(current) attribute of C(<vcpu>), C(<currentMemory>)); vcpu_max and memory_max_mib are
    reported when the maximum (C(<vcpu>), C(<memory>)) differs from the declared value too. Changes nothing.
  - A declared state is C(running) (the default), C(shutoff) or its synonym C(shutdown); any other value fails
    the module, so a playbook calling it first changes nothing. So does a declared VM without one of name, vcpu,
    memory_mib, disk_gib, network, site, with a key not among those (and state, description), with a number that is
    not a whole number of at least 1 (C("2") is a string), or declared twice.
options:
  uri: {description: libvirt connection URI., type: str, required: true}
  hypervisor: {description: Inventory name of the hypervisor., type: str, required: true}
  declared:
    description: The declared VMs (name, vcpu, memory_mib, disk_gib, network, site, state running/shutoff/shutdown).
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
foreign: {description: "Domains owned by another hypervisor of the inventory (their metadata): {name: owner}.",
          returned: always, type: dict}
differing: {description: "Per VM, per field: {declared, actual}.", returned: always, type: dict}
redefine: {description: Differing VMs whose definition changes (not only their state)., returned: always, type: list,
           elements: str}
in_sync: {description: True when nothing is missing or differs., returned: always, type: bool}
actual: {description: "Per existing declared VM, its spec (with its interface's mac).", returned: always, type: dict}
"""

import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule

try:
    import libvirt
except ImportError:
    libvirt = None

NS = "https://citydc.example/xmlns/vm"
FIELDS = ("vcpu", "memory_mib", "disk_gib", "network", "site", "state", "description")
# What a declared VM may hold (anything else is refused: a misspelt key would be ignored), and of which kind.
REQUIRED_KEYS = ("name", "vcpu", "memory_mib", "disk_gib", "network", "site")
KNOWN_KEYS = (*REQUIRED_KEYS, "state", "description")
INT_KEYS = ("vcpu", "memory_mib", "disk_gib")
STR_KEYS = ("network", "site")
# Compared beside the fields: the maximum a VM may grow to (hotplug, balloon), declared as the same vcpu/memory_mib.
MAX_FIELDS = {"vcpu_max": "vcpu", "memory_max_mib": "memory_mib"}
# Declared states, in the vocabulary the report uses (running, shutoff); shutdown is a synonym of shutoff
# (community.libvirt.virt's word). Anything else is refused before any task changes anything.
STATES = {"running": "running", "shutoff": "shutoff", "shutdown": "shutoff"}
# Fields whose difference needs a new definition (and a snapshot before it); a state-only drift is a start/stop.
REDEFINE_FIELDS = ("vcpu", "memory_mib", "disk_gib", "network", "site", "description", "vcpu_max", "memory_max_mib")
_UNITS = {"b": 1, "bytes": 1, "KB": 1000, "k": 1024, "KiB": 1024, "MB": 1000 ** 2, "M": 1024 ** 2, "MiB": 1024 ** 2,
          "GB": 1000 ** 3, "G": 1024 ** 3, "GiB": 1024 ** 3, "TB": 1000 ** 4, "T": 1024 ** 4, "TiB": 1024 ** 4}


def _mib(element):
    """Given a <memory>/<currentMemory> element (or None), return its size in MiB (None when absent)."""
    if element is None or not (element.text or "").strip().isdigit():
        return None
    return int(element.text) * _UNITS.get(element.get("unit") or "KiB", 1024) // (1024 * 1024)


def spec_from_xml(xml, active):
    """Given a domain's inactive XML and whether it runs, return its spec as the inventory declares VMs (what it
    boots with: vcpu's current attribute, currentMemory), the maxima, its MAC address, and its owning hypervisor."""
    root = ET.fromstring(xml)
    vcpu_el = root.find("vcpu")
    vcpu_max = int(vcpu_el.text) if vcpu_el is not None and (vcpu_el.text or "").strip().isdigit() else 0
    current = vcpu_el.get("current", "") if vcpu_el is not None else ""
    memory_max = _mib(root.find("memory"))
    memory = _mib(root.find("currentMemory"))
    net = root.find("devices/interface[@type='network']")
    meta = root.find("metadata/{%s}vm" % NS)
    spec = {
        "vcpu": int(current) if current.isdigit() else vcpu_max,
        "vcpu_max": vcpu_max,
        "memory_mib": memory if memory is not None else (memory_max or 0),
        "memory_max_mib": memory_max or 0,
        "network": net.find("source").get("network") if net is not None and net.find("source") is not None else None,
        "mac": net.find("mac").get("address") if net is not None and net.find("mac") is not None else None,
        "state": "running" if active else "shutoff",
        "disk_gib": int(meta.get("disk_gib")) if meta is not None and meta.get("disk_gib", "").isdigit() else None,
        "site": meta.get("site") if meta is not None else None,
        "description": root.findtext("description") or "",
    }
    return spec, (meta.get("hypervisor") if meta is not None else None)


def actual_spec(dom):
    """Given a domain, return its spec (spec_from_xml) and its owning hypervisor."""
    return spec_from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), dom.isActive())


def _declared_error(i, vm):
    """Given the i-th declared VM, return what is wrong with it (naming the VM and the field), or None.

    Checked here, in the role's first task, so a bad entry changes nothing: a missing field failed only in the define
    task (after the snapshots, with other VMs already defined), a misspelt one (``memory: 2048``) the same way, and
    a number given as a string (``vcpu: "2"``) never equals the domain's 2, so every run snapshotted and redefined
    the VM again. A name is written into the domain's XML and its disk path: no "/" and no control character."""
    where = "declared[%d]" % i
    name = vm.get("name")
    if not isinstance(name, str) or not name.strip():
        return "%s: name is required (a non-empty string), got %r" % (where, name)
    if name != name.strip() or "/" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "%s: name %r: no '/', no control character, no leading or trailing space" % (where, name)
    where = "%s (%s)" % (where, name)
    unknown = sorted(set(vm) - set(KNOWN_KEYS))
    if unknown:
        return "%s: unknown key %s (known: %s)" % (where, ", ".join(map(repr, unknown)), ", ".join(KNOWN_KEYS))
    for key in REQUIRED_KEYS:
        if key not in vm or vm[key] is None:
            return "%s: %s is required" % (where, key)
    for key in INT_KEYS:
        value = vm[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return "%s: %s must be a whole number of at least 1, got %r (%s)" % (where, key, value,
                                                                                type(value).__name__)
    for key in STR_KEYS:
        value = vm[key]
        if not isinstance(value, str) or not value.strip():
            return "%s: %s must be a non-empty string, got %r" % (where, key, value)
    if "description" in vm and not isinstance(vm["description"], str):
        return "%s: description must be a string, got %r" % (where, vm["description"])
    return None


def normalize_declared(declared):
    """Given the declared VMs, return ({name: vm with its state in the report's vocabulary}, error or None)."""
    out = {}
    for i, vm in enumerate(declared):
        error = _declared_error(i, vm)
        if error:
            return None, error + "; nothing was changed"
        if vm["name"] in out:
            return None, "declared[%d]: %s is declared twice; nothing was changed" % (i, vm["name"])
        state = vm.get("state", "running")
        if state not in STATES:
            return None, ("%s: state %r is not one of %s (shutdown is a synonym of shutoff); nothing was changed"
                          % (vm["name"], state, ", ".join(STATES)))
        out[vm["name"]] = dict(vm, state=STATES[state])
    return out, None


def differences(declared, actual):
    """Given the normalized declared VMs and the actual specs of those that exist, return
    {name: {field: {declared, actual}}} for every VM that differs."""
    differing = {}
    for name, spec in actual.items():
        want = declared[name]
        fields = {f: {"declared": want.get(f), "actual": spec[f]} for f in FIELDS
                  if want.get(f) is not None and want.get(f) != spec[f]}
        for field, source in MAX_FIELDS.items():
            if want.get(source) is not None and spec[field] != want.get(source) and spec[field] != spec[source]:
                fields[field] = {"declared": want.get(source), "actual": spec[field]}
        if fields:
            differing[name] = fields
    return differing


def to_redefine(differing):
    """Given the differing VMs, return those whose definition changes (a snapshot first): not a state-only drift."""
    return sorted(n for n, fields in differing.items() if any(f in REDEFINE_FIELDS for f in fields))


def main():
    module = AnsibleModule(argument_spec=dict(uri=dict(type="str", required=True),
                                              hypervisor=dict(type="str", required=True),
                                              declared=dict(type="list", elements="dict", required=True)),
                           supports_check_mode=True)
    if libvirt is None:
        module.fail_json(msg="the libvirt Python binding is not importable (pip install libvirt-python)")
    p = module.params
    declared, error = normalize_declared(p["declared"])
    if error:
        module.fail_json(msg=error)
    try:
        conn = libvirt.open(p["uri"])
    except libvirt.libvirtError as exc:
        module.fail_json(msg="libvirt %s: %s" % (p["uri"], exc.get_error_message()))
    try:
        actual, undeclared, foreign = {}, [], {}
        for dom in conn.listAllDomains(0):
            spec, owner = actual_spec(dom)
            name = dom.name()
            if name in declared:
                actual[name] = spec
            elif owner is None or owner == p["hypervisor"]:
                undeclared.append(name)
            else:
                foreign[name] = owner
    finally:
        conn.close()
    missing = sorted(n for n in declared if n not in actual)
    differing = differences(declared, actual)
    redefine = to_redefine(differing)
    module.exit_json(changed=False, missing=missing, undeclared=sorted(undeclared), foreign=foreign,
                     differing=differing, redefine=redefine, in_sync=not missing and not differing, actual=actual)


if __name__ == "__main__":
    main()
