#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)

from __future__ import annotations

DOCUMENTATION = r"""
module: alertmanager_silence
short_description: Open or expire an Alertmanager silence scoped to exact label values
description:
  - Talks to Alertmanager's API v2 (C(/api/v2/silences)). The silence matches alerts whose labels equal
    O(matchers) exactly (no regular expressions), so it covers one server and nothing else.
  - C(present) reuses an active or pending silence with the same matchers made by O(created_by) (no change)
    or creates one that ends after O(duration) seconds, so a run that dies leaves a silence that ends by itself.
  - C(absent) expires every active or pending silence with those matchers made by O(created_by).
  - Every request is bounded by O(timeout). Supports check mode (nothing is created or expired).
options:
  url: {description: Alertmanager's base URL (e.g. http://alertmanager:9093)., type: str, required: true}
  matchers: {description: "Label name -> exact value (e.g. site, proxy, server).", type: dict, required: true}
  state: {description: Open or expire the silence., type: str, choices: [present, absent], default: present}
  duration: {description: Seconds the silence lasts at most (1 s to 7 days)., type: int, default: 3600}
  created_by: {description: The silence's creator; only silences of this creator are reused or expired., type: str, default: citydc-play}
  comment: {description: The silence's comment., type: str, default: citydc maintenance}
  timeout: {description: Seconds each API request may take., type: float, default: 10}
  ca_path: {description: "CA bundle verifying Alertmanager's certificate (an https URL; default: the system's).", type: path}
  client_cert: {description: "Client certificate (PEM) for an Alertmanager that requires one, with O(client_key).", type: path}
  client_key: {description: The client certificate's key (PEM without a passphrase)., type: path}
  url_username: {description: Basic auth user (Alertmanager's web config C(basic_auth_users))., type: str}
  url_password: {description: Basic auth password; never logged., type: str}
author: [citydc operations]
"""

EXAMPLES = r"""
- name: Silence the alerts of app-siwei-1 while it is drained
  citydc.ops.alertmanager_silence:
    url: http://127.0.0.1:9093
    matchers: {site: siwei, proxy: be_app, server: app-siwei-1}
    duration: 1800
    comment: lb-rolling drains app-siwei-1
  register: silence

- name: Expire it
  citydc.ops.alertmanager_silence:
    url: http://127.0.0.1:9093
    matchers: {site: siwei, proxy: be_app, server: app-siwei-1}
    state: absent

- name: The same through an Alertmanager with TLS, a client certificate and basic auth
  citydc.ops.alertmanager_silence:
    url: https://alertmanager.siwei.example:9093
    ca_path: /etc/citydc/ca.crt
    client_cert: /etc/citydc/citydc.crt
    client_key: /etc/citydc/citydc.key
    url_username: citydc
    url_password: "{{ alertmanager_password }}"
    matchers: {site: siwei, proxy: be_app, server: app-siwei-1}
"""

RETURN = r"""
silence_id: {description: "The silence's id (present; null in check mode when it would be created).", returned: always, type: str}
expired: {description: Ids of the silences expired (absent)., returned: always, type: list, elements: str}
matchers: {description: The matchers as sent to the API., returned: always, type: list, elements: dict}
"""

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.citydc.ops.plugins.module_utils.alertmanager import (
    AlertmanagerError,
    access,
    api,
    live_silences,
    matchers_from,
    silence_body,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            matchers=dict(type="dict", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            duration=dict(type="int", default=3600),
            created_by=dict(type="str", default="citydc-play"),
            comment=dict(type="str", default="citydc maintenance"),
            timeout=dict(type="float", default=10.0),
            ca_path=dict(type="path"),
            client_cert=dict(type="path"),
            client_key=dict(type="path", no_log=False),
            url_username=dict(type="str"),
            url_password=dict(type="str", no_log=True),
        ),
        required_together=[("client_cert", "client_key"), ("url_username", "url_password")],
        supports_check_mode=True,
    )
    p = module.params
    try:
        matchers = matchers_from(p["matchers"])
        body = silence_body(matchers, datetime.datetime.now(datetime.timezone.utc), p["duration"],
                            p["created_by"], p["comment"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        how = access(p["ca_path"], p["client_cert"], p["client_key"], p["url_username"], p["url_password"])
    except AlertmanagerError as exc:
        module.fail_json(msg=str(exc), matchers=matchers)
    try:
        live = live_silences(p["url"], matchers, p["created_by"], timeout=p["timeout"], how=how)
        if p["state"] == "present":
            if live:
                module.exit_json(changed=False, silence_id=live[0]["id"], expired=[], matchers=matchers)
            if module.check_mode:
                module.exit_json(changed=True, silence_id=None, expired=[], matchers=matchers)
            answer = api(p["url"], "POST", "/api/v2/silences", body, timeout=p["timeout"], how=how) or {}
            if not answer.get("silenceID"):
                module.fail_json(msg="Alertmanager answered no silenceID: %r" % (answer,), matchers=matchers)
            module.exit_json(changed=True, silence_id=answer["silenceID"], expired=[], matchers=matchers)
        ids = [s["id"] for s in live]
        if not module.check_mode:
            for sid in ids:
                api(p["url"], "DELETE", "/api/v2/silence/%s" % sid, timeout=p["timeout"], how=how)
        module.exit_json(changed=bool(ids), silence_id=None, expired=ids, matchers=matchers)
    except AlertmanagerError as exc:
        module.fail_json(msg=str(exc), matchers=matchers)


if __name__ == "__main__":
    main()
