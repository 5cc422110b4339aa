#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_reload
short_description: Hitless reload of a master-worker HAProxy that keeps the servers' runtime states
description:
  - Writes C(show servers state) to the C(server-state-file) (atomically), then sends C(reload) to the master
    CLI and waits (bounded) until the master reports one more reload and the admin socket answers again.
  - Validate the configuration before (the lb role's template task runs C(haproxy -c)).
options:
  admin_socket: {description: Admin socket (runtime API)., type: path, required: true}
  master_socket: {description: Master CLI socket (C(-S))., type: path, required: true}
  state_file: {description: The C(server-state-file) of the global section., type: path, required: true}
  timeout: {description: Seconds to wait for the new worker., type: float, default: 30}
author: [citydc operations]
"""

EXAMPLES = r"""
- name: Reload HAProxy
  citydc.ops.haproxy_reload:
    admin_socket: /run/haproxy/admin.sock
    master_socket: /run/haproxy/master.sock
    state_file: /var/lib/haproxy/server-state
"""

RETURN = r"""
reloads: {description: The master's reload counter after the reload., returned: changed, type: int}
"""

import os
import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.citydc.ops.plugins.module_utils.haproxy_runtime import RuntimeError_, command


def _reloads(master):
    text = command(master, "show proc")
    m = re.search(r"^\d+\s+master\s+(\d+)", text, re.M)
    if not m:
        raise RuntimeError_("master CLI show proc: unexpected answer %r" % text[:300])
    return int(m.group(1))


def main():
    module = AnsibleModule(argument_spec=dict(admin_socket=dict(type="path", required=True),
                                              master_socket=dict(type="path", required=True),
                                              state_file=dict(type="path", required=True),
                                              timeout=dict(type="float", default=30.0)),
                           supports_check_mode=True)
    p = module.params
    if module.check_mode:
        module.exit_json(changed=True)
    try:
        state = command(p["admin_socket"], "show servers state")
        tmp = p["state_file"] + ".tmp"
        with open(tmp, "w") as f:
            f.write(state)
        os.chmod(tmp, 0o600)
        os.replace(tmp, p["state_file"])
        before = _reloads(p["master_socket"])
        command(p["master_socket"], "reload")
        deadline = time.monotonic() + p["timeout"]
        while True:
            try:
                count = _reloads(p["master_socket"])
                if count > before and "Name: HAProxy" in command(p["admin_socket"], "show info"):
                    break
            except RuntimeError_:
                pass  # the master CLI restarts with the reload
            if time.monotonic() > deadline:
                module.fail_json(msg="HAProxy did not finish reloading within %.0f s" % p["timeout"])
            time.sleep(0.2)
    except RuntimeError_ as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=True, reloads=count)


if __name__ == "__main__":
    main()
