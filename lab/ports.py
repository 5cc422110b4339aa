"""Loopback ports of the lab services (one place, so tests, demo and sample config agree)."""

HOST = "127.0.0.1"
SNMPD = 11161
ELASTICSEARCH = 19200
ELASTICSEARCH_TRANSPORT = 19300
ELASTICSEARCH_TLS = 19243
SFTP = 12222

# SNMP collector lab (issue 3): snmpsim full responder (recordings on 127.0.1.k, v3 switches on
# 127.0.2.k, all on port SNMPSIM), lite responders with one port per switch, Prometheus, exporters.
SNMPSIM = 11611
SNMPSIM_SWITCHES = 11620  # k-th generated switch on SNMPSIM_SWITCHES + k
SNMPSIM_SLOW = 11640
SNMPSIM_REBOOT = 11641
SNMPSIM_FLEET = 13000  # 190 small switches on 13000-13189; 13190-13199 stay closed (dead devices)
SNMP_EXPORTER = 19116  # citydc collect snmp in the lab
SNMP_EXPORTER_PEER = 19117  # Debian prometheus-snmp-exporter (benchmark)
PROMETHEUS = 19090
PROMETHEUS_REPORT = 19091  # a second Prometheus holding a backfilled month (issue 13: report, dashboards)

# NetFlow collector lab (issue 4): softflowd in netns citydc-nf exports to 10.99.78.1 on these ports;
# nfcapd / nfacctd used for cross-checks and the benchmark listen on loopback from NFCAPD on.
NETFLOW_V5 = 12065
NETFLOW_V9 = 12066
NETFLOW_IPFIX = 12067
NETFLOW_RECONCILE = 12068  # softflowd with the host's ifIndex of cdnf0 (flow-vs-SNMP test)
NETFLOW_RECONCILE_METRICS = 12069  # /metrics of citydc collect netflow in that test
NFCAPD = 12070
NETFLOW_DEMO_METRICS = 12059  # /metrics of citydc collect netflow in `citydc demo` (listeners 12055/12056)

# Hardening lab (issue 17): the listed-exporters test and the TLS/basic-auth endpoints.
NETFLOW_HARDEN = 12090           # citydc collect netflow listener (datagrams from 127.0.0.x)
NETFLOW_HARDEN_METRICS = 12091   # its /metrics (plain, then TLS + basic auth)
SNMP_EXPORTER_TLS = 19118        # citydc collect snmp with --web.config.file

# LDAP audit lab (issue 12): the private slapd (StartTLS on SLAPD, LDAPS on SLAPD_LDAPS) and the
# 100k-user directory of bench/ldap_audit.py.
# Private instances for tests that stop their service (tests/lab/test_lab.py, test_seclog_es.py), so
# the session's shared snmpd and Elasticsearch never go down under other tests.
SNMPD_PRIVATE = 11162
ELASTICSEARCH_PRIVATE = 19201
ELASTICSEARCH_PRIVATE_TRANSPORT = 19301
SLAPD = 13389
SLAPD_LDAPS = 13636
SLAPD_BENCH = 13390
SLAPD_BENCH_LDAPS = 13637

# Device config backup lab (issue 14): fakenos network-OS devices on NETDEVICES+k (k = 1..5), the
# benchmark's 50 on NETDEVICES_BENCH+k (k = 0..49), NETDEVICES_DEAD stays closed (an unreachable
# device); OpenSSH `linux` devices on LINUX_DEVICES+k.
NETDEVICES = 12300
NETDEVICES_BENCH = 12320
NETDEVICES_DEAD = 12399
LINUX_DEVICES = 12400
# Alerts lab (issue 13 item 2, issue 17 item 3): Alertmanager (Debian) and citydc's webhook receiver.
ALERTMANAGER = 19093
ALERT_WEBHOOK = 19095  # citydc alerts webhook (basic auth: lab/alertmanager.py)
# NOC page lab (issue 13): citydc noc serve, node_exporter's textfile collector (backup, audit and
# security-log metrics of both sites for the page), and tests/lab/test_noc.py's own Alertmanager: it
# holds only the alerts that test posts, and that test stops it (the lab's ALERTMANAGER receives what
# the lab Prometheus fires; tests/lab/test_noc_e2e.py uses that one).
NOC = 19080
NODE_EXPORTER = 19101
ALERTMANAGER_NOC_TEST = 19094
# Prometheus and Alertmanager behind the lab web config (TLS, client certificate, basic auth:
# lab/web_secured.py), reached by citydc's clients through alerting.*_http / report.prometheus_http.
PROMETHEUS_TLS = 19092
ALERTMANAGER_TLS = 19096
# Playbooks lab (issue 11): one HAProxy per site (admin and master sockets are files in its service
# directory), two small HTTP backends per site from APP_BACKENDS on, libvirtd on a private unix socket.
HAPROXY_SIWEI = 18080
HAPROXY_FENGSHAN = 18085
HAPROXY_SIWEI_STATS = 18081  # HAProxy's Prometheus exporter (frontend fe_stats, GET /metrics) of each site
HAPROXY_FENGSHAN_STATS = 18086
# keepalived (lab/keepalived.py) uses no loopback port: per site, namespaces citydc-ka-<site>-1 and -2
# (eth0 .1 and .2) joined by a bridge in citydc-ka-<site>-br (br0 .254), VRRP unicast between .1 and .2,
# virtual IP .100; Siwei on 10.99.82.0/24, Fengshan on 10.99.83.0/24 (10.99.77/78/80 belong to other services).
KEEPALIVED_NETS = {"siwei": "10.99.82", "fengshan": "10.99.83"}
APP_BACKENDS = 18090  # siwei app 1-2 on 18090-18091, fengshan app 1-2 on 18092-18093 (18090-18099 reserved)
# SSO audit lab (issue 15): Keycloak's HTTP listener and its management interface (health).
KEYCLOAK = 18180
KEYCLOAK_MANAGEMENT = 18181

# Lab-only credentials. They are not secrets of any real system; the demo puts them in the
# environment so that the example config can reference them as env:NAME like a real one.
LAB_ENV = {
    "CITYDC_SNMP_COMMUNITY": "citydc-lab-ro",
    "CITYDC_SNMP_V3_AUTH": "citydc-lab-auth-key",
    "CITYDC_SNMP_V3_PRIV": "citydc-lab-priv-key",
    "CITYDC_ES_PASSWORD": "citydc-lab-es-pass",
    "CITYDC_RESTIC_PASSWORD": "citydc-lab-restic-pass",
    "CITYDC_LDAP_PASSWORD": "citydc-lab-ldap-pass",
    "CITYDC_LDAP_ADMIN_PASSWORD": "citydc-lab-ldap-admin-pass",
    "CITYDC_DEVICE_PASSWORD": "citydc-lab-device-pass",
    "CITYDC_DEVICE_ENABLE": "citydc-lab-enable-secret",
    "CITYDC_WEBHOOK_PASSWORD": "citydc-lab-webhook-pass",
    "CITYDC_VRRP_PASSWORD": "lab-vrrp",  # keepalived (VRRP allows at most 8 characters)
    "CITYDC_KEYCLOAK_SECRET": "citydc-lab-keycloak-audit-secret",
}
