"""The typed models of ``citydc.yaml``: the one schema of the project.

Every model forbids unknown keys, so a typo is an error with its path instead of a silently
ignored setting. Field descriptions are the documentation: the JSON Schema and the commented
sample config are generated from them (``citydc config schema`` / ``citydc config sample``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from citydc.secrets import SecretRef

SiteId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", description="site id, e.g. siwei or fengshan")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", min_length=1, max_length=64)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Site(Model):
    id: SiteId = Field(description="short lowercase id used in labels.site and metric labels")
    name: str = Field(description="display name, e.g. '四維 Siwei'")
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list, description="management prefixes of the site")


class SnmpV2c(Model):
    version: Literal["2c"] = "2c"
    community: SecretRef = Field(description="community string, by reference")


class SnmpV3(Model):
    version: Literal["3"] = "3"
    username: str = Field(min_length=1, description="USM user name")
    security_level: Literal["noAuthNoPriv", "authNoPriv", "authPriv"] = "authPriv"
    auth_protocol: Literal["SHA", "SHA224", "SHA256", "SHA384", "SHA512", "MD5"] = "SHA256"
    auth_key: SecretRef | None = Field(default=None, description="authentication pass phrase")
    priv_protocol: Literal["AES", "AES192", "AES256", "DES"] = "AES"
    priv_key: SecretRef | None = Field(default=None, description="privacy pass phrase")
    context_name: str = ""

    @model_validator(mode="after")
    def keys_match_level(self) -> SnmpV3:
        if self.security_level in ("authNoPriv", "authPriv") and self.auth_key is None:
            raise ValueError(f"auth_key is required for security_level {self.security_level}")
        if self.security_level == "authPriv" and self.priv_key is None:
            raise ValueError("priv_key is required for security_level authPriv")
        return self


SnmpAuth = Annotated[SnmpV2c | SnmpV3, Field(discriminator="version")]


IfMibColumn = Literal[
    "ifDescr", "ifType", "ifMtu", "ifSpeed", "ifPhysAddress", "ifAdminStatus", "ifOperStatus", "ifLastChange",
    "ifInOctets", "ifInUcastPkts", "ifInDiscards", "ifInErrors", "ifOutOctets", "ifOutUcastPkts",
    "ifOutDiscards", "ifOutErrors", "ifName", "ifInMulticastPkts", "ifInBroadcastPkts", "ifOutMulticastPkts",
    "ifOutBroadcastPkts", "ifHCInOctets", "ifHCInUcastPkts", "ifHCInMulticastPkts", "ifHCInBroadcastPkts",
    "ifHCOutOctets", "ifHCOutUcastPkts", "ifHCOutMulticastPkts", "ifHCOutBroadcastPkts", "ifHighSpeed",
    "ifAlias", "ifCounterDiscontinuityTime",
]


class SnmpInterfaceFilter(Model):
    """Which interfaces a module exports; decided on the cached static columns, before the counters are walked."""

    alias_required: bool = Field(default=False, description="only interfaces with a non-empty ifAlias")
    name_pattern: str | None = Field(default=None, description="regular expression ifName must match, e.g. ^Te")
    if_types: list[int] = Field(default_factory=list, description="only these ifType values (empty = all)")


class SnmpModule(Model):
    columns: list[IfMibColumn] = Field(min_length=1, description="IF-MIB ifTable/ifXTable columns to walk")
    max_repetitions: int = Field(default=25, ge=1, le=200, description="GETBULK max-repetitions")
    filter: SnmpInterfaceFilter = Field(default_factory=SnmpInterfaceFilter)


class SnmpCollector(Model):
    listen: str = Field(default="127.0.0.1:9116", description="host:port the exporter serves HTTP on")
    timeout_seconds: float = Field(default=1.0, gt=0, le=60, description="wait per SNMP request")
    retries: int = Field(default=1, ge=0, le=5, description="resends per SNMP request")
    scrape_timeout_seconds: float = Field(
        default=9.5, gt=0, le=120,
        description="budget of one poll; Prometheus' X-Prometheus-Scrape-Timeout-Seconds lowers it")
    static_refresh_seconds: float = Field(
        default=300, ge=0, description="re-walk ifName/ifAlias/ifDescr/speeds after this long (0 = every scrape)")
    max_concurrent_polls: int = Field(default=256, ge=1, description="polls in flight at once")
    v2c_path: Literal["fast", "pysnmp"] = Field(
        default="fast",
        description="SNMPv2c polls: fast (citydc's own BER codec) or pysnmp (reference); v3 uses pysnmp")
    modules: dict[Name, SnmpModule] = Field(
        default_factory=dict, description="modules added to (or replacing) the built-in if_mib")
    state_dir: Path | None = Field(
        default=Path("var/snmp-state"),
        description="counter wrap carries saved here survive an exporter restart (relative to the config; null = off)")
    state_save_seconds: float = Field(default=60, gt=0, le=3600, description="save the counter state this often")
    state_max_age_seconds: float = Field(
        default=3600, gt=0, description="saved counter state older than this at a target's first poll is dropped")


class Device(Model):
    name: Name = Field(description="device name, used as the device label")
    address: str = Field(description="host or host:port of the SNMP agent / management interface")
    site: SiteId = Field(description="id of a site in sites")
    role: Literal["core", "distribution", "access", "firewall", "lb", "hypervisor", "router", "server"]
    snmp_auth: str | None = Field(default=None, description="name of a profile in snmp_auth")
    snmp_module: str = Field(default="if_mib", description="SNMP module polled for this device")
    netmiko_device_type: str | None = Field(
        default=None, description="netmiko device_type for config backup, e.g. cisco_ios")

    @field_validator("address")
    @classmethod
    def address_has_host(cls, value: str) -> str:
        host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
        if not host:
            raise ValueError("expected host or host:port")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"port must be 1-65535, got {port!r}")
        return value


class NetflowListener(Model):
    address: str = Field(default="127.0.0.1", description="address to bind")
    port: int = Field(ge=1, le=65535, description="UDP port")
    site: SiteId
    receive_buffer_bytes: int = Field(default=8 * 1024 * 1024, ge=65536,
                                      description="SO_RCVBUF requested for the socket")


class Agency(Model):
    name: Name = Field(description="agency label, e.g. civil-affairs")
    prefixes: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(min_length=1)


class NetflowExporter(Model):
    address: str = Field(description="exporter source address")
    sampling_rate: int = Field(default=1, ge=1, description="1-in-N, used when the exporter does not announce it")
    snmp_device: Name | None = Field(
        default=None, description="device (devices[].name) polled for this exporter's interface names and octet "
                                  "counters (flow-vs-SNMP reconciliation); default: the device at the same address")


class Netflow(Model):
    listeners: list[NetflowListener] = Field(default_factory=list)
    agencies: list[Agency] = Field(default_factory=list)
    exporters: list[NetflowExporter] = Field(default_factory=list)


class Repository(Model):
    url: str = Field(description="restic repository: a path, sftp:host:/path, rest:https://..., s3:...")
    password: SecretRef = Field(description="repository password, by reference")
    site: SiteId
    ssh_config: Path | None = Field(
        default=None, description="for sftp: repositories, the ssh client config restic's ssh uses (ssh -F FILE)")


class Retention(Model):
    keep_daily: int = Field(default=7, ge=0)
    keep_weekly: int = Field(default=4, ge=0)
    keep_monthly: int = Field(default=12, ge=0)


class BackupJob(Model):
    name: Name
    site: SiteId
    sources: list[Path] = Field(min_length=1)
    excludes: list[str] = Field(default_factory=list)
    pre_commands: list[list[str]] = Field(default_factory=list,
                                          description="argv lists run before the backup, e.g. slapcat")
    local_repo: Repository
    offsite_repo: Repository | None = None
    retention: Retention = Field(default_factory=Retention)
    tags: list[str] = Field(default_factory=list)
    offsite_limit_kib: int | None = Field(default=None, ge=1, description="upload limit for the off-site copy")
    check_read_data_days: int = Field(default=30, ge=1, description="every pack is read within this many days")
    drill_sample_files: int = Field(default=0, ge=0, le=10000,
                                    description="restore drill: files restored at random (0 = the whole snapshot)")
    drill_smoke_command: list[str] = Field(
        default_factory=list, description="argv run after a drill's restore, e.g. load a dump and query it; "
                                          "{restore_dir} is replaced by the scratch directory")


class Backup(Model):
    jobs: list[BackupJob] = Field(default_factory=list)
    state_dir: Path = Field(default=Path("var/backup"),
                            description="run state, check cycle progress and drill evidence (relative to the config)")
    textfile_dir: Path | None = Field(
        default=None, description="node_exporter textfile collector directory for the backup metrics")
    lock_stale_seconds: int = Field(
        default=3600, ge=0, description="a lock is removed only when older than this and its process is gone")


Severity = Literal["info", "low", "medium", "high", "critical"]


class LdapRuleSettings(Model):
    """Thresholds of the directory audit's rules (docs/ldap-audit.md lists every rule)."""

    stale_days: int = Field(default=90, ge=1, description="an enabled account unused this long is stale "
                                                          "(pwdLastSuccess, or createTimestamp if it never bound)")
    password_max_age_days: int = Field(
        default=365, ge=1, description="password age limit when the account's policy sets no pwdMaxAge")
    min_password_length: int = Field(default=12, ge=1, description="a policy enforcing fewer characters is weak")
    min_password_history: int = Field(default=5, ge=0, description="a policy remembering fewer passwords is weak")
    max_policy_age_days: int = Field(
        default=365, ge=1, description="a policy with no pwdMaxAge or a longer one is weak")
    cert_expiry_days: int = Field(default=30, ge=1,
                                  description="the server certificate expiring within this many days is a finding")
    weak_schemes: list[str] = Field(
        default_factory=lambda: ["MD5", "SMD5", "SHA", "CRYPT"],
        description="userPassword schemes reported as weak hashes ({CRYPT} only with DES or MD5-crypt); "
                    "CLEARTEXT and values without a scheme are always cleartext")
    disabled: list[str] = Field(default_factory=list, description="rule ids not to run")


class AuthDetection(Model):
    """Thresholds of ``citydc audit auth`` (binds read from slapd's stats log)."""

    window_seconds: int = Field(default=600, ge=1, description="sliding window of the failure counts")
    bruteforce_failures: int = Field(default=5, ge=2, description="failures of one account within the window")
    spraying_accounts: int = Field(default=10, ge=2,
                                   description="distinct accounts failing from one source within the window")
    success_after_failures: int = Field(default=3, ge=1,
                                        description="a success after at least this many failures in the window")
    timezone: str = Field(default="Asia/Taipei", description="zone of the working hours")
    working_hours: str = Field(default="08:00-18:00", pattern=r"^\d\d:\d\d-\d\d:\d\d$",
                               description="privileged logins outside these hours are alerts")
    working_days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"], description="days with working hours")


class LdapSource(Model):
    name: Name
    url: str = Field(pattern=r"^ldaps?://", description="ldap://host:port (StartTLS) or ldaps://host:port")
    bind_dn: str = Field(description="the audit's read-only service account")
    bind_password: SecretRef
    base_dn: str
    start_tls: bool = Field(default=True, description="ldap:// URLs: StartTLS before the bind")
    allow_plain_bind: bool = Field(
        default=False,
        description="allow a simple bind without TLS (ldap:// with start_tls false); never in production")
    ca_file: Path | None = Field(default=None, description="CA bundle verifying the server certificate")
    site: SiteId
    account_filter: str = Field(default="(|(objectClass=posixAccount)(objectClass=inetOrgPerson))",
                                description="LDAP filter of the accounts audited")
    policy_filter: str = Field(default="(objectClass=pwdPolicy)", description="LDAP filter of ppolicy entries")
    default_policy_dn: str | None = Field(
        default=None, description="the server's olcPPolicyDefault; null = accounts without pwdPolicySubentry "
                                  "have no policy")
    privileged_groups: list[str] = Field(default_factory=list,
                                         description="DNs of the privileged groups (groupOfNames member)")
    baseline_file: Path | None = Field(
        default=None, description="approved privileged membership: YAML {groups: {group DN: [member DN]}}")
    accepted_risk_file: Path | None = Field(
        default=None, description="accepted risks: YAML list of {rule, subject, reason, expires, approved_by}")
    page_size: int = Field(default=1000, ge=10, le=100000, description="paged-search page size")
    bulk_reader: Literal["ldapsearch", "ldap3"] = Field(
        default="ldapsearch", description="client of the account read: ldapsearch (OpenLDAP's, fast) or "
                                          "ldap3 (pure Python, ~10x slower on a large directory)")
    timeout_seconds: float = Field(default=30, gt=0, le=3600, description="connect and per-request timeout")
    rules: LdapRuleSettings = Field(default_factory=LdapRuleSettings)
    stats_log: Path | None = Field(default=None, description="slapd's stats log, read by `citydc audit auth`")
    auth: AuthDetection = Field(default_factory=AuthDetection)
    state_dir: Path = Field(default=Path("var/ldap-audit"),
                            description="runs, resume offsets and reports (relative to the config)")
    textfile_dir: Path | None = Field(
        default=None, description="node_exporter textfile collector directory for the audit metrics")

    @model_validator(mode="after")
    def transport_is_protected(self) -> LdapSource:
        if self.url.startswith("ldaps://") and self.start_tls:
            raise ValueError("start_tls does not apply to ldaps:// URLs (TLS from the first byte); set it false")
        if self.url.startswith("ldap://") and not self.start_tls and not self.allow_plain_bind:
            raise ValueError("a simple bind over ldap:// without StartTLS sends the password in clear; "
                             "set start_tls true, use ldaps://, or set allow_plain_bind true (lab only)")
        return self


class SsoSource(Model):
    name: Name
    log_path: Path = Field(description="authentication log of the SSO service")
    format: Literal["keycloak-json", "syslog"] = "keycloak-json"
    site: SiteId


class SqliteSink(Model):
    kind: Literal["sqlite"] = "sqlite"
    path: Path = Field(default=Path("var/seclog.db"), description="database file (relative to the config file)")


class ElasticsearchSink(Model):
    kind: Literal["elasticsearch"] = "elasticsearch"
    url: str = Field(pattern=r"^https?://", description="cluster URL")
    api_key: SecretRef | None = None
    username: str | None = None
    password: SecretRef | None = None
    ca_file: Path | None = Field(default=None, description="CA bundle for TLS verification")
    index_prefix: str = Field(default="citydc-seclog", pattern=r"^[a-z0-9][a-z0-9_-]*$")

    @model_validator(mode="after")
    def credentials_complete(self) -> ElasticsearchSink:
        if self.api_key is not None and (self.username or self.password):
            raise ValueError("give either api_key or username/password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class SecurityLog(Model):
    spool_dir: Path = Field(default=Path("var/spool"), description="durable spool (relative to the config file)")
    sink: Annotated[SqliteSink | ElasticsearchSink, Field(discriminator="kind")] = Field(
        default_factory=SqliteSink)


class Alerting(Model):
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    webhook_receivers: list[str] = Field(default_factory=list)


class Tools(Model):
    """Paths of external programs; every one can be overridden (tests, non-standard installs)."""

    restic: str = "restic"
    snmpget: str = "snmpget"
    snmpbulkwalk: str = "snmpbulkwalk"
    snmpd: str = "/usr/sbin/snmpd"
    haproxy: str = "haproxy"
    promtool: str = "promtool"
    ansible_playbook: str = "ansible-playbook"


class Config(Model):
    sites: list[Site] = Field(min_length=1)
    snmp_auth: dict[Name, SnmpAuth] = Field(default_factory=dict)
    devices: list[Device] = Field(default_factory=list)
    snmp: SnmpCollector = Field(default_factory=SnmpCollector)
    netflow: Netflow = Field(default_factory=Netflow)
    backup: Backup = Field(default_factory=Backup)
    ldap: list[LdapSource] = Field(default_factory=list)
    sso: list[SsoSource] = Field(default_factory=list)
    security_log: SecurityLog = Field(default_factory=SecurityLog)
    alerting: Alerting = Field(default_factory=Alerting)
    tools: Tools = Field(default_factory=Tools)
