"""``citydc demo``'s operations cycle on the lab: SNMP, NetFlow, backups, security log.

Lab code, not product code: it drives the real ``citydc`` commands against the lab's services.
"""
