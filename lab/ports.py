"""Loopback ports of the lab services (one place, so tests, demo and sample config agree)."""

HOST = "127.0.0.1"
SNMPD = 11161
ELASTICSEARCH = 19200
ELASTICSEARCH_TRANSPORT = 19300
ELASTICSEARCH_TLS = 19243
SFTP = 12222

# Lab-only credentials. They are not secrets of any real system; the demo puts them in the
# environment so that the example config can reference them as env:NAME like a real one.
LAB_ENV = {
    "CITYDC_SNMP_COMMUNITY": "citydc-lab-ro",
    "CITYDC_SNMP_V3_AUTH": "citydc-lab-auth-key",
    "CITYDC_SNMP_V3_PRIV": "citydc-lab-priv-key",
    "CITYDC_ES_PASSWORD": "citydc-lab-es-pass",
    "CITYDC_RESTIC_PASSWORD": "citydc-lab-restic-pass",
    "CITYDC_LDAP_PASSWORD": "citydc-lab-ldap-pass",
}
