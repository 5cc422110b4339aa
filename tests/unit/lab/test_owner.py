"""The lab never silently reuses a service it did not start with this code.

A tiny service (a sleeping Python process, in its own LabContext under tmp_path, no port) stands
in for a real one: the framework's records decide, not the program.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from citydc.lab import processes
from citydc.lab.base import LabContext, LabError, Service


class Sleeper(Service):
    name = "sleeper"
    description = "a process that sleeps (a stand-in service)"
    foreign_answer = False  # something else answers in its place

    def start(self, ctx: LabContext) -> subprocess.Popen:
        return processes.spawn([sys.executable, "-c", "import time; time.sleep(120)"],
                               log_path=ctx.service_dir(self.name) / "sleeper.log")

    def ready(self, ctx: LabContext) -> bool:
        return self.running(ctx) or self.foreign_answer


@pytest.fixture
def lab(tmp_path: Path):
    ctx, svc = LabContext(root=tmp_path / "lab", cache=tmp_path / "cache"), Sleeper()
    yield ctx, svc
    svc.down(ctx)


def pids(svc: Service, ctx: LabContext) -> list[int]:
    return [r.pid for r in svc.records(ctx)]


def test_a_service_started_by_this_code_is_reused(lab):
    ctx, svc = lab
    svc.up(ctx)
    first = pids(svc, ctx)
    assert json.loads(svc.owner_file(ctx).read_text()) == svc.fingerprint()
    assert svc.fingerprint()["checkout"] == str(Path(processes.__file__).resolve().parent.parent)
    svc.up(ctx)
    assert pids(svc, ctx) == first


@pytest.mark.parametrize("owner", [
    {"checkout": "/elsewhere/citydc", "code": "x"},  # another checkout
    "code",  # this checkout, another version of the service's code
    None,  # started before owners were recorded
])
def test_a_service_started_by_another_checkout_or_version_is_restarted(lab, owner):
    ctx, svc = lab
    svc.up(ctx)
    old = svc.records(ctx)
    if owner is None:
        svc.owner_file(ctx).unlink()
    else:
        record = {**svc.fingerprint(), "code": "0" * 16} if owner == "code" else {**svc.fingerprint(), **owner}
        svc.owner_file(ctx).write_text(json.dumps(record))
    svc.up(ctx)
    assert pids(svc, ctx) != [r.pid for r in old]
    assert not any(processes.alive(r) for r in old)  # the old one was stopped, by its recorded PID
    assert json.loads(svc.owner_file(ctx).read_text()) == svc.fingerprint()


def test_something_answering_without_this_labs_records_is_an_error(lab):
    ctx, svc = lab
    svc.foreign_answer = True
    with pytest.raises(LabError, match=r"sleeper: something already answers .* this lab .* did not start it"):
        svc.up(ctx)
    assert svc.records(ctx) == []
