#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_pool_info
short_description: The servers of one HAProxy backend with their state, health and sessions
description:
  - Reads C(show servers state) and C(show stat) on the admin socket. Changes nothing.
options:
  socket: {description: HAProxy admin socket., type: path, required: true}
  backend: {description: Backend name., type: str, required: true}
author: [citydc operations]
"""

EXAMPLES = r"""
- name: Read the pool
  citydc.ops.haproxy_pool_info:
    socket: /run/haproxy/admin.sock
    backend: be_app
  register: pool
"""

RETURN = r"""
servers: {description: "Each server: name, admin (ready/drain/maint), up, weight, sessions, status.", returned: always,
          type: list, elements: dict}
serving: {description: Servers that take new traffic (ready and UP)., returned: always, type: list, elements: str}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.citydc.ops.plugins.module_utils.haproxy_runtime import RuntimeError_, server_view


def main():
    module = AnsibleModule(argument_spec=dict(socket=dict(type="path", required=True),
                                              backend=dict(type="str", required=True)),
                           supports_check_mode=True)
    try:
        servers = server_view(module.params["socket"], module.params["backend"])
    except RuntimeError_ as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, servers=servers,
                     serving=[s["name"] for s in servers if s["admin"] == "ready" and s["up"] and s["weight"] > 0])


if __name__ == "__main__":
    main()
