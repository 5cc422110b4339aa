#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the citydc repository)

from __future__ import annotations

DOCUMENTATION = r"""
module: keepalived_settings
short_description: The comparable settings of one keepalived (its configuration file)
description:
  - Reads keepalived.conf and flattens it to C(keepalived.block.keyword) settings, leaving out what is per node or
    per site by nature (router_id, virtual_router_id, priority, source addresses; peers and virtual addresses are
    compared by count and prefix length). The VRRP password is reported only as set, never its value. A missing
    file is C(keepalived.config: missing). Changes nothing; used by the lb_drift role to compare sites.
options:
  config_path: {description: The keepalived configuration file., type: path, required: true}
  site: {description: This node's site id (replaced by C(<site>) in block names such as C(vrrp_instance lb_siwei))., type: str}
author: [citydc operations]
"""

EXAMPLES = r"""
- name: Read the keepalived settings of this node
  citydc.ops.keepalived_settings:
    config_path: /etc/keepalived/keepalived.conf
    site: siwei
  register: keepalived_drift_settings
"""

RETURN = r"""
settings: {description: "{keepalived.block.keyword: value} of the comparable settings.", returned: always, type: dict}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.citydc.ops.plugins.module_utils.keepalived_config import parse_keepalived


def main():
    module = AnsibleModule(argument_spec=dict(config_path=dict(type="path", required=True),
                                              site=dict(type="str", default="")),
                           supports_check_mode=True)
    try:
        with open(module.params["config_path"], encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        module.exit_json(changed=False, settings={"keepalived.config": "missing"})
    except (OSError, UnicodeDecodeError) as exc:
        module.fail_json(msg="cannot read %s: %s" % (module.params["config_path"], exc))
    module.exit_json(changed=False, settings=parse_keepalived(text, module.params["site"]))


if __name__ == "__main__":
    main()
