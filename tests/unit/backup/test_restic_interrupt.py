"""citydc stopped while restic runs (SIGINT or SIGTERM to citydc alone, as ``kill PID`` or a service manager
sends): restic gets SIGINT and time to remove its repository lock, so the next command is not turned away.

restic here is ``backup --stdin`` on a pipe this test holds open: it holds its lock until stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PASSWORD = "Interrupt-pw-5Tz9"
CHILD = """\
import sys
from citydc import execute
execute.run("restic", ["restic", "-r", sys.argv[1], "backup", "--stdin", "--stdin-filename", "x"],
            env={"RESTIC_PASSWORD": sys.argv[2]}, timeout=60)
"""


def wait_for(cond, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_citydc_lets_restic_remove_its_lock(tmp_path: Path, signum: int):
    repo = tmp_path / "repo"
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run(["restic", "-r", str(repo), "init"], env=env, capture_output=True, check=True, timeout=120)
    read, write = os.pipe()  # restic's stdin: open until this test closes it
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(repo), PASSWORD], stdin=read, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    os.close(read)
    try:
        assert wait_for(lambda: any((repo / "locks").iterdir())), "restic never took its lock"
        child.send_signal(signum)  # to citydc alone, not its process group
        child.wait(timeout=30)
        assert not any((repo / "locks").iterdir()), "restic's lock was left behind"
    finally:
        os.close(write)  # ends a restic left running (without the fix), which then removes its lock
        if child.poll() is None:
            child.kill()
            child.wait()
        wait_for(lambda: not any((repo / "locks").iterdir()), timeout=30)
