"""The early start of a playbook run (citydc.play.runner, "Early start"): the real ansible-playbook (a local
playbook against localhost, no lab service) waits on its config-vars pipe until released, never runs a task when
cancelled, leaves no process or private file behind, and its staged artifacts end up in place, rotated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from citydc.play.runner import CONFIG_VARS_FILE, PlayRequest, Tracker, runner_kwargs, start_playbook

CITYDC = str(Path(sys.executable).with_name("citydc"))
PLAYBOOK = """---
# Writes the marker file (with alertmanager_url, or "none"): the proof that a task ran.
- name: Probe
  hosts: all
  gather_facts: false
  tasks:
    - name: Write the marker
      ansible.builtin.copy:
        dest: "{{ marker }}"
        content: "{{ alertmanager_url | default('none') }}"
        mode: "0600"
"""


@pytest.fixture()
def books(tmp_path: Path) -> Path:
    directory = tmp_path / "books"
    (directory / "inventory").mkdir(parents=True)
    (directory / "probe.yml").write_text(PLAYBOOK)
    (directory / "inventory" / "hosts").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    return directory


def request(books: Path, tmp_path: Path, **kw) -> PlayRequest:
    base = {"playbooks_dir": books, "playbook": "probe.yml", "inventory": books / "inventory" / "hosts",
            "artifacts_dir": None, "extra_vars": {"marker": str(tmp_path / "marker")}}
    return PlayRequest(**{**base, **kw})


def processes_with(text: str) -> list[int]:
    """Return the live processes (not zombies) whose command line contains text."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (proc / "cmdline").read_bytes() and " Z " not in (proc / "stat").read_text():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def wait_for_reader(pipe: Path, timeout: float = 60) -> None:
    """Return once a process other than this one has the pipe open (ansible-playbook reached its extra-vars)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for fd_dir in Path("/proc").glob("[0-9]*/fd"):
            if fd_dir.parent.name == str(os.getpid()):
                continue
            try:
                if any(os.readlink(fd) == str(pipe) for fd in fd_dir.iterdir()):
                    return
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"ansible-playbook did not open {pipe} within {timeout} s")


def test_runner_kwargs_put_the_config_pipe_first_and_stage_without_rotation():
    req = PlayRequest(playbooks_dir=Path("/pb"), playbook="p.yml", inventory=Path("/inv"), artifacts_dir=None,
                      run_id="r1", extra_vars={"a": "1"}, keep_runs=5)
    kw = runner_kwargs(req, Path("/pdd"), Path("/p/secret-vars.json"), config_vars=Path("/p/config-vars.fifo"),
                       staging=Path("/p/artifacts"))
    assert kw["cmdline"].split()[:2] == ["-e", "@/p/config-vars.fifo"]  # an explicit -e comes later and wins
    assert kw["cmdline"].endswith("-e @/p/secret-vars.json")
    assert kw["artifact_dir"] == "/p/artifacts" and kw["rotate_artifacts"] == 0  # rotated after the move
    with pytest.raises(ValueError, match="no artifact directory"):
        runner_kwargs(req, Path("/pdd"), None)


def test_nothing_runs_before_release_then_the_config_vars_arrive_and_artifacts_move_into_place(books, tmp_path):
    final = tmp_path / "art"
    final.mkdir()
    old1, old2 = "20261201T000000Z-0000aaaa", "20261201T000100Z-0000bbbb"
    for n, age in ((old1, 300), (old2, 200)):  # two earlier runs: with keep_runs=2 the oldest goes
        (final / n / "job_events").mkdir(parents=True)
        os.utime(final / n, (time.time() - age, time.time() - age))
    run = start_playbook(request(books, tmp_path, keep_runs=2), Tracker())
    assert run.pipe is not None
    private = run.pipe.parent
    assert (private.stat().st_mode & 0o777) == 0o700
    wait_for_reader(run.pipe)
    time.sleep(1.0)  # ansible-playbook waits on the pipe: no task runs however long the config takes
    assert not (tmp_path / "marker").exists()
    assert processes_with(str(run.pipe)), "ansible-playbook should be waiting"
    run.release({"alertmanager_url": "http://am.example:9093"}, artifacts_dir=final)
    result = run.wait()
    assert result.ok and result.rc == 0, result
    assert (tmp_path / "marker").read_text() == "http://am.example:9093"
    assert result.artifact_dir == final / run.req.run_id and (result.artifact_dir / "job_events").is_dir()
    assert json.loads((result.artifact_dir / CONFIG_VARS_FILE).read_text()) == {
        "alertmanager_url": "http://am.example:9093"}
    assert sorted(p.name for p in final.iterdir()) == sorted([old2, run.req.run_id])
    assert not private.exists()  # the pipe, the staging directory and the private data directory are gone


@pytest.mark.parametrize("when", ["at-once", "at-the-pipe"])
def test_a_cancelled_run_runs_no_task_and_leaves_nothing(books, tmp_path, when):
    run = start_playbook(request(books, tmp_path), Tracker())
    assert run.pipe is not None
    pipe = str(run.pipe)
    if when == "at-the-pipe":
        wait_for_reader(run.pipe)  # else ansible-playbook is still starting (or not spawned yet)
    run.cancel()
    assert processes_with(pipe) == []  # ansible-playbook is gone: cancel() returns only then
    assert not run.pipe.parent.exists()
    time.sleep(0.5)
    assert not (tmp_path / "marker").exists()


def cli(config: Path, books: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp)}  # so the run's private directory can be looked for afterwards
    env.pop("CITYDC_CONFIG", None)
    return subprocess.run([CITYDC, "-c", str(config), "play", "run", "probe.yml", "--playbooks", str(books),
                           "-i", str(books / "inventory" / "hosts"), "-e", f"marker={tmp_path / 'marker'}", *args],
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def spooled(spool: Path) -> list[dict]:
    return [json.loads(line) for seg in sorted(spool.glob("seg-*.jsonl")) for line in seg.read_text().splitlines()]


def write_config(tmp_path: Path, **extra) -> Path:
    config = tmp_path / "citydc.yaml"
    config.write_text(json.dumps({
        "sites": [{"id": "siwei", "name": "Siwei"}],
        "security_log": {"spool_dir": str(tmp_path / "spool"), "sink": {"kind": "sqlite", "path": "log.db"}},
        **extra}))
    return config


def test_cli_run_records_start_and_end_with_the_final_artifact_dir(books, tmp_path):
    config = write_config(tmp_path, alerting={"alertmanager_url": "http://127.0.0.1:9093"})
    proc = cli(config, books, tmp_path, "--json", "--keep-runs", "1")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (tmp_path / "marker").read_text() == "http://127.0.0.1:9093"  # from the config, through the pipe
    final = tmp_path / "play-artifacts" / out["run_id"]
    assert out["artifact_dir"] == str(final) and (final / "job_events").is_dir()
    runs = [e for e in spooled(tmp_path / "spool") if e["event"]["action"] == "playbook-run"]
    assert [e["citydc"]["playbook"]["phase"] for e in runs] == ["start", "end"]
    assert all(e["citydc"]["playbook"]["artifact_dir"] == str(final) for e in runs)
    assert runs[0]["citydc"]["playbook"]["extra_vars"] == ["alertmanager_url", "marker"]
    assert runs[1]["event"]["outcome"] == "success"
    assert list((tmp_path / "tmp").iterdir()) == []  # the private directory (pipe, staging) is gone


def test_cli_bad_config_cancels_the_started_run(books, tmp_path):
    config = tmp_path / "citydc.yaml"
    config.write_text(json.dumps({"sites": 3}))
    proc = cli(config, books, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "nothing was run" in proc.stderr
    assert processes_with(str(books)) == []  # no ansible-playbook left behind
    assert list((tmp_path / "tmp").iterdir()) == []
    time.sleep(0.5)
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "play-artifacts").exists()


def test_cli_start_event_not_written_cancels_the_started_run(books, tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    config = write_config(tmp_path)
    data = json.loads(config.read_text())
    data["security_log"]["spool_dir"] = str(tmp_path / "not-a-dir" / "spool")
    config.write_text(json.dumps(data))
    proc = cli(config, books, tmp_path)
    assert proc.returncode != 0
    assert processes_with(str(books)) == []
    assert list((tmp_path / "tmp").iterdir()) == []
    time.sleep(0.5)
    assert not (tmp_path / "marker").exists()


def test_cli_sigterm_before_the_start_event_cancels_the_run(books, tmp_path):
    """SIGTERM while the config loads (here: while ansible-playbook waits on its pipe) stops the run unrecorded."""
    config = write_config(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([CITYDC, "-c", str(config), "play", "run", "probe.yml", "--playbooks", str(books),
                             "-i", str(books / "inventory" / "hosts"), "-e", f"marker={tmp_path / 'marker'}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp.glob("citydc-play-*/config-vars.fifo")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    # an interrupt (130), not a failed job
    assert proc.returncode == 130 and stderr.strip().endswith("interrupted"), stdout + stderr
    assert not (tmp_path / "spool").exists() or not [
        e for e in spooled(tmp_path / "spool") if e["event"]["action"] == "playbook-run"]
    assert processes_with(str(books)) == []
    assert list(tmp.iterdir()) == []
    time.sleep(0.5)
    assert not (tmp_path / "marker").exists()
