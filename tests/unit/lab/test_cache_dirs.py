"""The lab's download cache stays open to its unprivileged user, whatever umask made it.

``citydc lab up`` runs under citydc's umask (077): a cache root it makes is root's alone, and Elasticsearch,
run as the lab's unprivileged user from the cache, then cannot start (EACCES on its launcher). Installs here
use a small archive put where the mvn download would be, so no download is made."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from citydc.lab import base
from citydc.lab.base import LabContext, LabError
from citydc.lab.elasticsearch import ES_VERSION, Elasticsearch
from citydc.lab.keycloak import KC_VERSION, Keycloak

SERVICES = {"elasticsearch": (Elasticsearch, f"elasticsearch-{ES_VERSION}", "elasticsearch",
                              f"elasticsearch-{ES_VERSION}.zip"),
            "keycloak": (Keycloak, f"keycloak-{KC_VERSION}", "kc.sh", f"keycloak-quarkus-dist-{KC_VERSION}.zip")}


@pytest.fixture
def private_umask():
    old = os.umask(0o077)
    yield
    os.umask(old)


def _archive(path: Path, top: str, launcher: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, mode in ((f"{top}/", 0o40755), (f"{top}/bin/", 0o40755)):
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, "")
        info = zipfile.ZipInfo(f"{top}/bin/{launcher}")
        info.external_attr = 0o100755 << 16
        zf.writestr(info, "#!/bin/sh\n")


def _open_to_others(path: Path, stop: Path) -> list[str]:
    """Return the directories from ``stop`` down to ``path`` that others cannot enter and read."""
    closed = []
    for d in [path, *path.parents]:
        if d.is_dir() and stat.S_IMODE(d.stat().st_mode) & 0o005 != 0o005:
            closed.append(f"{d} {oct(stat.S_IMODE(d.stat().st_mode))}")
        if d == stop:
            break
    return closed


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_an_install_under_the_private_umask_leaves_the_launcher_reachable(tmp_path, private_umask, name):
    cls, top, launcher, archive = SERVICES[name]
    ctx = LabContext(root=tmp_path / "lab", cache=tmp_path / "cache")
    # made as mvn would, under the umask: the cache's root and the service's directory root-only
    _archive(ctx.cache / name / archive, top, launcher)
    assert stat.S_IMODE(ctx.cache.stat().st_mode) == 0o700
    cls().install(ctx)
    exe = ctx.cache / name / top / "bin" / launcher
    assert exe.is_file()
    assert _open_to_others(exe.parent, ctx.cache) == []
    assert stat.S_IMODE(exe.stat().st_mode) & 0o005 == 0o005


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_cache_left_root_only_by_an_earlier_run_is_opened_when_already_installed(tmp_path, name):
    cls, top, launcher, _ = SERVICES[name]
    ctx = LabContext(root=tmp_path / "lab", cache=tmp_path / "cache")
    exe = ctx.cache / name / top / "bin" / launcher
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    for d in (exe.parent, exe.parent.parent):
        d.chmod(0o755)
    ctx.cache.chmod(0o700)
    (ctx.cache / name).chmod(0o700)
    cls().install(ctx)  # installed already: nothing fetched, but the way to it opened
    assert _open_to_others(exe.parent, ctx.cache) == []


def test_a_cache_that_cannot_be_opened_is_a_lab_error_naming_it(tmp_path, monkeypatch):
    ctx = LabContext(root=tmp_path / "lab", cache=tmp_path / "cache")
    ctx.cache.mkdir(mode=0o700)
    ctx.cache.chmod(0o700)

    def refuse(self, mode):
        raise PermissionError(1, "Operation not permitted", str(self))

    monkeypatch.setattr(base.Path, "chmod", refuse)
    with pytest.raises(LabError, match=f"cache directory {ctx.cache} .*Operation not permitted.*CITYDC_CACHE_DIR"):
        ctx.cache_dir("elasticsearch")


def test_an_open_cache_is_left_as_it_is(tmp_path, monkeypatch):
    ctx = LabContext(root=tmp_path / "lab", cache=tmp_path / "cache")
    (ctx.cache / "keycloak").mkdir(parents=True)
    for d in (ctx.cache, ctx.cache / "keycloak"):
        d.chmod(0o750 | 0o005)
    monkeypatch.setattr(base.Path, "chmod", lambda self, mode: pytest.fail(f"chmod {self}"))
    assert ctx.cache_dir("keycloak") == ctx.cache / "keycloak"
