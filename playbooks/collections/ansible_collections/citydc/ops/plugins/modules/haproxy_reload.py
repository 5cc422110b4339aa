#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_reload
short_description: Hitless reload of a master-worker HAProxy that keeps the servers' runtime states
description:
  - Writes C(show servers state) to the C(server-state-file) (atomically), then sends C(reload) to the master
    CLI and waits (bounded) until the master has handled it, and fails unless a new worker took over.
  - A reload HAProxy refused fails, with HAProxy's reason from O(log_file) when given (the old worker keeps
    serving the old configuration); refused means the master's failed-reload count in C(show proc) grew, or no
    new worker answers (e.g. a C(bind) on a port in use, which C(haproxy -c) does not see).
  - Validate the configuration before (the lb role's template task runs C(haproxy -c)).
options:
  admin_socket: {description: Admin socket (runtime API)., type: path, required: true}
  master_socket: {description: Master CLI socket (C(-S))., type: path, required: true}
  state_file: {description: The C(server-state-file) of the global section., type: path, required: true}
  log_file:
    description: The master's log (its stderr), read for the reason of a failed reload; empty for none.
    type: path
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
worker: {description: The PID of the new worker., returned: changed, type: int}
"""

import os
import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.citydc.ops.plugins.module_utils.haproxy_runtime import (
    RuntimeError_,
    command,
    parse_proc,
    save_server_state,
)

REASON_CHARS = 800  # at most this much of HAProxy's log goes into the failure message
NO_NEW_WORKER = 5.0  # seconds the master may answer, reload counted, before its new worker is listed


def _log_size(path):
    try:
        return os.path.getsize(path) if path else None
    except OSError:
        return None


def _reason(path, offset):
    """Return HAProxy's ALERT lines (else its last lines) logged since ``offset``, bounded; "" when none."""
    if not path or offset is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read(65536).decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    alerts = [line for line in lines if "[ALERT]" in line] or lines[-3:]
    reason = " / ".join(re.sub(r"^\[ALERT\]\s*\(\d+\)\s*:\s*", "", line) for line in alerts)
    return reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS] + " ..."


def _worker_pid(admin_socket):
    m = re.search(r"^Pid:\s*(\d+)", command(admin_socket, "show info"), re.M)
    return int(m.group(1)) if m else None


def main():
    module = AnsibleModule(argument_spec=dict(admin_socket=dict(type="path", required=True),
                                              master_socket=dict(type="path", required=True),
                                              state_file=dict(type="path", required=True),
                                              log_file=dict(type="path"),
                                              timeout=dict(type="float", default=30.0)),
                           supports_check_mode=True)
    p = module.params
    if module.check_mode:
        module.exit_json(changed=True)
    try:
        save_server_state(p["admin_socket"], p["state_file"])
        before = parse_proc(command(p["master_socket"], "show proc"))
        offset = _log_size(p["log_file"])
        command(p["master_socket"], "reload")
        deadline = time.monotonic() + p["timeout"]
        grown = None
        pid = None
        while True:
            try:
                now = parse_proc(command(p["master_socket"], "show proc"))
            except RuntimeError_:
                now = None  # the master CLI restarts with the reload
            if now and now["reloads"] > before["reloads"]:
                failed = now["failed"] is not None and before["failed"] is not None and now["failed"] > before["failed"]
                new = [w for w in now["workers"] if w not in before["workers"]]
                if failed:
                    time.sleep(0.2)  # let the master's log be written
                    reason = _reason(p["log_file"], offset)
                    module.fail_json(msg="HAProxy refused the reload (show proc: failed %d -> %d); the old worker "
                                         "keeps serving the previous configuration: %s"
                                         % (before["failed"], now["failed"], reason or "see HAProxy's log"),
                                     reloads=now["reloads"], workers=now["workers"])
                if not new:
                    grown = grown or time.monotonic()
                    if time.monotonic() - grown > NO_NEW_WORKER:
                        reason = _reason(p["log_file"], offset)
                        module.fail_json(msg="HAProxy handled the reload but started no new worker (workers still %s); "
                                             "the old worker keeps serving the previous configuration%s"
                                             % (now["workers"], ": " + reason if reason else ""))
                try:
                    pid = _worker_pid(p["admin_socket"]) if new else None
                except RuntimeError_:
                    pid = None
                if pid in new:
                    break
            if time.monotonic() > deadline:
                reason = _reason(p["log_file"], offset)
                module.fail_json(msg="HAProxy did not finish reloading within %.0f s (no new worker answers on %s)%s"
                                     % (p["timeout"], p["admin_socket"], ": " + reason if reason else ""))
            time.sleep(0.2)
    except RuntimeError_ as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=True, reloads=now["reloads"], worker=pid)


if __name__ == "__main__":
    main()
