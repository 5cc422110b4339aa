"""OpenLDAP ``slapd`` as a private instance on loopback: the city directory both sites share.

Its own config directory (``cn=config`` built with ``slapadd -n0``), databases, lab CA and
certificates live under the lab directory; the Debian system instance (``/etc/ldap/slapd.d``)
is never touched. The instance has StartTLS (and LDAPS) with a server certificate signed by a
lab CA made with ``openssl`` at start, the ppolicy overlay with a default policy, the built-in
lastbind (``olcLastBind``: ``pwdLastSuccess`` on every successful bind) and the accesslog overlay
(binds and writes, failures included, readable by the auditor only). slapd runs in the foreground
with ``-d stats``, so its stats log (the authentication log ``citydc audit auth`` reads) is the
service's log file.

The directory is rebuilt from ``lab/slapd_data.py`` at every start, planted problems included;
the server certificate is valid for ``CERT_DAYS`` days only, so the audit's certificate-expiry
rule has something to find, and anonymous and plain simple binds stay allowed for the same reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import yaml

from citydc import execute
from citydc.lab import ports, processes, slapd_data
from citydc.lab.base import LabContext, LabError, Service, apt_install
from citydc.lab.es_tls import SERVER_EXTENSIONS, csr_argv, make_ca, sign_argv

__all__ = ["ADMIN_DN", "AUDITOR_DN", "CERT_DAYS", "Slapd", "config_ldif", "try_bind"]

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
MODULE_DIR = "/usr/lib/ldap"
SCHEMA_DIR = "/etc/ldap/schema"
ADMIN_DN = f"cn=admin,{slapd_data.BASE_DN}"
AUDITOR_DN = f"cn=auditor,ou=system,{slapd_data.BASE_DN}"
CERT_DAYS = 20  # below the audit's 30-day warning: a planted finding (LDAP-SRV-003)
# Debian's postinst would build and configure a system instance; the lab wants only the binaries.
DEBCONF_PRESEED = "slapd slapd/no_configuration boolean true\n"


def config_ldif(d: Path, *, admin_hash: str, auditor_dn: str = AUDITOR_DN, max_size: int = 1 << 30) -> str:
    """Given the service directory and the admin password hash, return the ``cn=config`` LDIF."""
    base = slapd_data.BASE_DN
    auditor = f'dn.exact="{auditor_dn}"'
    peercred = f"gidNumber={os.getgid()}+uidNumber={os.getuid()},cn=peercred,cn=external,cn=auth"
    return f"""\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {d / "slapd.pid"}
olcArgsFile: {d / "slapd.args"}
olcLogLevel: stats
olcTLSCACertificateFile: {d / "ca.crt"}
olcTLSCertificateFile: {d / "server.crt"}
olcTLSCertificateKeyFile: {d / "server.key"}

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {MODULE_DIR}
olcModuleLoad: back_mdb
olcModuleLoad: ppolicy
olcModuleLoad: accesslog
olcModuleLoad: pw-sha2

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file://{SCHEMA_DIR}/core.ldif
include: file://{SCHEMA_DIR}/cosine.ldif
include: file://{SCHEMA_DIR}/nis.ldif
include: file://{SCHEMA_DIR}/inetorgperson.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: 500

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by dn.exact={peercred} manage by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: cn=accesslog
olcDbDirectory: {d / "accesslog"}
olcDbMaxSize: {max_size}
olcDbNoSync: TRUE
olcRootDN: {ADMIN_DN}
olcDbIndex: default eq
olcDbIndex: entryCSN,objectClass,reqEnd,reqResult,reqStart,reqDN
olcAccess: {{0}}to * by {auditor} read by * none
olcLimits: {auditor} size=unlimited time=unlimited

dn: olcDatabase={{2}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{2}}mdb
olcSuffix: {base}
olcDbDirectory: {d / "data"}
olcDbMaxSize: {max_size}
olcDbNoSync: TRUE
olcRootDN: {ADMIN_DN}
olcRootPW: {admin_hash}
olcLastBind: TRUE
olcDbIndex: objectClass eq
olcDbIndex: uid,mail,uidNumber,member,memberUid eq
olcAccess: {{0}}to attrs=userPassword by self =xw by {auditor} read by anonymous auth by * none
olcAccess: {{1}}to * by {auditor} read by self read by users read by * none
olcLimits: {auditor} size=unlimited size.prtotal=unlimited time=unlimited

dn: olcOverlay={{0}}ppolicy,olcDatabase={{2}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {{0}}ppolicy
olcPPolicyDefault: cn=default,ou=policies,{base}
olcPPolicyHashCleartext: FALSE

dn: olcOverlay={{1}}accesslog,olcDatabase={{2}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcAccessLogConfig
olcOverlay: {{1}}accesslog
olcAccessLogDB: cn=accesslog
olcAccessLogOps: writes session
olcAccessLogSuccess: FALSE
olcAccessLogPurge: 07+00:00 01+00:00
"""


def _run(tool: str, argv: list[str], what: str, timeout: float = 600) -> None:
    res = execute.run(tool, argv, timeout=timeout)
    if not res.ok:
        raise LabError(f"{what} failed ({res.meaning}): {res.masked_stderr().strip()[-800:]}")


def make_server_cert(d: Path, days: int) -> None:
    """Given the service directory holding ca.crt/ca.key, make server.crt/server.key valid ``days`` days."""
    key, csr, cert, ext = (d / n for n in ("server.key", "server.csr", "server.crt", "server.ext"))
    ext.write_text(SERVER_EXTENSIONS)
    _run("openssl", list(csr_argv(key, csr)), "openssl req")
    argv = list(sign_argv(csr, d / "ca.crt", d / "ca.key", cert, ext))
    argv[argv.index("-days") + 1] = str(days)
    _run("openssl", argv, "openssl x509")
    key.chmod(0o600)


class Slapd(Service):
    name = "slapd"
    description = "OpenLDAP slapd (StartTLS + LDAPS with a lab CA, ppolicy, lastbind, accesslog), both sites' users"
    ready_timeout = 30.0

    def __init__(self, name: str = "slapd", port: int = ports.SLAPD, ldaps_port: int = ports.SLAPD_LDAPS,
                 spec: slapd_data.DirectorySpec | None = None) -> None:
        self.name = name
        self.port = port
        self.ldaps_port = ldaps_port
        self.spec = spec or slapd_data.DirectorySpec()

    # -- where things are ------------------------------------------------------------------

    def url(self) -> str:
        return f"ldap://{ports.HOST}:{self.port}"

    def ldaps_url(self) -> str:
        return f"ldaps://{ports.HOST}:{self.ldaps_port}"

    def ca_file(self, ctx: LabContext) -> Path:
        return ctx.service_dir(self.name) / "ca.crt"

    def baseline_file(self, ctx: LabContext) -> Path:
        return ctx.service_dir(self.name) / "privileged-baseline.yaml"

    def stats_log(self, ctx: LabContext) -> Path:
        return self.log_path(ctx)

    def ldapi_url(self, ctx: LabContext) -> str:
        return "ldapi://" + quote(str(ctx.service_dir(self.name) / "ldapi"), safe="")

    # -- the service -----------------------------------------------------------------------

    def install(self, ctx: LabContext) -> None:
        if Path(SLAPD).exists() and shutil.which("ldapsearch") and shutil.which("openssl"):
            return
        if os.geteuid() == 0 and shutil.which("debconf-set-selections"):
            execute.run("debconf-set-selections", ["debconf-set-selections"], input_text=DEBCONF_PRESEED)
        apt_install(["slapd", "ldap-utils", "openssl"], ctx)

    def build(self, ctx: LabContext) -> None:
        """Rebuild the config, certificates and both databases from scratch."""
        d = ctx.service_dir(self.name)
        for sub in ("slapd.d", "data", "accesslog"):
            shutil.rmtree(d / sub, ignore_errors=True)
            (d / sub).mkdir(mode=0o700)
        self.log_path(ctx).unlink(missing_ok=True)
        make_ca(d, subject="/CN=citydc lab LDAP CA")
        make_server_cert(d, CERT_DAYS)
        admin_hash = slapd_data.ssha(ports.LAB_ENV["CITYDC_LDAP_ADMIN_PASSWORD"], os.urandom(8))
        auditor_hash = slapd_data.ssha(ports.LAB_ENV["CITYDC_LDAP_PASSWORD"], os.urandom(8))
        big = self.spec.users_per_site > 10_000
        conf = d / "config.ldif"
        conf.write_text(config_ldif(d, admin_hash=admin_hash, max_size=(4 << 30) if big else (1 << 30)))
        conf.chmod(0o600)
        _run("slapadd", [SLAPADD, "-n0", "-F", str(d / "slapd.d"), "-l", str(conf)], "slapadd of cn=config")
        data = d / "directory.ldif"
        with open(data, "w", encoding="utf-8") as fh:
            fh.writelines(slapd_data.ldif(self.spec, slapd_data.lab_now(), auditor_hash))
        data.chmod(0o600)
        # -q: no per-entry fsync (a 100k-user load takes seconds instead of many minutes).
        _run("slapadd", [SLAPADD, "-q", "-F", str(d / "slapd.d"), "-b", slapd_data.BASE_DN, "-l", str(data)],
             "slapadd of the directory", timeout=1800)
        self.baseline_file(ctx).write_text(
            "# Approved members of the privileged groups (lab).\n"
            + yaml.safe_dump({"groups": slapd_data.baseline(self.spec)}, sort_keys=True))

    def start(self, ctx: LabContext) -> subprocess.Popen:
        self.build(ctx)
        d = ctx.service_dir(self.name)
        urls = f"{self.url()}/ {self.ldaps_url()}/ {self.ldapi_url(ctx)}"
        # -d stats: foreground (the recorded PID is slapd's) with the stats log on stderr, our log file.
        return processes.spawn([SLAPD, "-d", "stats", "-h", urls, "-F", str(d / "slapd.d")],
                               log_path=self.log_path(ctx))

    def ready(self, ctx: LabContext) -> bool:
        res = execute.run("ldapsearch", ["ldapsearch", "-x", "-H", self.url(), "-s", "base", "-b", "",
                                         "-LLL", "supportedExtension"], timeout=10)
        return res.ok

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"ldap": self.url() + " (StartTLS)", "ldaps": self.ldaps_url(), "ca_file": str(self.ca_file(ctx)),
                "bind_dn": AUDITOR_DN, "base_dn": slapd_data.BASE_DN, "stats_log": str(self.stats_log(ctx)),
                "baseline": str(self.baseline_file(ctx))}


def try_bind(user: str, password: str, source_address: str | None = None) -> bool:
    """Given a DN, a password and the loopback address to connect from, bind to the lab slapd as a client
    would (ldap3, plain simple bind); return whether it succeeded. The auth tests make their attempts so."""
    import ldap3  # only the tests that bind need it

    server = ldap3.Server(ports.HOST, ports.SLAPD, get_info=ldap3.NONE, connect_timeout=5)
    conn = ldap3.Connection(server, user=user, password=password, raise_exceptions=False, receive_timeout=5,
                            source_address=source_address)
    try:
        return bool(conn.bind())
    finally:
        conn.unbind()
