from __future__ import annotations

import logging
import sys

import pytest

from citydc import execute
from citydc.execute import Outcome


@pytest.mark.parametrize(("rc", "outcome"), [(0, Outcome.SUCCESS), (3, Outcome.PARTIAL), (12, Outcome.FAILURE),
                                             (42, Outcome.FAILURE), (-9, Outcome.FAILURE)])
def test_restic_exit_codes(rc, outcome):
    assert execute.interpret_exit_code("restic", rc)[0] is outcome


def test_unknown_tool_only_zero_succeeds():
    assert execute.interpret_exit_code("sometool", 0)[0] is Outcome.SUCCESS
    assert execute.interpret_exit_code("sometool", 1)[0] is Outcome.FAILURE


def test_mask_replaces_longest_first():
    assert execute.mask("pw=abcdef and abc", ["abc", "abcdef"]) == "pw=*** and ***"


def test_secret_in_argv_is_refused():
    with pytest.raises(ValueError, match="secret value appears in argv"):
        execute.run("echo", ["echo", "--password=hunter2"], secrets=["hunter2"])


def test_secret_passes_by_environment_and_is_masked_in_logs(caplog):
    caplog.set_level(logging.DEBUG, logger="citydc.execute")
    code = "import os,sys; sys.stderr.write('got ' + os.environ['PW']); sys.exit(3)"
    res = execute.run("restic", [sys.executable, "-c", code], env={"PW": "hunter2"}, secrets=["hunter2"])
    assert res.outcome is Outcome.PARTIAL
    assert res.stderr == "got hunter2"          # the raw output stays available to the caller
    assert res.masked_stderr() == "got ***"     # what may be shown
    assert "hunter2" not in caplog.text


def test_timeout_and_missing_program_raise_toolfailed():
    with pytest.raises(execute.ToolFailed, match="timed out"):
        execute.run("sleep", [sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5)
    with pytest.raises(execute.ToolFailed, match="program not found"):
        execute.run("nope", ["/nonexistent/citydc-nope"])


def test_stream_lines_yields_and_reports_exit():
    done = execute.Streamed()
    code = "print('a'); print('b'); import sys; sys.exit(3)"
    lines = list(execute.stream_lines("restic", [sys.executable, "-c", code], done))
    assert lines == ["a", "b"]
    assert (done.rc, done.outcome) == (3, Outcome.PARTIAL)


@pytest.mark.parametrize("argv", [[], [""]])
def test_an_empty_command_is_a_clear_tool_failure(argv):
    # An empty argv made Popen raise IndexError (a traceback), an empty program a misleading PermissionError.
    with pytest.raises(execute.ToolFailed, match=r"^pre-command: no program to run \(an empty command\)$"):
        execute.run("pre-command", argv)
