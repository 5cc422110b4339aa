"""Recording the lab's processes: a child that already exited is not part of the service."""

from __future__ import annotations

import subprocess
import sys

from citydc.lab import processes


def test_record_living_skips_a_child_that_already_exited():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    living = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        recs = processes.record_living([gone.pid, living.pid], "svc")
        assert [r.pid for r in recs] == [living.pid]
        assert processes.alive(recs[0])
    finally:
        living.kill()
        living.wait()
