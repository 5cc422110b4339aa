"""The typed models of ``citydc.yaml``: the one schema of the project.

Every model forbids unknown keys, so a typo is an error with its path instead of a silently
ignored setting. Field descriptions are the documentation: the JSON Schema and the commented
sample config are generated from them (``citydc config schema`` / ``citydc config sample``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    IPvAnyAddress,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from citydc.config.paths import ConfigPath, ExistingFile, Program, base_dir_of, resolve_text
from citydc.config.units import parse_bit_rate
from citydc.hostport import is_loopback, parse_host_port
from citydc.secrets import SecretRef

SiteId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", description="site id, e.g. siwei or fengshan")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", min_length=1, max_length=64)]


# The SNMP modules built into the exporter (citydc.collectors.snmp.modules.BUILTIN_MODULES), named
# here as data so the config is checked at load without importing the collectors; a unit test
# keeps the two lists equal.
BUILTIN_SNMP_MODULES = ("if_mib", "if_mib_bytes")
SNMP_EXPORTER_PORT = 9116
# The platforms config backup has rules for (citydc.backup.configs_rules.PLATFORMS), named here as
# data so a device type is checked at load; a unit test keeps the two lists equal.
CONFIG_PLATFORMS = ("arista_eos", "cisco_ios", "cisco_nxos", "cisco_xe", "juniper_junos", "linux")


def _ip_network(value: object) -> object:
    """Given a network as written, return it parsed. Raise ValueError naming the value and what was expected.

    One check for both families, so a bad value gives one message instead of pydantic's two union
    branches; a number is refused (pydantic's lax mode reads 5 as 0.0.0.5/32)."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    expected = "expected an IPv4 or IPv6 network such as 10.10.0.0/16"
    if not isinstance(value, str):
        raise ValueError(f"{expected}, got {value!r}")
    family = ipaddress.IPv6Network if ":" in value else ipaddress.IPv4Network
    try:
        return family(value)
    except ipaddress.NetmaskValueError:
        raise ValueError(f"{expected}, got {value!r} (prefix length or netmask out of range)") from None
    except ipaddress.AddressValueError:
        raise ValueError(f"{expected}, got {value!r}") from None
    except ValueError:  # the host bits are set
        raise ValueError(f"{expected}, got {value!r} (host bits set; the network is "
                         f"{family(value, strict=False)})") from None


IPNetwork = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_ip_network)]


def _known_zone(value: str) -> str:
    """Given a time zone name, return it if the zone database has it. Raise ValueError otherwise."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Asia" is a folder of the database: IsADirectoryError
        raise ValueError(f"unknown time zone {value!r}; expected an IANA name such as Asia/Taipei or UTC") from None
    return value


# Every configured zone: checked at load, so code that builds a ZoneInfo from it cannot fail.
TimeZoneName = Annotated[str, AfterValidator(_known_zone)]


def _hours_range(value: str) -> str:
    """Given working hours as HH:MM-HH:MM, return them if both are times of day. Raise ValueError otherwise."""
    start, sep, end = value.partition("-")
    if sep and all(re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", t) for t in (start, end)):
        return value
    raise ValueError(f"expected HH:MM-HH:MM with times from 00:00 to 23:59 such as 08:00-18:00, got {value!r}")


def _command(argv: list[str]) -> list[str]:
    """Given an argv, return it if it names a program. Raise ValueError otherwise (there would be nothing to run)."""
    if not argv:
        raise ValueError("expected a command (a non-empty argv list such as [slapcat, -n, '1'])")
    if not argv[0]:
        raise ValueError("expected a command: its first element, the program, is empty")
    return argv


def _command_or_none(argv: list[str]) -> list[str]:
    return _command(argv) if argv else argv


Command = Annotated[list[str], AfterValidator(_command)]
CommandOrNone = Annotated[list[str], AfterValidator(_command_or_none)]  # [] is no command


class Model(BaseModel):
    # revalidate_instances: sections filled in by default factories are validated again inside the
    # loader, so their default paths follow the path rule (citydc/config/paths.py) too.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, revalidate_instances="always")


class Site(Model):
    id: SiteId = Field(description="short lowercase id used in labels.site and metric labels")
    name: str = Field(description="display name, e.g. '四維 Siwei'")
    networks: list[IPNetwork] = Field(
        default=[], description="management prefixes of the site")


class SnmpV2c(Model):
    version: Literal["2c"] = Field(default="2c", description="SNMP version of this profile")
    community: SecretRef = Field(description="community string, by reference")


class SnmpV3(Model):
    version: Literal["3"] = Field(default="3", description="SNMP version of this profile")
    username: str = Field(min_length=1, description="USM user name")
    security_level: Literal["noAuthNoPriv", "authNoPriv", "authPriv"] = Field(
        default="authPriv", description="noAuthNoPriv, authNoPriv or authPriv (authentication and privacy)")
    auth_protocol: Literal["SHA", "SHA224", "SHA256", "SHA384", "SHA512", "MD5"] = Field(
        default="SHA256", description="authentication protocol")
    auth_key: SecretRef | None = Field(default=None, description="authentication pass phrase, by reference")
    priv_protocol: Literal["AES", "AES192", "AES256", "DES"] = Field(default="AES", description="privacy protocol")
    priv_key: SecretRef | None = Field(default=None, description="privacy pass phrase, by reference")
    context_name: str = Field(default="", description="SNMPv3 context name (empty: the default context)")

    @field_validator("version", mode="before")
    @classmethod
    def number_three(cls, value: object) -> object:
        # YAML reads an unquoted 3 as a number; it means SNMPv3 all the same (see _snmp_version).
        return "3" if type(value) is int and value == 3 else value

    @model_validator(mode="after")
    def keys_match_level(self) -> SnmpV3:
        if self.security_level in ("authNoPriv", "authPriv") and self.auth_key is None:
            raise ValueError(f"auth_key is required for security_level {self.security_level}")
        if self.security_level == "authPriv" and self.priv_key is None:
            raise ValueError("priv_key is required for security_level authPriv")
        return self


def _snmp_version(value: object) -> str | None:
    """Given a profile (raw or built), return its version as the tag of its model; None when it has none.

    ``version: 3`` unquoted is a YAML number and means "3", as a sysadmin expects. A number 2 is not
    read as 2c: SNMPv2 proper (party-based) is another protocol, and 2c is the one name net-snmp's
    ``-v`` and citydc use, so the loader asks for 2c instead of guessing."""
    version = value.get("version") if isinstance(value, dict) else getattr(value, "version", None)
    if version is None:
        return None
    return "3" if type(version) is int and version == 3 else str(version)


SnmpAuth = Annotated[Annotated[SnmpV2c, Tag("2c")] | Annotated[SnmpV3, Tag("3")], Discriminator(_snmp_version)]


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
    name_pattern: str | None = Field(default=None, description="regular expression the exported ifName label must "
                                     "match (ifName, else ifDescr, else the ifIndex), e.g. ^Te")
    if_types: list[int] = Field(default=[], description="only these ifType values (empty = all)")

    @field_validator("name_pattern")
    @classmethod
    def pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except (re.error, OverflowError, RecursionError) as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class SnmpModule(Model):
    columns: list[IfMibColumn] = Field(min_length=1, description="IF-MIB ifTable/ifXTable columns to walk")
    max_repetitions: int = Field(default=25, ge=1, le=200, description="GETBULK max-repetitions")
    filter: SnmpInterfaceFilter = Field(default_factory=SnmpInterfaceFilter,
                                        description="which interfaces the module exports")


class SnmpCollector(Model):
    listen: str = Field(default=f"127.0.0.1:{SNMP_EXPORTER_PORT}",
                        description="host:port the exporter serves HTTP on (port 9116 when omitted)")
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
        default={},
        description="modules added to (or replacing) the built-in ones (if_mib, if_mib_bytes), by name")
    state_dir: ConfigPath | None = Field(
        default=Path("var/snmp-state"),
        description="counter wrap carries saved here survive an exporter restart (relative to the config; null = off)")
    state_save_seconds: float = Field(default=60, gt=0, le=3600, description="save the counter state this often")
    state_max_age_seconds: float = Field(
        default=3600, gt=0, description="saved counter state older than this at a target's first poll is dropped")

    @field_validator("listen")
    @classmethod
    def listen_is_host_port(cls, value: str) -> str:
        parse_host_port(value, default_port=SNMP_EXPORTER_PORT)
        return value


class DeviceLogin(Model):
    """How netmiko logs in to a device for config backup; shared by name like snmp_auth profiles."""

    username: str = Field(min_length=1, description="SSH login user")
    password: SecretRef | None = Field(default=None, description="SSH password, by reference (or key_file)")
    key_file: ExistingFile | None = Field(default=None, description="SSH private key file (or password)")
    enable_secret: SecretRef | None = Field(
        default=None, description="enable secret, by reference (platforms with an enable mode; empty: none)")
    port: int = Field(default=22, ge=1, le=65535, description="SSH port when management_address has none")
    timeout_seconds: float = Field(default=30, gt=0, le=600,
                                   description="budget per device: connect, login and each command")

    @model_validator(mode="after")
    def has_a_credential(self) -> DeviceLogin:
        if self.password is None and self.key_file is None:
            raise ValueError("give password (a secret reference) or key_file")
        return self


class Device(Model):
    name: Name = Field(description="device name, used as the device label")
    address: str = Field(description="host or host:port of the SNMP agent / management interface")
    site: SiteId = Field(description="id of a site in sites")
    role: Literal["core", "distribution", "access", "firewall", "lb", "hypervisor", "router", "server"] = Field(
        description="what the device does: core, distribution, access, firewall, lb, hypervisor, router or server")
    snmp_auth: str | None = Field(default=None, description="name of a profile in snmp_auth")
    snmp_module: str = Field(
        default="if_mib", description="SNMP module polled for this device: a built-in one or a key of snmp.modules")
    netmiko_device_type: str | None = Field(
        default=None, description="netmiko device_type for config backup, e.g. cisco_ios")
    login: str | None = Field(default=None, description="name of a profile in device_logins (config backup)")
    management_address: str | None = Field(
        default=None, description="host or host:port netmiko connects to (default: the host of address, "
                                  "the login's port)")
    timeout_seconds: float | None = Field(default=None, gt=0, le=600,
                                          description="overrides the login's timeout_seconds for this device")
    config_commands: dict[Literal["running", "startup"], str] = Field(
        default={}, description="commands replacing the platform's for the running/startup config, "
                                          "e.g. {running: cat /etc/nftables.conf} on linux")

    @field_validator("address")
    @classmethod
    def address_has_host(cls, value: str) -> str:
        parse_host_port(value, default_port=161)
        return value

    @field_validator("management_address")
    @classmethod
    def management_has_host(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value, default_port=22)
        return value


class NetflowListener(Model):
    address: str = Field(default="127.0.0.1", description="address to bind")
    port: int = Field(ge=1, le=65535, description="UDP port")
    site: SiteId
    receive_buffer_bytes: int = Field(default=8 * 1024 * 1024, ge=65536,
                                      description="SO_RCVBUF requested for the socket")


class Agency(Model):
    name: Name = Field(description="agency label, e.g. civil-affairs")
    prefixes: list[IPNetwork] = Field(
        min_length=1, description="the agency's address prefixes")


class NetflowExporter(Model):
    address: str = Field(description="exporter source address")
    sampling_rate: int = Field(default=1, ge=1, description="1-in-N, used when the exporter does not announce it")
    snmp_device: Name | None = Field(
        default=None, description="device (devices[].name) polled for this exporter's interface names and octet "
                                  "counters (flow-vs-SNMP reconciliation); default: the device at the same address")

    @field_validator("address")
    @classmethod
    def address_is_ip(cls, value: str) -> str:
        # Datagrams are matched by their source address, so a host name could never match.
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"expected the exporter's source IP address, got {value!r}") from None


class Netflow(Model):
    listeners: list[NetflowListener] = Field(default=[], description="UDP sockets the collector binds")
    agencies: list[Agency] = Field(default=[], description="agency -> prefix map for per-agency traffic")
    exporters: list[NetflowExporter] = Field(
        default=[], description="known exporters (routers); when any is listed, datagrams from other "
                                          "source addresses are dropped and counted unless accept_unlisted")
    accept_unlisted: bool = Field(
        default=False, description="decode datagrams from source addresses not in exporters too (when exporters "
                                   "is empty, every source is accepted anyway)")


# restic's backend prefixes; any other URL is a local path and follows the path rule.
_RESTIC_REMOTE = ("sftp:", "rest:", "s3:", "b2:", "azure:", "gs:", "swift:", "rclone:")


def repository_key(url: str, base_dir: Path | None) -> str:
    """Given a repository URL as written and the config's directory, return it in a form that is the
    same for two spellings of one repository: a local path (``local:`` or not) absolute and normalised
    (``./repos/../repos/a`` is ``repos/a``), a remote URL without trailing slashes."""
    if url.startswith(_RESTIC_REMOTE):
        return url.rstrip("/")
    path = url[len("local:"):] if url.startswith("local:") else url
    return os.path.normpath(resolve_text(path, base_dir))


class Repository(Model):
    url: str = Field(min_length=1,
                     description="restic repository: a path, sftp:host:/path, rest:https://..., s3:...")
    password: SecretRef = Field(description="repository password, by reference")
    site: SiteId
    ssh_config: ExistingFile | None = Field(
        default=None, description="for sftp: repositories, the ssh client config restic's ssh uses (ssh -F FILE)")

    @field_validator("url")
    @classmethod
    def local_path_follows_the_path_rule(cls, value: str, info: ValidationInfo) -> str:
        if value.startswith(_RESTIC_REMOTE):
            return value
        prefix = "local:" if value.startswith("local:") else ""
        return prefix + resolve_text(value[len(prefix):], base_dir_of(info))


# A daily job's freshness limit: a day and two hours for a slow run. alerts/backup.rules.yml
# (BackupNotSucceeded) uses the same 26 h; tests/unit/backup/test_freshness.py keeps them equal.
BACKUP_MAX_AGE_HOURS = 26


# restic reads --keep-* as a Go int: a larger number loads here and then fails every prune.
_KEEP_MAX = 2**63 - 1
# The tag citydc gives each snapshot of a job (backup/restic.py job_tag): what tells the jobs sharing a
# repository apart for forget, copy and the snapshot count.
JOB_TAG_PREFIX = "citydc.job="


def _restic_tag(tag: str) -> str:
    # restic's --tag splits at commas: "x,citydc.job=j2" is two tags.
    if any(part.strip().startswith(JOB_TAG_PREFIX) for part in tag.split(",")):
        raise ValueError(f"the tag prefix {JOB_TAG_PREFIX!r} is reserved: citydc tags each snapshot "
                         f"{JOB_TAG_PREFIX}<job name> itself, and a snapshot carrying another job's tag is forgotten "
                         "by that job's retention policy in a repository they share")
    return tag


def _restic_pattern(pattern: str) -> str:
    # restic's --exclude patterns are Go filepath.Match patterns: an unclosed or empty [class] or a trailing
    # backslash is ErrBadPattern, and then every backup fails. (fnmatch would accept them.)
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 == len(pattern):
                raise ValueError(f"{pattern!r}: ends with a backslash, which escapes nothing")
            i += 2
            continue
        if c == "[":
            j = i + 1 + (pattern[i + 1:i + 2] == "^")
            start = j
            while j < len(pattern) and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            if j >= len(pattern):
                raise ValueError(f"{pattern!r}: the [ at {i + 1} has no closing ]")
            if j == start:
                raise ValueError(f"{pattern!r}: the character class at {i + 1} is empty")
            i = j
        i += 1
    return pattern


ResticTag = Annotated[str, AfterValidator(_restic_tag)]
ExcludePattern = Annotated[str, AfterValidator(_restic_pattern)]


class Retention(Model):
    keep_daily: int = Field(default=7, ge=0, le=_KEEP_MAX, description="daily snapshots kept")
    keep_weekly: int = Field(default=4, ge=0, le=_KEEP_MAX, description="weekly snapshots kept")
    keep_monthly: int = Field(default=12, ge=0, le=_KEEP_MAX, description="monthly snapshots kept")

    @model_validator(mode="after")
    def keeps_something(self) -> Retention:
        # restic forget with every --keep-* 0 applies no policy: it removes nothing and says so, and
        # "keep nothing" (delete every backup) is no retention policy either.
        if not self.applies:
            raise ValueError("keep_daily, keep_weekly and keep_monthly are all 0, which is no policy (restic "
                             "would keep every snapshot); set at least one of them to 1 or more")
        return self

    @property
    def applies(self) -> bool:
        """Whether restic forget applies this policy (at least one keep_* is 1 or more)."""
        return max(self.keep_daily, self.keep_weekly, self.keep_monthly) >= 1


class BackupJob(Model):
    name: Name = Field(description="job name, given on the command line (citydc backup run NAME)")
    site: SiteId
    sources: list[ConfigPath] = Field(min_length=1, description="files and directories backed up")
    excludes: list[ExcludePattern] = Field(default=[], description="restic --exclude patterns")
    pre_commands: list[Command] = Field(default=[],
                                          description="argv lists run before the backup, e.g. slapcat")
    local_repo: Repository = Field(description="the repository on the job's own site")
    offsite_repo: Repository | None = Field(
        default=None, description="the copy on the other site (restic copy after each backup)")
    retention: Retention = Field(default_factory=Retention, description="what restic forget keeps")
    tags: list[ResticTag] = Field(default=[], description="restic tags added to each snapshot")
    offsite_limit_kib: int | None = Field(default=None, ge=1, description="upload limit for the off-site copy")
    check_read_data_days: int = Field(
        default=30, ge=1, le=256,
        description="every pack is read within this many days (at most 256: restic's --read-data-subset limit)")
    max_age_hours: float = Field(
        default=BACKUP_MAX_AGE_HOURS, gt=0,
        description="backup status: a repository is STALE (exit 1) when its newest success (off-site: its newest "
                    "snapshot) is older than this; 26 h as the BackupNotSucceeded alert")
    drill_sample_files: int = Field(default=0, ge=0, le=10000,
                                    description="restore drill: files restored at random (0 = the whole snapshot)")
    drill_smoke_command: CommandOrNone = Field(
        default=[], description="argv run after a drill's restore, e.g. load a dump and query it; "
                                          "{restore_dir} is replaced by the scratch directory")


class DeviceConfigs(Model):
    """``citydc backup configs``: device configurations kept in a git repository (docs/device-configs.md)."""

    repo_dir: ConfigPath = Field(default=Path("var/device-configs"),
                                 description="git repository of the configs, one file per device (created)")
    known_hosts: ConfigPath = Field(
        default=Path("var/device-configs-known_hosts"),
        description="SSH host keys pinned by the runs (first contact records; a changed key fails)")
    state_dir: ConfigPath = Field(default=Path("var/device-configs-state"),
                                  description="per-device results of the last run (relative to the config)")
    store_secrets: Literal["masked", "unmasked"] = Field(
        default="masked", description="masked: secrets replaced in the stored files; unmasked: stored as fetched "
                                      "in a repository kept at mode 0700")
    golden_dir: ConfigPath | None = Field(
        default=None, description="approved configs <device>.cfg; a device differing from its file is drift")
    golden_ref: str | None = Field(
        default=None, description="or a git tag/ref of repo_dir holding the approved configs")
    max_workers: int = Field(default=16, ge=1, le=256, description="devices fetched at once")

    @model_validator(mode="after")
    def one_golden_source(self) -> DeviceConfigs:
        if self.golden_dir is not None and self.golden_ref is not None:
            raise ValueError("give golden_dir or golden_ref, not both")
        return self


class Backup(Model):
    jobs: list[BackupJob] = Field(default=[], description="restic backup jobs")
    state_dir: ConfigPath = Field(default=Path("var/backup"),
                            description="run state, check cycle progress and drill evidence (relative to the config)")
    textfile_dir: ConfigPath | None = Field(
        default=None, description="node_exporter textfile collector directory for the backup metrics")
    lock_stale_seconds: int = Field(
        default=3600, ge=0, description="a lock is removed only when older than this and its process is gone")
    configs: DeviceConfigs = Field(default_factory=DeviceConfigs,
                                   description="device configuration backup (citydc backup configs)")


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
    disabled: list[str] = Field(default=[], description="rule ids not to run")


class AuthDetection(Model):
    """Thresholds of ``citydc audit auth`` (binds from slapd's stats log, logins from Keycloak's events)."""

    window_seconds: int = Field(default=600, ge=1, description="sliding window of the failure counts")
    bruteforce_failures: int = Field(default=5, ge=2, description="failures of one account within the window")
    spraying_accounts: int = Field(default=10, ge=2,
                                   description="distinct accounts failing from one source within the window")
    success_after_failures: int = Field(default=3, ge=1,
                                        description="a success after at least this many failures in the window")
    timezone: TimeZoneName = Field(default="Asia/Taipei", description="zone of the working hours")
    working_hours: Annotated[str, AfterValidator(_hours_range)] = Field(
        default="08:00-18:00", description="privileged logins outside these hours are alerts")
    working_days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"], description="days with working hours")
    relay_addresses: list[IPvAnyAddress] = Field(
        default=[],
        description="addresses of SSO servers that bind on behalf of users (Keycloak's LDAP federation): their "
                    "binds are recorded but not counted by the detections, which count the SSO's own login events")


# A distinguished name as RFC 4514 writes it, with the leniency of OpenLDAP's parser (spaces around "," "+" "="):
# attribute=value pairs; a value's special characters escaped (\, or \XX), or quoted, or #hex (BER).
_DN_PAIR = r"\\(?:[0-9A-Fa-f]{2}|[ \"#+,;<=>\\])"
_DN_ATV = (r"(?> *+(?:[A-Za-z][A-Za-z0-9-]*+|[0-9]++(?:\.[0-9]++)++) *+= *+"
           rf"(?:\"(?:[^\"\\]|{_DN_PAIR})*+\" *+|#(?:[0-9A-Fa-f]{{2}})++ *+(?=[,;+]|$)"
           rf"|(?:[^\\\",+;<>\x00]|{_DN_PAIR})++))")
# (atomic and possessive: a long value that fails is refused in linear time)
_DN = re.compile(rf"{_DN_ATV}(?:\+{_DN_ATV})*+(?:[,;]{_DN_ATV}(?:\+{_DN_ATV})*+)*+")


def _ldap_dn(value: str) -> str:
    if not _DN.fullmatch(value):
        raise ValueError(f"not a DN: {value!r} (attribute=value pairs separated by commas, e.g. "
                         "cn=domain-admins,ou=groups,dc=city,dc=example; escape , + ; < > \\ \" in a value with \\)")
    return value


LdapDn = Annotated[str, AfterValidator(_ldap_dn)]


def _group_dn(value: str) -> str:
    # A group is never an entry of the root: a single RDN is almost always a DN that YAML split at its commas,
    # written as a flow list ([cn=admins,ou=groups,dc=city,dc=example] is four "DNs").
    if not re.search(r"(?<!\\)[,;]", value):
        raise ValueError(f"{value!r} is a single RDN, not a group's DN: in a YAML flow list [cn=a,ou=b] each comma "
                         "ends an item; write one DN per line (- cn=a,ou=b,...) or quote each DN")
    return value


GroupDn = Annotated[LdapDn, AfterValidator(_group_dn)]


class LdapSource(Model):
    name: Name = Field(description="directory name, used as a label")
    url: str = Field(pattern=r"^ldaps?://", description="ldap://host:port (StartTLS) or ldaps://host:port")
    bind_dn: str = Field(description="DN of the read-only audit account")
    bind_password: SecretRef = Field(description="its password, by reference")
    base_dn: str = Field(description="search base of the audit")
    start_tls: bool = Field(default=True, description="ldap:// URLs: StartTLS before the bind")
    allow_plain_bind: bool = Field(
        default=False,
        description="allow a simple bind without TLS (ldap:// with start_tls false); never in production")
    ca_file: ExistingFile | None = Field(default=None, description="CA bundle verifying the server certificate")
    site: SiteId
    account_filter: str = Field(default="(|(objectClass=posixAccount)(objectClass=inetOrgPerson))",
                                description="LDAP filter of the accounts audited")
    policy_filter: str = Field(default="(objectClass=pwdPolicy)", description="LDAP filter of ppolicy entries")
    default_policy_dn: LdapDn | None = Field(
        default=None, description="the server's olcPPolicyDefault; null = accounts without pwdPolicySubentry "
                                  "have no policy")
    privileged_groups: list[GroupDn] = Field(default=[],
                                         description="DNs of the privileged groups (groupOfNames member)")
    baseline_file: ConfigPath | None = Field(
        default=None, description="approved privileged membership: YAML {groups: {group DN: [member DN]}}")
    accepted_risk_file: ConfigPath | None = Field(
        default=None, description="accepted risks: YAML list of {rule, subject, reason, expires, approved_by}")
    page_size: int = Field(default=1000, ge=10, le=100000, description="paged-search page size")
    bulk_reader: Literal["ldapsearch", "ldap3"] = Field(
        default="ldapsearch", description="client of the account read: ldapsearch (OpenLDAP's, fast) or "
                                          "ldap3 (pure Python, ~10x slower on a large directory)")
    bulk_searches: int = Field(
        default=1, ge=1, le=4,
        description="ldapsearch reader: at most this many paged searches at a time, over the base entry and "
                    "each child's subtree (more than 1 pays off when slapd and the client have cores to spare, "
                    "see docs/ldap-audit.md)")
    timeout_seconds: float = Field(default=30, gt=0, le=3600, description="connect and per-request timeout")
    rules: LdapRuleSettings = Field(default_factory=LdapRuleSettings,
                                    description="thresholds of the audit rules (stale days, policy minimums)")
    stats_log: ConfigPath | None = Field(default=None, description="slapd's stats log, read by `citydc audit auth`")
    auth: AuthDetection = Field(default_factory=AuthDetection,
                                description="detections of `citydc audit auth` (windows, thresholds, working hours)")
    state_dir: ConfigPath = Field(default=Path("var/ldap-audit"),
                            description="runs, resume offsets and reports (relative to the config)")
    textfile_dir: ConfigPath | None = Field(
        default=None, description="node_exporter textfile collector directory for the audit metrics")

    @field_validator("url")
    @classmethod
    def url_without_credentials(cls, value: str) -> str:
        return check_no_credentials(value, "give bind_dn and bind_password (by reference)")

    @model_validator(mode="after")
    def transport_is_protected(self) -> LdapSource:
        if self.url.startswith("ldaps://") and self.start_tls:
            raise ValueError("start_tls does not apply to ldaps:// URLs (TLS from the first byte); set it false")
        if self.url.startswith("ldap://") and not self.start_tls and not self.allow_plain_bind:
            raise ValueError("a simple bind over ldap:// without StartTLS sends the password in clear; "
                             "set start_tls true, use ldaps://, or set allow_plain_bind true (lab only)")
        return self


class SsoLogSource(Model):
    """A Keycloak whose login and admin events are read from its log file (``citydc audit auth``): the
    jboss-logging event listener's lines, as Quarkus JSON or in a syslog file."""

    kind: Literal["log"] = Field(default="log", description="log: a log file; keycloak: Keycloak's admin API")
    name: Name = Field(description="SSO service name, used as a label")
    log_path: ConfigPath = Field(description="Keycloak's log holding the org.keycloak.events lines")
    format: Literal["keycloak-json", "syslog"] = Field(
        default="keycloak-json", description="keycloak-json (Quarkus JSON lines) or syslog (RFC 3339 syslog file)")
    site: SiteId
    ldap_source: Name | None = Field(
        default=None, description="ldap source (by name) whose binds are read with these events: a password spray "
                                  "split between the directory and this Keycloak is one detection")
    auth: AuthDetection = Field(
        default_factory=AuthDetection,
        description="detections of `citydc audit auth` when no ldap_source is set (else the directory's own)")
    state_dir: ConfigPath = Field(default=Path("var/sso-audit"),
                                  description="where `citydc audit auth` keeps its place in the log (relative "
                                              "to the config)")


class SsoRuleSettings(Model):
    """Thresholds of the SSO audit's rules (docs/sso-audit.md lists every rule)."""

    min_password_length: int = Field(default=12, ge=1, description="a password policy below this length is weak")
    min_event_expiration_days: int = Field(
        default=90, ge=1, description="login/admin events kept fewer days than this are a finding")
    max_access_token_seconds: int = Field(default=900, ge=1, description="longer access tokens are a finding")
    max_login_failures: int = Field(
        default=10, ge=1, description="brute-force detection locking only after more failed logins is a finding")
    max_sso_session_idle_seconds: int = Field(default=3600, ge=1,
                                              description="a longer SSO session idle timeout is a finding")
    max_sso_session_max_seconds: int = Field(default=43200, ge=1,
                                             description="a longer SSO session maximum is a finding")
    admin_roles: list[str] = Field(
        default_factory=lambda: ["admin", "realm-admin"],
        description="a user holding one of these roles (realm role, or a realm-management client role) is an "
                    "administrator and must have a second factor")
    ignored_clients: list[str] = Field(
        default_factory=lambda: ["admin-cli"],
        description="client ids the client rules skip (Keycloak's built-in admin-cli is public with direct "
                    "access grants in every realm and holds no role by itself)")
    disabled: list[str] = Field(default=[], description="rule ids not to run")


class KeycloakSource(Model):
    """A Keycloak server audited through its admin REST API (``citydc audit sso``, ``citydc audit auth``)."""

    kind: Literal["keycloak"] = Field(description="keycloak: audited through the admin REST API")
    name: Name = Field(description="SSO service name, used as a label")
    base_url: str = Field(description="Keycloak's URL, e.g. https://sso.siwei.example (no /admin, no realm)")
    realms: list[Name] = Field(min_length=1, description="realms audited")
    auth_realm: Name | None = Field(
        default=None, description="realm of the audit's service-account client (default: master)")
    client_id: str = Field(min_length=1, description="the audit's confidential client (service account enabled; "
                                                     "realm-management roles view-realm, view-users, view-clients, "
                                                     "view-events in each audited realm)")
    client_secret: SecretRef = Field(description="its client secret, by reference")
    ca_file: ExistingFile | None = Field(default=None, description="CA bundle verifying Keycloak's certificate")
    site: SiteId
    ldap_source: Name | None = Field(
        default=None, description="ldap source (by name) of the joiner/leaver check: federated or same-named "
                                  "users disabled or missing there but enabled in Keycloak are findings")
    timeout_seconds: float = Field(default=30, gt=0, le=3600,
                                   description="per-request timeout, for the whole answer")
    page_size: int = Field(default=1000, ge=10, le=10000, description="users and events fetched per request")
    events: bool = Field(default=True, description="`citydc audit auth` reads the realms' stored login and admin "
                                                   "events (with the binds of ldap_source, when set)")
    auth: AuthDetection = Field(
        default_factory=AuthDetection,
        description="detections of `citydc audit auth` when no ldap_source is set (else the directory's own)")
    rules: SsoRuleSettings = Field(default_factory=SsoRuleSettings, description="thresholds of the SSO rules")
    accepted_risk_file: ConfigPath | None = Field(
        default=None, description="accepted risks: YAML list of {rule, subject, reason, expires, approved_by}")
    state_dir: ConfigPath = Field(default=Path("var/sso-audit"),
                                  description="saved runs of the audit (relative to the config)")

    @field_validator("base_url")
    @classmethod
    def plain_base(cls, value: str) -> str:
        check_no_credentials(value, "the audit signs in with client_id and client_secret (by reference)")
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected http(s)://host[:port][/path] of the Keycloak server")
        if parts.query or parts.fragment or "/admin" in parts.path or "/realms" in parts.path:
            raise ValueError("give Keycloak's base URL (no /admin, /realms, query or fragment)")
        _port_of(parts)
        return value.rstrip("/")


def _sso_kind(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("kind", "log"))
    return str(getattr(value, "kind", "log"))


SsoSource = Annotated[Annotated[SsoLogSource, Tag("log")] | Annotated[KeycloakSource, Tag("keycloak")],
                      Discriminator(_sso_kind)]


class SqliteSink(Model):
    kind: Literal["sqlite"] = Field(default="sqlite", description="the store: sqlite or elasticsearch")
    path: ConfigPath = Field(default=Path("var/seclog.db"), description="database file (relative to the config file)")


class ElasticsearchSink(Model):
    kind: Literal["elasticsearch"] = Field(default="elasticsearch", description="the store: sqlite or elasticsearch")
    url: str = Field(description="cluster URL, e.g. https://es1.city.example:9200 (no credentials in it)")
    api_key: SecretRef | None = Field(default=None, description="API key, by reference (or username/password)")
    username: str | None = Field(default=None, description="basic-auth user")
    password: SecretRef | None = Field(default=None, description="basic-auth password, by reference")
    ca_file: ExistingFile | None = Field(default=None, description="CA bundle for TLS verification")
    index_prefix: str = Field(default="citydc-seclog", pattern=r"^[a-z0-9][a-z0-9_-]*$",
                              description="indices and alias are named after it")

    @field_validator("url")
    @classmethod
    def http_url(cls, value: str) -> str:
        return check_http_url(value, "give username and password (by reference), or api_key")

    @model_validator(mode="after")
    def credentials_complete(self) -> ElasticsearchSink:
        if self.api_key is not None and (self.username or self.password):
            raise ValueError("give either api_key or username/password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class SecurityLog(Model):
    spool_dir: ConfigPath = Field(default=Path("var/spool"),
                                  description="durable spool (relative to the config file)")
    sink: Annotated[SqliteSink | ElasticsearchSink, Field(discriminator="kind")] = Field(
        default_factory=SqliteSink, description="where the shipper delivers events: sqlite or elasticsearch")


_DURATION = re.compile(r"^(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?$")
Duration = Annotated[str, Field(min_length=2, description="a Prometheus duration, e.g. 30s, 5m, 4h")]
AlertSeverity = Literal["critical", "warning", "info"]


# Where the credentials of Prometheus and Alertmanager go: the *_http settings beside their URL.
_NO_LOGIN = "give username and password (by reference) in {field}"


def check_http_url(value: str, credentials: str = "give username and password (by reference)") -> str:
    """Given a URL, return it if it is http(s) with a host and without credentials. Raise ValueError otherwise;
    ``credentials`` says where the component's credentials go instead.

    The message never repeats the URL, nor any part of it: one with a password in it would land in the log
    (urllib's own errors quote the port or the host, which is the password in ``https://user:password``)."""
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"credentials in the URL are not allowed: {credentials}")
    if parts.scheme not in ("http", "https"):
        raise ValueError("expected an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("expected a host after http(s)://")
    if _port_of(parts) == 0:
        raise ValueError("port must be 1-65535")
    return value


def _port_of(parts: urllib.parse.SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise ValueError("not a valid URL (the port must be a number 1-65535)") from None


def check_no_credentials(value: str, credentials: str) -> str:
    """Given a URL of any scheme, return it if it has no user or password in it. Raise ValueError otherwise,
    saying where the credentials go instead (``credentials``), without repeating the URL."""
    try:
        userinfo = urllib.parse.urlsplit(value).netloc.rpartition("@")[0]
    except ValueError:
        raise ValueError("not a valid URL") from None
    if userinfo:
        raise ValueError(f"credentials in the URL are not allowed: {credentials}")
    return value


def check_duration(value: str) -> str:
    if not value or not _DURATION.match(value) or not re.search(r"[1-9]", value):
        raise ValueError(f"expected a Prometheus duration above zero such as 30s, 5m or 4h, got {value!r}")
    return value


class WebhookTarget(Model):
    """A webhook Alertmanager posts notifications to (its webhook_configs), e.g. ``citydc alerts webhook``."""

    url: str = Field(description="URL Alertmanager posts to, e.g. https://noc1.city.example:9095/alerts")
    username: str | None = Field(default=None, min_length=1, description="basic auth user (the webhook's web config)")
    password: SecretRef | None = Field(
        default=None, description="basic auth password, by reference; Alertmanager reads it from a password_file")
    ca_file: ExistingFile | None = Field(default=None, description="CA that signs the webhook's TLS certificate")
    send_resolved: bool = Field(default=True, description="also post when the alerts resolve")
    max_alerts: int = Field(default=0, ge=0, description="alerts per post (0 = all)")

    @field_validator("url")
    @classmethod
    def http_url(cls, value: str) -> str:
        return check_http_url(value)

    @model_validator(mode="after")
    def user_and_password(self) -> WebhookTarget:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together (basic auth)")
        return self


class Receiver(Model):
    name: Name = Field(description="receiver name, referenced by routes and default_receiver")
    webhooks: list[WebhookTarget] = Field(default=[], description="webhooks notified")


class AlertRoute(Model):
    """A route under the root: alerts matching every given condition go to ``receiver``."""

    receiver: Name = Field(description="a receivers[].name")
    severity: list[AlertSeverity] = Field(default=[], description="only these severities (empty = any)")
    sites: list[SiteId] = Field(default=[], description="only alerts of these sites (empty = any)")
    alertnames: list[Name] = Field(default=[], description="only these alerts (empty = any)")
    continue_matching: bool = Field(default=False, description="also try the routes after this one")
    repeat_interval: Duration | None = Field(default=None, description="overrides grouping.repeat_interval")

    @field_validator("repeat_interval")
    @classmethod
    def duration(cls, value: str | None) -> str | None:
        return None if value is None else check_duration(value)


class AlertGrouping(Model):
    group_by: list[str] = Field(default_factory=lambda: ["alertname", "site"],
                                description="labels an alert group is made of")
    group_wait: Duration = Field(default="30s", description="wait before a new group's first notification")
    group_interval: Duration = Field(default="5m", description="wait before notifying a group's changes")
    repeat_interval: Duration = Field(default="4h", description="wait before repeating an unchanged notification")

    @field_validator("group_wait", "group_interval", "repeat_interval")
    @classmethod
    def duration(cls, value: str) -> str:
        return check_duration(value)


class AlertWebhookServer(Model):
    """The webhook receiver citydc serves (``citydc alerts webhook``)."""

    listen: str = Field(default="127.0.0.1:9095", description="host:port it serves on")
    state_dir: ConfigPath = Field(default=Path("var/alerts"),
                                  description="its notification ledger (relative to the config)")

    @field_validator("listen")
    @classmethod
    def host_port(cls, value: str) -> str:
        parse_host_port(value, default_port=9095)
        return value


class HttpClientSettings(Model):
    """How citydc reaches a Prometheus or Alertmanager that runs with a web config (``--web.config.file``):
    the CA that signs its certificate, a client certificate when it requires one, and its basic auth."""

    ca_file: ExistingFile | None = Field(default=None, description="CA bundle verifying the server's certificate "
                                                                   "(default: the system's)")
    cert_file: ExistingFile | None = Field(default=None, description="client certificate (PEM), when the server "
                                                                     "requires one (with key_file)")
    key_file: ExistingFile | None = Field(default=None, description="the client certificate's key (PEM, unencrypted)")
    username: str | None = Field(default=None, min_length=1, description="basic auth user")
    password: SecretRef | None = Field(default=None, description="basic auth password, by reference")

    @model_validator(mode="after")
    def pairs_complete(self) -> HttpClientSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.username is not None and ":" in self.username:
            raise ValueError("username: basic auth allows no ':' in the user name")
        return self

    @property
    def tls_settings(self) -> bool:
        return self.ca_file is not None or self.cert_file is not None

    def check_url(self, url: str | None) -> None:
        """Given the URL these settings go with, raise ValueError when they do not fit it: TLS settings for an
        http:// URL, or a password that would cross the network in clear (http:// to a host not on loopback)."""
        if url is None:
            if self.tls_settings or self.username is not None:
                raise ValueError("set without the URL they are for")
            return
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https":
            return
        if self.tls_settings:
            raise ValueError("ca_file/cert_file are for an https:// URL; this one is http://")
        if self.username is not None and not is_loopback(parts.hostname or ""):
            raise ValueError("a password over http:// would cross the network in clear: use https://")


def _fits_url(value: HttpClientSettings, info: ValidationInfo) -> HttpClientSettings:
    # The URL is the field declared just before its *_http settings: validated already (absent if it failed).
    url_field = (info.field_name or "").replace("_http", "_url")
    if url_field not in info.data:
        return value
    try:
        value.check_url(info.data[url_field])
    except ValueError as exc:
        raise ValueError(f"{exc} ({url_field})") from None
    return value


class Alerting(Model):
    """Prometheus and Alertmanager: the endpoints the NOC page reads, and the Alertmanager config
    ``citydc alerts amconfig`` generates (receivers, routes, grouping, the inhibitions across sites)."""

    prometheus_url: str | None = Field(default=None, description="Prometheus the NOC page queries")
    prometheus_http: HttpClientSettings = Field(
        default_factory=HttpClientSettings, description="TLS and basic auth towards prometheus_url")
    alertmanager_url: str | None = Field(default=None, description="Alertmanager the NOC page reads alerts from "
                                                                   "and lb-rolling.yml silences in")
    alertmanager_http: HttpClientSettings = Field(
        default_factory=HttpClientSettings, description="TLS and basic auth towards alertmanager_url")
    home_site: SiteId | None = Field(
        default=None, description="site this Alertmanager and its Prometheus run at; the others are far sites, "
                                  "whose alerts the inter-site link down inhibits (none: no such inhibition)")
    inter_site_alias: str = Field(
        default="inter-site", min_length=1,
        description="text in the ifAlias (any case) of the link between the sites; its UplinkDown inhibits "
                    "far-site alerts")
    core_uplink_inhibits_site: bool = Field(
        default=True, description="a core device's UplinkDown inhibits the device alerts of its site")
    default_receiver: Name | None = Field(default=None, description="receiver of alerts no route matches")
    receivers: list[Receiver] = Field(default=[], description="where notifications go")
    routes: list[AlertRoute] = Field(default=[], description="routes by severity, site and alert")
    grouping: AlertGrouping = Field(default_factory=AlertGrouping, description="how alerts are grouped")
    resolve_timeout: Duration = Field(default="5m", description="Alertmanager's global resolve_timeout")
    webhook: AlertWebhookServer = Field(default_factory=AlertWebhookServer,
                                        description="citydc's webhook receiver (citydc alerts webhook)")

    @field_validator("prometheus_url", "alertmanager_url")
    @classmethod
    def http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        where = _NO_LOGIN.format(field=info.field_name.replace("_url", "_http"))
        return None if value is None else check_http_url(value, where)

    @field_validator("resolve_timeout")
    @classmethod
    def duration(cls, value: str) -> str:
        return check_duration(value)

    @field_validator("prometheus_http", "alertmanager_http")
    @classmethod
    def http_fits_url(cls, value: HttpClientSettings, info: ValidationInfo) -> HttpClientSettings:
        return _fits_url(value, info)

    @field_validator("inter_site_alias")
    @classmethod
    def plain_alias(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9 _./:-]+", value):
            raise ValueError("expected letters, digits, spaces and _ . / : - (it is matched in a regular expression)")
        return value


def _prometheus_url(value: str) -> str:
    # Never repeats the value: a URL with a password in it would land in the log.
    try:
        parsed = urllib.parse.urlsplit(value)
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parsed.netloc.rpartition("@")[0]:
        raise ValueError("the URL must not carry a user or password (it would show in logs); "
                         + _NO_LOGIN.format(field="prometheus_http"))
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("expected an http:// or https:// URL of the Prometheus server")
    _port_of(parsed)
    return value.rstrip("/")


def _committed(value: str) -> str:
    # Stored as written after checking it parses; citydc.report reads it with parse_bit_rate.
    parse_bit_rate(value)
    return value



BitRateText = Annotated[str, AfterValidator(_committed)]
PrometheusUrl = Annotated[str, AfterValidator(_prometheus_url)]


class ReportLink(Model):
    name: Name = Field(description="link name for `citydc report bandwidth --link`, e.g. siwei-internet")
    device: Name = Field(description="device (devices[].name) whose interface carries the link")
    interface: str = Field(min_length=1, description="ifName of that interface, e.g. Te1/1/1")
    committed_rate: BitRateText | None = Field(
        default=None, description="committed (contracted) rate with its unit, e.g. '100 Mbit/s' or '1 Gbit/s' "
                                  "(decimal); adds the overage columns")


class ReportAgency(Model):
    name: Name = Field(description="agency (netflow.agencies[].name)")
    committed_rate: BitRateText | None = Field(default=None, description="committed rate, e.g. '50 Mbit/s'")


class ReportSite(Model):
    id: SiteId = Field(description="site (sites[].id); its uplinks (ifAlias says uplink) are measured")
    committed_rate: BitRateText | None = Field(default=None, description="committed rate, e.g. '1 Gbit/s'")


class Report(Model):
    """`citydc report bandwidth`: the 95th-percentile report, read from Prometheus's recording rules."""

    prometheus_url: PrometheusUrl | None = Field(default=None, description="Prometheus holding the month to report on "
                                       "(with alerts/*.rules.yml loaded); default: alerting.prometheus_url")
    prometheus_http: HttpClientSettings = Field(
        default_factory=HttpClientSettings,
        description="TLS and basic auth towards report.prometheus_url (with alerting.prometheus_url, "
                    "alerting.prometheus_http applies)")
    timeout_seconds: float = Field(default=30.0, gt=0, le=600, description="timeout of each Prometheus query")
    links: list[ReportLink] = Field(default=[], description="named links with their committed rates")
    agencies: list[ReportAgency] = Field(default=[], description="committed rates of agencies")
    sites: list[ReportSite] = Field(default=[], description="committed rates of sites (their uplinks)")

    @field_validator("prometheus_http")
    @classmethod
    def http_fits_url(cls, value: HttpClientSettings, info: ValidationInfo) -> HttpClientSettings:
        return _fits_url(value, info)


class Tools(Model):
    """The external programs citydc runs, each looked up through this section (tests, non-standard installs).

    Only programs the product itself runs belong here; the lab's services and the tests' reference
    tools (snmpd, snmpbulkwalk, promtool, ...) are found by the lab. Commands written as argv in the
    config (pre_commands, drill_smoke_command) name their program themselves.
    """

    restic: Program = Field(default="restic", description="restic, for every backup step")
    ssh: Program = Field(default="ssh", description="ssh, run by restic for sftp: repositories with ssh_config")
    amtool: Program = Field(default="amtool", description="amtool, for citydc alerts amconfig --check")


class Files(Model):
    group: str | None = Field(
        default=None, description="group given read access to the files citydc writes (0640/0750), e.g. auditors; "
                                  "citydc must run with it as its group (systemd Group=); default: owner only "
                                  "(0600/0700)")


class NocPage(Model):
    """The NOC wall page (``citydc noc serve``): it reads Prometheus and Alertmanager (alerting.*_url) on
    its own schedule and serves every screen from that cache."""

    listen: str = Field(default="127.0.0.1:9097", description="host:port the page is served on (port 9097 when "
                        "omitted); a non-loopback address wants --web.config.file (TLS, basic auth)")
    poll_interval_seconds: float = Field(default=15, ge=1, le=600,
                                         description="how often the server queries Prometheus and Alertmanager")
    stale_after_seconds: float = Field(default=120, ge=5, le=86400,
                                       description="data older than this shows STALE instead of its last colour")
    refresh_seconds: float = Field(default=10, ge=1, le=600, description="how often each screen asks the server")
    query_timeout_seconds: float = Field(default=10, gt=0, le=120, description="wait per Prometheus/Alertmanager query")
    evaluation_delay_seconds: float = Field(
        default=5, ge=0, le=300, description="queries are evaluated this long in the past, so rule evaluations in "
        "flight have landed: what the page shows is final at its evaluation time")
    chart_minutes: int = Field(default=60, ge=5, le=1440, description="time span of the link charts")
    chart_step_seconds: int = Field(default=60, ge=5, le=3600, description="step between chart points")
    links_per_site: int = Field(default=6, ge=1, le=50, description="busiest links charted per site")
    link_selector: str = Field(
        default='ifAlias=~"(?i).*uplink.*"',
        description="PromQL label matchers (without braces) of the links that may be charted")
    backup_max_age_hours: float = Field(default=26, gt=0, description="a backup step older than this shows LATE")

    @field_validator("listen")
    @classmethod
    def host_port(cls, value: str) -> str:
        parse_host_port(value, default_port=9097)
        return value

    @field_validator("link_selector")
    @classmethod
    def matchers(cls, value: str) -> str:
        if "{" in value or "}" in value or not re.fullmatch(r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(=|!=|=~|!~)\s*".*', value):
            raise ValueError('expected label matchers without braces, e.g. ifAlias=~"(?i).*uplink.*"')
        return value

    @model_validator(mode="after")
    def delay_below_stale(self) -> NocPage:
        if self.evaluation_delay_seconds + self.poll_interval_seconds >= self.stale_after_seconds:
            raise ValueError("stale_after_seconds must exceed poll_interval_seconds + evaluation_delay_seconds, "
                             "or fresh data would show STALE")
        return self


class Config(Model):
    sites: list[Site] = Field(min_length=1, description="the data centre's sites")
    snmp_auth: dict[Name, SnmpAuth] = Field(
        default={}, description="SNMP credential profiles by name, referenced by devices[].snmp_auth")
    device_logins: dict[Name, DeviceLogin] = Field(
        default={}, description="SSH login profiles by name, referenced by devices[].login")
    devices: list[Device] = Field(default=[], description="network devices polled and backed up")
    snmp: SnmpCollector = Field(default_factory=SnmpCollector, description="the SNMP exporter (citydc collect snmp)")
    netflow: Netflow = Field(default_factory=Netflow,
                             description="the NetFlow/IPFIX collector (citydc collect netflow)")
    backup: Backup = Field(default_factory=Backup, description="restic backups (citydc backup)")
    ldap: list[LdapSource] = Field(default=[], description="LDAP directories audited")
    sso: list[SsoSource] = Field(default=[],
                                 description="SSO services audited: Keycloak through its admin API, or a log file")
    security_log: SecurityLog = Field(default_factory=SecurityLog, description="spool and store of security events")
    alerting: Alerting = Field(default_factory=Alerting, description="Prometheus and Alertmanager endpoints")
    report: Report = Field(default_factory=Report, description="the bandwidth report (citydc report bandwidth)")
    tools: Tools = Field(default_factory=Tools, description="external programs citydc runs")
    files: Files = Field(default_factory=Files, description="modes of the files citydc writes (docs/security.md)")
    noc: NocPage = Field(default_factory=NocPage, description="the NOC wall page (citydc noc serve)")
    timezone: TimeZoneName = Field(default="Asia/Taipei", description="IANA zone of every time shown to a person "
                                   "(events, --json and CSV stay UTC)")
    # References between sections (sso[].ldap_source, duplicate names, sites) are checked by the
    # loader on the raw data, so each error gets its own path and line (citydc/config/loader.py).
