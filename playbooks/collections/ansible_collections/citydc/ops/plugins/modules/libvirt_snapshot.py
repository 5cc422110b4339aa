#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)

from __future__ import annotations

DOCUMENTATION = r"""
module: libvirt_snapshot
short_description: Take a snapshot of a libvirt domain before changing it
description:
  - Creates a snapshot named O(snapshot) unless the domain already has one of that name. Supports check mode.
options:
  uri: {description: libvirt connection URI., type: str, required: true}
  name: {description: Domain name., type: str, required: true}
  snapshot: {description: Snapshot name (e.g. the run's id)., type: str, required: true}
  description: {description: Snapshot description., type: str, default: taken by citydc before a change}
author: [citydc operations]
requirements: [libvirt-python]
"""

EXAMPLES = r"""
- name: Snapshot before redefining
  citydc.ops.libvirt_snapshot:
    uri: qemu:///system
    name: siwei-web01
    snapshot: before-20261205T050000
"""

RETURN = r"""
snapshot: {description: The snapshot's name., returned: always, type: str}
"""

from xml.sax.saxutils import escape

from ansible.module_utils.basic import AnsibleModule

try:
    import libvirt
except ImportError:
    libvirt = None


def main():
    module = AnsibleModule(argument_spec=dict(uri=dict(type="str", required=True), name=dict(type="str", required=True),
                                              snapshot=dict(type="str", required=True),
                                              description=dict(type="str", default="taken by citydc before a change")),
                           supports_check_mode=True)
    if libvirt is None:
        module.fail_json(msg="the libvirt Python binding is not importable (pip install libvirt-python)")
    p = module.params
    try:
        conn = libvirt.open(p["uri"])
        try:
            dom = conn.lookupByName(p["name"])
            if p["snapshot"] in dom.snapshotListNames(0):
                module.exit_json(changed=False, snapshot=p["snapshot"])
            if not module.check_mode:
                dom.snapshotCreateXML("<domainsnapshot><name>%s</name><description>%s</description></domainsnapshot>"
                                      % (escape(p["snapshot"]), escape(p["description"])), 0)
        finally:
            conn.close()
    except libvirt.libvirtError as exc:
        module.fail_json(msg="libvirt: %s" % exc.get_error_message())
    module.exit_json(changed=True, snapshot=p["snapshot"])


if __name__ == "__main__":
    main()
