"""citydc.play: the runner's argument building, masking and event following; the event builders; CLI parsing."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click
import pytest

from citydc.cli.play_cmd import parse_extra_vars, parse_secret_vars
from citydc.play import events
from citydc.play.runner import PlayRequest, Tracker, limit_pattern, list_playbooks, mask_event, runner_kwargs
from citydc.seclog.event import validate_event

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"


def req(**kw) -> PlayRequest:
    base = {"playbooks_dir": Path("/pb"), "playbook": "lb-deploy.yml", "inventory": Path("/pb/inventories/lab"),
            "artifacts_dir": Path("/art"), "run_id": "r1"}
    return PlayRequest(**{**base, **kw})


def test_runner_kwargs_plain_run():
    kw = runner_kwargs(req(), Path("/pdd"), None)
    assert kw["private_data_dir"] == "/pdd" and kw["project_dir"] == "/pb" and kw["playbook"] == "lb-deploy.yml"
    assert kw["artifact_dir"] == "/art" and kw["ident"] == "r1" and kw["rotate_artifacts"] == 0  # rotate_runs
    assert kw["settings"]["suppress_output_file"] is True
    assert "cmdline" not in kw and "limit" not in kw and "extravars" not in kw


def test_runner_kwargs_check_diff_vars_limit_and_secret_file():
    r = req(check=True, diff=True, site="siwei", limit="app-siwei-1", extra_vars={"a": "1"},
            secret_vars={"pw": "hunter2-secret"})
    kw = runner_kwargs(r, Path("/pdd"), Path("/tmp/x/secret-vars.json"))
    argv = shlex.split(kw["cmdline"])
    assert argv == ["--check", "--diff", "-e", json.dumps({"a": "1"}), "-e", "@/tmp/x/secret-vars.json"]
    assert kw["limit"] == "siwei:&app-siwei-1"
    assert "hunter2-secret" not in repr(kw)  # the secret goes by file, never in the runner's arguments
    assert "hunter2-secret" not in repr(r)


def test_limit_pattern():
    assert limit_pattern(None, None) is None
    assert limit_pattern("fengshan", None) == "fengshan"
    assert limit_pattern(None, "lb") == "lb"


def test_mask_event_replaces_secrets_everywhere():
    ev = {"stdout": "pw is s3cret", "event_data": {"res": {"msg": ["x s3cret y", 3]}, "n": 1}}
    assert mask_event(ev, ["s3cret"]) == {"stdout": "pw is ***", "event_data": {"res": {"msg": ["x *** y", 3]},
                                                                                  "n": 1}}


def test_tracker_masks_in_place_and_counts_like_the_recap():
    t = Tracker(secrets=["s3cret"])
    ok = {"event": "runner_on_ok", "uuid": "u1", "stdout": "s3cret",
          "event_data": {"host": "h1", "task": "T", "resolved_action": "m.x", "play": "P", "res": {"changed": True}}}
    assert t.handle(ok) is True
    assert ok["stdout"] == "***"  # the runner writes the dict it passed us, after this
    t.handle({"event": "runner_on_failed", "event_data": {"host": "h2", "task": "F", "res": {"msg": "boom s3cret"}}})
    t.handle({"event": "runner_on_failed", "event_data": {"host": "h2", "ignore_errors": True, "res": {}}})
    assert t.hosts["h1"]["ok"] == 1 and t.hosts["h1"]["changed"] == 1
    assert t.hosts["h2"]["failed"] == 1 and t.hosts["h2"]["ok"] == 1
    assert t.changed == [{"uuid": "u1", "host": "h1", "task": "T", "module": "m.x", "play": "P"}]
    assert t.failures == [{"host": "h2", "task": "F", "message": "boom ***"}]
    t.handle({"event": "playbook_on_stats", "event_data": {"ok": {"h1": 3}, "changed": {"h1": 1}, "failures": {"h2": 1},
                                                           "dark": {}, "processed": {"h1": 1, "h2": 1, "h3": 1},
                                                           "artifact_data": {"vm_drift": {}}}})
    assert t.final == {"h1": {"ok": 3, "changed": 1, "failed": 0, "unreachable": 0, "skipped": 0},
                       "h2": {"ok": 0, "changed": 0, "failed": 1, "unreachable": 0, "skipped": 0},
                       "h3": {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0}}
    assert t.stats_data == {"vm_drift": {}}


def facts(**kw) -> events.RunFacts:
    base = {"run_id": "r1", "user": "ops", "playbook": "lb-rolling.yml", "inventory": "lab", "site": "siwei",
            "limit": "siwei", "check": False, "diff": False, "revision": "abc123", "host": "mgmt1",
            "secret_vars": ["pw"]}
    return events.RunFacts(**{**base, **kw})


def test_events_are_valid_ecs_and_carry_names_not_values():
    start = events.run_start(facts())
    end = events.run_end(facts(), status="failed", rc=2, meaning="one or more hosts failed", duration_seconds=1.5,
                         hosts={"app-siwei-1": {"ok": 3, "changed": 2, "failed": 1, "unreachable": 0, "skipped": 0}},
                         changed_tasks=2, error="app-siwei-1: Drain: timeout")
    task = events.task_changed(facts(), event_uuid="u1", target="app-siwei-1", task="Drain", module="citydc.ops.x",
                               play="P")
    for ev in (start, end, task):
        validate_event(ev)
        assert ev["event"]["category"] == ["configuration"] and "change" in ev["event"]["type"]
    assert start["event"]["action"] == end["event"]["action"] == "playbook-run"
    assert start["event"]["outcome"] == "unknown" and end["event"]["outcome"] == "failure"
    assert end["citydc"]["playbook"]["secret_vars"] == ["pw"] and end["citydc"]["playbook"]["revision"] == "abc123"
    assert end["citydc"]["playbook"]["totals"]["failed"] == 1 and end["event"]["duration"] == 1_500_000_000
    assert task["event"]["action"] == "playbook-task-changed" and task["related"]["hosts"] == ["app-siwei-1"]
    assert len({start["event"]["id"], end["event"]["id"], task["event"]["id"]}) == 3
    assert events.run_start(facts())["event"]["id"] == start["event"]["id"]  # deterministic: a retry is stored once
    ok = events.run_end(facts(), status="successful", rc=0, meaning="success", duration_seconds=1, hosts={},
                        changed_tasks=0)
    assert ok["event"]["outcome"] == "success"


def test_parse_extra_and_secret_vars(monkeypatch, tmp_path):
    assert parse_extra_vars(("a=1", "b=x=y")) == {"a": "1", "b": "x=y"}
    with pytest.raises(click.BadParameter, match="NAME=VALUE"):
        parse_extra_vars(("1bad=3",))
    monkeypatch.setenv("PW_VAR", "value-from-env")
    f = tmp_path / "pw"
    f.write_text("value-from-file\n")
    assert parse_secret_vars(("a=env:PW_VAR", f"b=file:{f}")) == {"a": "value-from-env", "b": "value-from-file"}
    with pytest.raises(click.BadParameter) as exc:
        parse_secret_vars(("a=plain-password-pasted",))
    assert "plain-password-pasted" not in str(exc.value)
    with pytest.raises(click.BadParameter, match="a: environment variable NOPE_UNSET is not set"):
        parse_secret_vars(("a=env:NOPE_UNSET",))


def test_playbooks_are_listed_with_their_summary():
    books = dict(list_playbooks(PLAYBOOKS))
    assert {"lb-deploy.yml", "lb-rolling.yml", "vm-deploy.yml"} <= set(books)
    assert all(books.values())


def test_runner_kwargs_turn_host_key_checking_back_on(monkeypatch):
    monkeypatch.delenv("ANSIBLE_HOST_KEY_CHECKING", raising=False)
    monkeypatch.delenv("ANSIBLE_SSH_AGENT", raising=False)
    kw = runner_kwargs(req(), Path("/pdd"), None)
    assert kw["envvars"] == {"ANSIBLE_HOST_KEY_CHECKING": "True"}  # ansible-runner would set False
    kw = runner_kwargs(req(secret_vars={"ansible_ssh_private_key_passphrase": "pw"}), Path("/pdd"), Path("/s.json"))
    assert kw["envvars"]["ANSIBLE_SSH_AGENT"] == "auto" and "pw" not in json.dumps(kw)


def test_closing_a_reaped_child_does_not_sleep_but_a_running_one_still_does():
    import time

    import pexpect

    from citydc.play.runner import _no_delay_after_close

    original = pexpect.spawn.close
    with _no_delay_after_close():
        child = pexpect.spawn("true")
        while child.isalive():  # as ansible-runner's loop: the child has exited and been reaped
            time.sleep(0.01)
        started = time.perf_counter()
        child.close()
        assert time.perf_counter() - started < 0.05
        assert child.exitstatus == 0
        running = pexpect.spawn("sleep", ["30"])
        started = time.perf_counter()
        running.close(force=True)  # not reaped yet: ptyprocess keeps its delay before it terminates the child
        assert time.perf_counter() - started >= 0.1
        assert not running.isalive()
    assert pexpect.spawn.close is original


def test_a_check_mode_task_event_says_would_change_and_is_no_change():
    real = events.task_changed(facts(), event_uuid="u1", target="hv-siwei-1", task="Define", module="virt", play="P")
    dry = events.task_changed(facts(check=True), event_uuid="u1", target="hv-siwei-1", task="Define", module="virt",
                              play="P")
    validate_event(dry)
    assert real["event"]["type"] == ["change"] and " changed hv-siwei-1" in real["message"]
    assert dry["event"]["type"] == ["info"] and "would change hv-siwei-1" in dry["message"]
    assert "check mode" in dry["message"] and dry["citydc"]["playbook"]["check_mode"] is True
