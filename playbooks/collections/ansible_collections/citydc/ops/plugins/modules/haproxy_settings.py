#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_settings
short_description: The comparable settings of one HAProxy (its config file and runtime API)
description:
  - Reads the configuration file HAProxy runs with and flattens it to C(section.directive) settings
    (global, defaults with timeouts, frontends, backends with balance, health checks and server options),
    leaving out what is per site by nature (socket and state paths, bind addresses, server names and
    addresses). With I(socket), adds C(show info) values (version, threads, maxconn) and, from
    C(show servers state), each backend's runtime server weights as a sorted multiset per kind of server (this
    load balancer's own site's, the other sites', see O(site) and O(server_sites)), and how many servers are in
    maintenance and in drain; C(runtime.backend NAME.running) says whether the running HAProxy has each backend of
    the file (no: the file was changed and not reloaded). Passwords (C(stats auth), a userlist's users) are compared
    only as set. Changes nothing; used by the lb_drift role to compare sites.
options:
  config_path: {description: The HAProxy configuration file., type: path, required: true}
  socket: {description: HAProxy admin socket (runtime values are left out without it)., type: path}
  site:
    description: This load balancer's site (with O(server_sites)); empty to compare all weights together.
    type: str
  server_sites:
    description: "{server name: its site}: with O(site), weights are compared per kind (own site, other site)."
    type: dict
  pending_marker:
    description: >-
      The lb role's "reload pending" marker (a reload of a changed config that has not succeeded yet); reported as
      C(runtime.reload pending) (yes/no), since the file then differs from what HAProxy runs.
    type: path
  ignore:
    description: Directives never compared (per site by nature).
    type: list
    elements: str
author: [citydc operations]
"""

EXAMPLES = r"""
- name: Read the settings of this load balancer
  citydc.ops.haproxy_settings:
    config_path: /etc/haproxy/haproxy.cfg
    socket: /run/haproxy/admin.sock
  register: lb_drift_settings
"""

RETURN = r"""
settings: {description: "{section.directive: value} of the comparable settings.", returned: always, type: dict}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.citydc.ops.plugins.module_utils.haproxy_config import (
    SITE_LOCAL, backends, parse_config, parse_info, runtime_pool_settings)
from ansible_collections.citydc.ops.plugins.module_utils.haproxy_runtime import (
    RuntimeError_, UnknownBackend, command, servers_state)


def main():
    module = AnsibleModule(argument_spec=dict(config_path=dict(type="path", required=True),
                                              socket=dict(type="path"),
                                              site=dict(type="str", default=""),
                                              pending_marker=dict(type="path"),
                                              server_sites=dict(type="dict", default={}),
                                              ignore=dict(type="list", elements="str", default=list(SITE_LOCAL))),
                           supports_check_mode=True)
    try:
        with open(module.params["config_path"], encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        module.fail_json(msg="cannot read %s: %s" % (module.params["config_path"], exc))
    settings = parse_config(text, ignore=tuple(module.params["ignore"]))
    if module.params["pending_marker"]:
        settings["runtime.reload pending"] = "yes" if os.path.exists(module.params["pending_marker"]) else "no"
    sock = module.params["socket"]
    if sock:
        try:
            settings.update(parse_info(command(sock, "show info")))
            for backend in backends(settings):
                # A backend of the file that the running HAProxy lacks (the file was changed, not reloaded) is a
                # setting of its own; it failed the whole drift run ("Can't find backend"), which then compared
                # nothing.
                try:
                    state = servers_state(sock, backend)
                except UnknownBackend:
                    settings["runtime.backend %s.running" % backend] = "no"
                    continue
                settings["runtime.backend %s.running" % backend] = "yes"
                settings.update(runtime_pool_settings(backend, state, module.params["site"],
                                                      module.params["server_sites"]))
        except RuntimeError_ as exc:
            module.fail_json(msg=str(exc))
    module.exit_json(changed=False, settings=settings)


if __name__ == "__main__":
    main()
