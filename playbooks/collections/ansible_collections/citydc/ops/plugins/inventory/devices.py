# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)

from __future__ import annotations

DOCUMENTATION = r"""
name: devices
short_description: The load balancers and hypervisors of citydc.yaml's devices, as Ansible hosts
description:
  - Reads citydc.yaml through citydc's own loader (the same validation as C(citydc config check)) and adds every
    device of role C(lb) to the group C(lb) and of role C(hypervisor) to the group C(hypervisors), each also to
    the group of its site (C(siwei), C(fengshan), ...).
  - C(ansible_host) is the host of the device's C(management_address) (the SSH endpoint citydc's config backup
    uses) or, when it has none, the host of its C(address); C(ansible_port) is the management address's port
    when it names one.
  - Everything else about those hosts (pools, declared VMs, keepalived priority) stays in the inventory's
    C(host_vars)/C(group_vars) under the device's name, and other hosts (the app tier) in its static files.
  - The inventory source is a file named C(citydc_devices.yml) (or C(.yaml)).
  - A config that does not load is an error that names the file, the line and the field; no host is added.
    Secrets in the config are never resolved here.
options:
  plugin:
    description: Marks the file as this plugin's source.
    required: true
    choices: [citydc.ops.devices]
  config:
    description:
      - citydc.yaml to read. A relative path is relative to the inventory source file.
    type: str
    default: /etc/citydc/citydc.yaml
    env: [{name: CITYDC_CONFIG}]
author: [citydc operations]
"""

EXAMPLES = r"""
# inventories/production/citydc_devices.yml
plugin: citydc.ops.devices
# config: /etc/citydc/citydc.yaml     # default: $CITYDC_CONFIG (citydc play run sets it), then this path
"""

import os

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

# Device role -> the inventory group of its tier (the groups the playbooks target).
TIER_GROUPS = {"lb": "lb", "hypervisor": "hypervisors"}


def _load_devices(config_path):
    """Given citydc.yaml's path, return [(name, site, role, host, port or None)] of its lb and hypervisor devices.

    Raise AnsibleParserError naming the file (and each invalid field) if it does not load."""
    try:
        from citydc.config.loader import ConfigInvalid, load
        from citydc.hostport import parse_host_port
    except ImportError as exc:
        raise AnsibleParserError(
            f"citydc.ops.devices needs the citydc package in the Python that runs Ansible ({exc}); "
            "install citydc into the same virtualenv as ansible-core") from None
    try:
        loaded = load(config_path)
    except ConfigInvalid as exc:  # holds every error with its line, never a secret value
        raise AnsibleParserError(f"citydc.ops.devices: {config_path} is not a valid citydc config:\n{exc}") from None
    hosts = []
    for device in loaded.config.devices:
        if device.role not in TIER_GROUPS:
            continue
        if device.management_address is not None:
            host, port = parse_host_port(device.management_address, default_port=0)
            hosts.append((device.name, device.site, device.role, host, port or None))
        else:
            hosts.append((device.name, device.site, device.role, parse_host_port(device.address, 161).host, None))
    return hosts


class InventoryModule(BaseInventoryPlugin):
    NAME = "citydc.ops.devices"

    def verify_file(self, path):
        return super().verify_file(path) and os.path.basename(path) in ("citydc_devices.yml", "citydc_devices.yaml")

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        config_path = os.path.expanduser(self.get_option("config"))
        if not os.path.isabs(config_path):
            config_path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), config_path))
        for name, site, role, host, port in _load_devices(config_path):
            for group in (site, TIER_GROUPS[role]):
                self.inventory.add_group(group)
                self.inventory.add_host(name, group=group)
            self.inventory.set_variable(name, "ansible_host", host)
            if port is not None:
                self.inventory.set_variable(name, "ansible_port", port)
