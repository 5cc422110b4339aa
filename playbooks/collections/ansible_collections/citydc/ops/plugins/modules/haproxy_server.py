#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_server
short_description: Drain, maintain, enable or weight one HAProxy backend server over the runtime API
description:
  - Reads the server's state with C(show servers state) and changes it with C(set server) on the admin
    socket only when it differs, so a second run reports no change. Supports check mode.
  - With O(state_file), writes C(show servers state) to the C(server-state-file) after a change, so the file
    always holds the runtime states (HAProxy applies it at every start (C(load-server-state-from-file)), and a
    file older than the last change would bring back stale MAINT/DRAIN states or weights after a restart).
  - With O(wait), a drain or maintenance waits (bounded by O(wait_timeout)) until the server holds no
    session, and C(ready) waits until the health check reports it UP; a timeout is a failure.
options:
  socket: {description: HAProxy admin socket (runtime API at admin level)., type: path, required: true}
  backend: {description: Backend name., type: str, required: true}
  server: {description: Server name in that backend., type: str, required: true}
  state: {description: Wanted administrative state., type: str, choices: [ready, drain, maint]}
  weight: {description: Wanted weight (0-256)., type: int}
  state_file:
    description: The C(server-state-file) of the global section, written after a change; empty to leave it.
    type: path
  wait: {description: Wait until the new state took effect (sessions ended / server UP)., type: bool, default: false}
  wait_timeout: {description: Seconds to wait at most., type: float, default: 30}
author: [citydc operations]
"""

EXAMPLES = r"""
- name: Drain app-siwei-1 and wait for its sessions to end
  citydc.ops.haproxy_server:
    socket: /run/haproxy/admin.sock
    backend: be_app
    server: app-siwei-1
    state: drain
    wait: true
    wait_timeout: 60
    state_file: /var/lib/haproxy/server-state
"""

RETURN = r"""
before: {description: The server before the change., returned: always, type: dict}
after: {description: The server after the change (as wanted in check mode)., returned: always, type: dict}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.citydc.ops.plugins.module_utils.haproxy_runtime import (
    RuntimeError_,
    command,
    save_server_state,
    server_view,
    wait_for,
)


def _find(sock, backend, server):
    for s in server_view(sock, backend):
        if s["name"] == server:
            return s
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", required=True),
            backend=dict(type="str", required=True),
            server=dict(type="str", required=True),
            state=dict(type="str", choices=["ready", "drain", "maint"]),
            weight=dict(type="int"),
            state_file=dict(type="path"),
            wait=dict(type="bool", default=False),
            wait_timeout=dict(type="float", default=30.0),
        ),
        required_one_of=[("state", "weight")],
        supports_check_mode=True,
    )
    p = module.params
    sock, backend, server = p["socket"], p["backend"], p["server"]
    if p["weight"] is not None and not 0 <= p["weight"] <= 256:
        module.fail_json(msg="weight: expected 0-256, got %d" % p["weight"])
    try:
        before = _find(sock, backend, server)
        if before is None:
            module.fail_json(msg="server %s not found in backend %s" % (server, backend))
        commands = []
        if p["state"] and before["admin"] != p["state"]:
            commands.append("set server %s/%s state %s" % (backend, server, p["state"]))
        if p["weight"] is not None and before["weight"] != p["weight"]:
            commands.append("set server %s/%s weight %d" % (backend, server, p["weight"]))
        after = dict(before, admin=p["state"] or before["admin"],
                     weight=before["weight"] if p["weight"] is None else p["weight"])
        diff = {"before": "%(admin)s weight %(weight)d\n" % before, "after": "%(admin)s weight %(weight)d\n" % after}
        if module.check_mode or not commands:
            module.exit_json(changed=bool(commands), before=before, after=after, commands=commands, diff=diff)
        for cmd in commands:
            answer = command(sock, cmd).strip()
            if answer:  # HAProxy answers nothing on success
                if p["state_file"]:
                    save_server_state(sock, p["state_file"])
                module.fail_json(msg="%s: %s" % (cmd, answer), before=before)
        if p["state_file"]:
            save_server_state(sock, p["state_file"])
        if p["wait"]:
            if p["state"] in ("drain", "maint"):
                done = wait_for(lambda: _find(sock, backend, server)["sessions"] == 0, p["wait_timeout"])
                if not done:
                    module.fail_json(msg="%s/%s still has sessions after %.0f s" % (backend, server, p["wait_timeout"]),
                                     before=before, after=_find(sock, backend, server))
            elif p["state"] == "ready":
                done = wait_for(lambda: _find(sock, backend, server)["up"], p["wait_timeout"])
                if not done:
                    module.fail_json(msg="%s/%s is not UP after %.0f s (health check: %s)"
                                     % (backend, server, p["wait_timeout"], _find(sock, backend, server)["status"]),
                                     before=before, after=_find(sock, backend, server))
        module.exit_json(changed=True, before=before, after=_find(sock, backend, server), commands=commands, diff=diff)
    except RuntimeError_ as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
