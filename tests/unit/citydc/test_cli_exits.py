"""How the real ``citydc`` process ends when its run is cut short (findings 9, 10, 19, 20 of the exploratory
test): Ctrl-C is "interrupted" and 130, a reader that went away is a quiet 141, a full disk or a closed stdout
is one line and 1, and the Elasticsearch client's retries stay out of the output without -v.

Every test runs ``python -m citydc.cli.main`` in a child process, with real signals, pipes and /dev/full.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from citydc.cli.main import cli
from citydc.seclog import emit, make_event

CITYDC = [sys.executable, "-m", "citydc.cli.main"]
FULL_DISK = "error: cannot write output: No space left on device\n"
CLOSED = "error: cannot write output: standard output is closed\n"


def start(*args: str, **kw) -> subprocess.Popen:
    """Start citydc with Python's default Ctrl-C (whatever the test runner does with SIGINT)."""
    return subprocess.Popen([*CITYDC, *args], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


def write_config(path: Path, sink: str) -> Path:
    path.write_text(f"sites: [{{id: siwei, name: Siwei}}]\nsecurity_log: {{spool_dir: spool, sink: {sink}}}\n",
                    encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A config whose SQLite store holds 20 events (an NDJSON line, a CSV row and a table row each)."""
    cfg = write_config(tmp_path / "citydc.yaml", "{kind: sqlite, path: seclog.db}")
    emit([make_event(action="ldap-bind", dataset="citydc.ldap", kind="event", category=["authentication"],
                     type=["start"], outcome="failure", site="siwei", message=f"bind {i} of alice", id_key=f"b{i}")
          for i in range(20)], spool_dir=tmp_path / "spool")
    result = CliRunner().invoke(cli, ["-c", str(cfg), "log", "ship"])
    assert result.exit_code == 0, result.output
    return cfg


@pytest.fixture
def silent_port():
    """A 127.0.0.1 port that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)
        yield server


# -- Ctrl-C --------------------------------------------------------------------------------------------------

def test_ctrl_c_during_a_command_is_interrupted_and_130(tmp_path, silent_port):
    port = silent_port.getsockname()[1]
    cfg = write_config(tmp_path / "citydc.yaml", f"{{kind: elasticsearch, url: 'http://127.0.0.1:{port}'}}")
    proc = start("-c", str(cfg), "log", "search", stdout=subprocess.PIPE)
    conn, _ = silent_port.accept()  # the command now waits for Elasticsearch's answer
    with conn:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted"  # not click's "Aborted!", no traceback
    assert out == ""


def test_log_ship_follow_still_ends_cleanly_on_ctrl_c(store):
    textfile = store.parent / "seclog.prom"
    proc = start("-c", str(store), "log", "ship", "--follow", "--poll", "0.05", "--textfile", str(textfile))
    for _ in range(1200):  # bounded: written after the first round, once the follow loop handles SIGINT itself
        if textfile.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert textfile.exists(), proc.communicate(timeout=60)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "interrupted" not in err and "Traceback" not in err


def test_alerts_webhook_still_ends_cleanly_on_ctrl_c(store):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    proc = start("-c", str(store), "alerts", "webhook", "--listen", f"127.0.0.1:{port}")
    answered = False
    for _ in range(1200):  # bounded: an answer means serve_forever, which takes Ctrl-C as its stop, is running
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing-here", timeout=5)
        except urllib.error.HTTPError:
            answered = True
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    assert answered, proc.communicate(timeout=60)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "interrupted" not in err and "Traceback" not in err


# -- stdout that cannot take the output ----------------------------------------------------------------------

def run_into(stdout, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CITYDC, *args], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize("fmt", ["--ndjson", "--csv", "--json", "--wide"])
def test_a_reader_gone_away_ends_the_command_quietly_with_141(store, fmt):
    read, write = os.pipe()
    os.close(read)  # like `| head -1` once head has exited: every write meets a closed pipe
    try:
        proc = run_into(write, "-c", str(store), "log", "search", fmt)
    finally:
        os.close(write)
    assert proc.stderr == ""  # no traceback: neither the broken pipe nor the store's stream closed too late
    assert proc.returncode == 141


def test_a_reader_gone_away_mid_stream_is_quiet_too(store):
    """The real `| head -1`: the first line is read, then the reader exits while citydc still writes."""
    proc = subprocess.Popen([*CITYDC, "-c", str(store), "log", "search", "--ndjson"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("{")
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert err == ""
    assert proc.returncode in (0, 141)  # 0 when all 20 lines were in the pipe before it closed


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [("config", "sample"), ("log", "search", "--json"), ("log", "search", "--ndjson"),
                                  ("log", "search", "--csv"), ("log", "search")])
def test_a_full_disk_is_one_line_and_exit_1(store, args):
    with open("/dev/full", "w") as full:
        proc = run_into(full, "-c", str(store), *args)
    assert proc.stderr == FULL_DISK
    assert proc.returncode == 1


@pytest.mark.parametrize("args", [("config", "sample"), ("log", "search", "--ndjson"), ("log", "search")])
def test_output_to_a_closed_stdout_is_an_error_not_lost(store, args):
    proc = subprocess.run([*CITYDC, "-c", str(store), *args], stderr=subprocess.PIPE, text=True, timeout=120,
                          preexec_fn=lambda: os.close(1), check=False)  # as `citydc ... >&-`
    assert proc.stderr == CLOSED
    assert proc.returncode == 1


def test_a_command_that_prints_nothing_runs_with_stdout_closed(store):
    proc = subprocess.run([*CITYDC, "-c", str(store), "log", "ship"], stderr=subprocess.PIPE, text=True,
                          timeout=120, preexec_fn=lambda: os.close(1), check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("delivered 0 event(s)")


def test_usage_errors_and_help_keep_their_exit_codes():
    """main() maps click's outcomes itself now: a usage error is still 2, --help and --version 0."""
    codes = [run_into(subprocess.DEVNULL, *args).returncode
             for args in (["nosuch"], ["log", "search", "--limit", "x"], ["--help"], ["--version"])]
    assert codes == [2, 2, 0, 0]


# -- the Elasticsearch client's own log lines ------------------------------------------------------------

def test_elasticsearch_client_warnings_only_with_verbose(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again: connections are refused
    cfg = write_config(tmp_path / "citydc.yaml", f"{{kind: elasticsearch, url: 'http://127.0.0.1:{port}'}}")
    quiet = start("-c", str(cfg), "log", "search", stdout=subprocess.DEVNULL)
    verbose = start("-v", "-c", str(cfg), "log", "search", stdout=subprocess.DEVNULL)
    quiet_err, verbose_err = quiet.communicate(timeout=120)[1], verbose.communicate(timeout=120)[1]
    assert quiet.returncode == verbose.returncode == 1
    assert quiet_err.startswith("error: security log store failed: ") and quiet_err.count("\n") == 1, quiet_err
    assert "WARNING elastic_transport" in verbose_err  # -v still shows them
