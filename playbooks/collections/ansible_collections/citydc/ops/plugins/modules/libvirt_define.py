#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)

from __future__ import annotations

DOCUMENTATION = r"""
module: libvirt_define
short_description: Define a declared VM, or set the declared fields of the domain it already is
description:
  - A VM that does not exist is defined from O(xml) (the hypervisor role's template).
  - A VM that exists keeps its own persistent definition with only the fields a declared VM holds set (the vCPU
    count, the memory, the network of its first network interface, the description, the citydc metadata).
    Everything else is kept as it is (a data disk attached by hand, a CD-ROM, a console, the CPU model, the UUID,
    the MAC address): the template's definition would drop what the template does not write.
  - That definition is read and written inside this module with its secrets (VIR_DOMAIN_XML_SECURE, e.g. a VNC or
    SPICE password): they never reach the task's arguments or result, and are not dropped from the domain (a
    definition read without them and defined again would leave its console without a password). The diff shows the
    definition without them.
  - A running domain gets its new vCPU count and memory at its next start. Supports check mode and diff mode.
options:
  uri: {description: libvirt connection URI., type: str, required: true}
  hypervisor: {description: Inventory name of the hypervisor (written into the citydc metadata)., type: str,
               required: true}
  vm:
    description: The declared VM (name, vcpu, memory_mib, disk_gib, network, site, description), as checked by
      citydc.ops.libvirt_drift.
    type: dict
    required: true
  xml: {description: The definition of the VM when it does not exist yet., type: str, required: true}
author: [citydc operations]
requirements: [libvirt-python]
"""

EXAMPLES = r"""
- name: Define a VM, or set the declared fields of the one that exists
  citydc.ops.libvirt_define:
    uri: qemu:///system
    hypervisor: "{{ inventory_hostname }}"
    vm: {name: siwei-web01, vcpu: 2, memory_mib: 2048, disk_gib: 20, network: default, site: siwei}
    xml: "{{ lookup('ansible.builtin.template', 'domain.xml.j2') }}"
"""

RETURN = r"""
name: {description: The domain's name., returned: always, type: str}
created: {description: Whether the domain was defined from O(xml) (it did not exist)., returned: always, type: bool}
"""

import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule

try:
    import libvirt
except ImportError:
    libvirt = None

NS = "https://citydc.example/xmlns/vm"  # (as citydc.ops.libvirt_drift and the hypervisor role's template)


def _child(parent, tag):
    """Given an element and a child's tag, return that child, made when missing."""
    found = parent.find(tag)
    return found if found is not None else ET.SubElement(parent, tag)


def redefined_xml(xml, vm, hypervisor):
    """Given a domain's XML, its declared VM and the hypervisor, return the XML with only the declared fields set:
    vcpu (booting with all of them, as the role's template does), memory and currentMemory, the network of the
    first network interface (one is added when there is none), the description when declared, the citydc
    metadata (site, hypervisor, disk_gib)."""
    ET.register_namespace("citydc", NS)
    root = ET.fromstring(xml)
    vcpu = _child(root, "vcpu")
    vcpu.text = str(vm["vcpu"])
    vcpu.attrib.pop("current", None)
    for tag in ("memory", "currentMemory"):
        memory = _child(root, tag)
        memory.text = str(vm["memory_mib"])
        memory.set("unit", "MiB")
    net = root.find("devices/interface[@type='network']")
    if net is None:
        net = ET.SubElement(_child(root, "devices"), "interface", {"type": "network"})
    _child(net, "source").set("network", vm["network"])
    if vm.get("description") is not None:
        _child(root, "description").text = vm["description"]
    meta = _child(_child(root, "metadata"), "{%s}vm" % NS)
    meta.set("site", vm["site"])
    meta.set("hypervisor", hypervisor)
    meta.set("disk_gib", str(vm["disk_gib"]))
    return ET.tostring(root, encoding="unicode")


def _canonical(xml):
    """Given a domain's XML, return it as ElementTree writes it (a check-mode diff shows changes, not quoting)."""
    ET.register_namespace("citydc", NS)
    return ET.tostring(ET.fromstring(xml), encoding="unicode")


def main():
    module = AnsibleModule(argument_spec=dict(uri=dict(type="str", required=True),
                                              hypervisor=dict(type="str", required=True),
                                              vm=dict(type="dict", required=True),
                                              xml=dict(type="str", required=True)),
                           supports_check_mode=True)
    if libvirt is None:
        module.fail_json(msg="the libvirt Python binding is not importable (pip install libvirt-python)")
    p = module.params
    name = str(p["vm"].get("name", ""))
    missing = [k for k in ("name", "vcpu", "memory_mib", "disk_gib", "network", "site") if p["vm"].get(k) is None]
    if missing:
        module.fail_json(msg="%s: the declared VM lacks %s" % (name or "vm", ", ".join(missing)))
    inactive = libvirt.VIR_DOMAIN_XML_INACTIVE
    try:
        conn = libvirt.open(p["uri"])
        try:
            try:
                dom = conn.lookupByName(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                dom = None
            if dom is None:
                before = ""
                after = p["xml"] if module.check_mode else conn.defineXML(p["xml"]).XMLDesc(inactive)
            elif module.check_mode:
                before = _canonical(dom.XMLDesc(inactive))
                after = redefined_xml(before, p["vm"], p["hypervisor"])
            else:
                before = dom.XMLDesc(inactive)
                secure = dom.XMLDesc(inactive | libvirt.VIR_DOMAIN_XML_SECURE)
                after = conn.defineXML(redefined_xml(secure, p["vm"], p["hypervisor"])).XMLDesc(inactive)
        finally:
            conn.close()
    except libvirt.libvirtError as exc:
        module.fail_json(msg="%s: libvirt: %s" % (name, exc.get_error_message()))
    result = dict(changed=before != after, name=name, created=dom is None)
    if module._diff:
        result["diff"] = {"before": before, "after": after, "before_header": name, "after_header": name}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
