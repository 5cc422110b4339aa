"""Keycloak's events read from its log (sso: kind log), on lines the lab's Keycloak 26.5.6 wrote.

data/keycloak-26.5.6-events.json.log is its JSON file log (``--log-file-output=json``) and
data/keycloak-26.5.6-console-syslog.log its console over the same run, in rsyslog's RFC 3339 file layout
(lab/keycloak.py): realm set-up (admin events), the audit client's logins, failed and successful password
logins, and usernames chosen to test the listener's quoting (``a"b<newline>c d``, ``back\\``,
``x", realmName="evil``, a tab, 小明).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.sso.authlog import LogPosition
from citydc.sso.kc_log import KcLogReader, LineError, parse_line, parse_pairs

DATA = Path(__file__).parent / "data"
JSON_LOG = DATA / "keycloak-26.5.6-events.json.log"
SYSLOG = DATA / "keycloak-26.5.6-console-syslog.log"
CITYDC = str(Path(sys.executable).with_name("citydc"))


def read(path: Path, fmt: str, pos: LogPosition | None = None) -> tuple[KcLogReader, list]:
    """Read the log as ``citydc audit auth`` does: each event processed (``done``) before the next is read."""
    reader = KcLogReader("kc-log", "siwei", path, fmt, pos or LogPosition())
    items = []
    for item in reader.items():
        items.append(item)
        reader.done()
    return reader, items


def facts(items: list) -> list[tuple]:
    out = []
    for it in items:
        doc = it.doc
        out.append((it.time_ms, it.stream, it.realm, doc["event"]["action"], doc["event"]["outcome"],
                    (doc.get("user") or {}).get("name"), (doc.get("source") or {}).get("ip"),
                    it.attempt is not None and (it.attempt.user, it.attempt.success)))
    return out


def test_both_shapes_of_one_run_give_the_same_events():
    json_reader, from_json = read(JSON_LOG, "keycloak-json")
    syslog_reader, from_syslog = read(SYSLOG, "syslog")
    # the reference reading: every line of the events' logger is one event
    expected = sum("org.keycloak.events" in line for line in JSON_LOG.read_text().splitlines())
    assert len(from_json) == json_reader.events == expected > 50
    assert json_reader.bad == syslog_reader.bad == 0
    assert facts(from_json) == facts(from_syslog)
    assert {it.stream for it in from_json} == {"events", "admin-events"}
    # other loggers, the JVM's warnings and a stack trace are passed over, not counted as unreadable
    assert len(SYSLOG.read_text().splitlines()) > expected


def test_values_are_read_as_keycloak_wrote_them():
    _, items = read(JSON_LOG, "keycloak-json")
    users = {f[5] for f in facts(items)}
    # quotes escaped by Keycloak, a trailing backslash not escaped, a line break and a tab made spaces
    assert {'a"b c d', "back\\", 'x", realmName="evil', "tab x", "小明"} <= users
    evil = next(it for it in items if it.doc["user"]["name"] == 'x", realmName="evil')
    assert evil.realm == "city"  # the name's forged field did not move the event to another realm
    failed = [it for it in items if it.doc["event"]["action"] == "sso-login" and it.attempt and
              not it.attempt.success]
    assert failed and all(it.doc["event"]["outcome"] == "failure" for it in failed)
    assert evil.doc["source"]["ip"] == "127.0.0.1" and evil.doc["event"]["outcome"] == "failure"
    unknown = next(it for it in failed if it.doc["user"]["name"] == "小明")
    assert unknown.doc["error"]["message"] == "user_not_found"
    assert unknown.doc["citydc"]["sso_auth"]["client"] == "city-batch"


def test_no_user_is_the_word_null():
    # Keycloak writes a missing user id as userId="null": no user_id detail is made of it
    _, items = read(JSON_LOG, "keycloak-json")
    unknown = next(it for it in items if it.doc["user"]["name"] == "小明")
    assert "user_id" not in unknown.doc["citydc"]["sso_auth"]


def test_pairs_end_only_at_a_quote_before_the_next_name():
    assert parse_pairs('type="LOGIN", username="a\\"b", x="1"') == {"type": "LOGIN", "username": 'a"b', "x": "1"}
    assert parse_pairs('username="back\\", ipAddress="10.0.0.1"') == {"username": "back\\",
                                                                      "ipAddress": "10.0.0.1"}
    assert parse_pairs('type="LOGIN", type="LOGOUT"') == {"type": "LOGIN"}  # the first of a repeated name
    with pytest.raises(LineError, match="quoted values"):
        parse_pairs("type=LOGIN, realmId=abc")  # Keycloak before 24, or quotes=none


def test_a_line_that_is_not_an_event_line_is_passed_over_and_a_broken_one_is_named():
    assert parse_line("WARNING: sun.misc.Unsafe::allocateMemory", "keycloak-json", "1") is None
    assert parse_line('{"loggerName":"org.keycloak.services","message":"x"}', "keycloak-json", "1") is None
    with pytest.raises(LineError, match="RFC 3339"):
        parse_line('{"loggerName":"org.keycloak.events","timestamp":"yesterday","message":"type=\\"LOGIN\\""}',
                   "keycloak-json", "1")
    with pytest.raises(LineError, match="TIME HOST TAG"):
        parse_line("2026-12-07 10:07:14,436 WARN  [org.keycloak.events] (t) type=\"LOGIN\"", "syslog", "1")


def test_a_run_resumes_where_the_last_stopped_and_reads_a_line_once_complete(tmp_path):
    lines = JSON_LOG.read_bytes().splitlines(keepends=True)
    log = tmp_path / "kc.json.log"
    log.write_bytes(b"".join(lines[:40]) + lines[40][:50])  # the 41st line half written
    _, whole = read(JSON_LOG, "keycloak-json")
    first_reader, first = read(log, "keycloak-json")
    with log.open("ab") as fh:
        fh.write(lines[40][50:] + b"".join(lines[41:]))
    second_reader, second = read(log, "keycloak-json", LogPosition(**first_reader.saved_position()))
    assert [it.event_id for it in first + second] == [it.event_id for it in read(log, "keycloak-json")[1]]
    assert facts(first + second) == facts(whole)
    assert first and second and not second_reader.pos.restarted


def test_a_rotated_log_is_read_from_its_start(tmp_path):
    log = tmp_path / "kc.json.log"
    shutil.copy(JSON_LOG, log)
    reader, _ = read(log, "keycloak-json")
    log.rename(tmp_path / "kc.json.log.1")  # as Keycloak does at its start
    log.write_bytes(b"".join(JSON_LOG.read_bytes().splitlines(keepends=True)[-3:]))
    again, new = read(log, "keycloak-json", LogPosition(**reader.saved_position()))
    assert again.pos.restarted and len(new) == 3


def test_the_place_saved_is_after_the_last_event_processed(tmp_path):
    # The merge reads each feed one event ahead: an event read but not processed when the state is saved is
    # read again by the next run, never skipped.
    reader = KcLogReader("kc-log", "siwei", JSON_LOG, "keycloak-json")
    it = reader.items()
    next(it)
    reader.done()
    after_first = reader.saved_position()["offset"]
    next(it)  # read, not processed
    assert reader.saved_position()["offset"] == after_first < reader.pos.offset
    reader.done()
    assert reader.saved_position()["offset"] == reader.pos.offset


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_lines_are_counted_never_raised(tmp_path, data):
    fmt, source = data.draw(st.sampled_from([("keycloak-json", JSON_LOG), ("syslog", SYSLOG)]))
    lines = [ln for ln in source.read_bytes().splitlines() if b"org.keycloak.events" in ln][:6]
    mutated = []
    for ln in lines:
        cut = data.draw(st.integers(0, len(ln)))
        junk = data.draw(st.binary(max_size=12))
        mutated.append(data.draw(st.sampled_from([ln, ln[:cut], ln[:cut] + junk + ln[cut:], ln[cut:]])))
    log = tmp_path / "kc.log"
    log.write_bytes(b"\n".join(mutated) + b"\n")
    reader, items = read(log, fmt)  # never raises
    assert reader.events == len(items) and reader.events + reader.bad <= len(mutated)
    assert all(it.doc["event"]["action"] for it in items)


# -- the command ----------------------------------------------------------------------------------------------------

def config(d: Path, log: Path, fmt: str) -> Path:
    cfg = {"sites": [{"id": "siwei", "name": "Siwei"}],
           "security_log": {"spool_dir": str(d / "spool"), "sink": {"kind": "sqlite", "path": str(d / "log.db")}},
           "sso": [{"kind": "log", "name": "kc-log", "log_path": str(log), "format": fmt, "site": "siwei",
                    "state_dir": str(d / "state"),
                    "auth": {"bruteforce_failures": 3, "working_days": ["mon", "tue", "wed", "thu", "fri", "sat",
                                                                        "sun"]}}]}
    path = d / "citydc.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def audit_auth(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CITYDC, "--config", str(cfg), "audit", "auth", *args], capture_output=True, text=True,
                          timeout=120, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COLUMNS": "200"})


def test_audit_auth_reads_a_keycloak_log_into_the_security_log_once(tmp_path):
    log = tmp_path / "kc.json.log"
    shutil.copy(JSON_LOG, log)
    cfg = config(tmp_path, log, "keycloak-json")
    proc = audit_auth(cfg, "--json")
    assert proc.returncode in (0, 1), proc.stderr
    (rep,) = json.loads(proc.stdout)["sources"]
    c = rep["sso"]["kc-log"]
    _, items = read(JSON_LOG, "keycloak-json")
    logins = [it for it in items if it.attempt is not None]
    assert (c["logins"], c["failure"]) == (len(logins), sum(not it.attempt.success for it in logins))
    assert c["admin_events"] == sum(it.stream == "admin-events" for it in items)
    assert c["log"] == str(log) and c["unreadable_lines"] == 0
    stored = stored_logins(cfg)
    # every login event, also those without a username (an unknown client), which the detections cannot use
    assert len(stored) == sum(it.doc["event"]["action"] == "sso-login" for it in items) > len(logins)
    assert {(e["user"]["name"], e["event"]["outcome"]) for e in stored  # a client's own login is no attempt
            if e.get("user") and e["citydc"]["sso_auth"]["keycloak_type"] != "CLIENT_LOGIN"} == {
        (it.attempt.user, "success" if it.attempt.success else "failure") for it in logins}
    proc = audit_auth(cfg, "--json")  # resumed: nothing read twice
    (rep,) = json.loads(proc.stdout)["sources"]
    assert (proc.returncode, rep["sso"]["kc-log"]["logins"]) == (0, 0)
    audit_auth(cfg, "--from-start")  # read again from the start: stored once (the same ids)
    assert len(stored_logins(cfg)) == len(stored)


def stored_logins(cfg: Path) -> list[dict]:
    """The sso-login events an auditor finds in the security log (once the spool is shipped to the store)."""
    subprocess.run([CITYDC, "--config", str(cfg), "log", "ship"], capture_output=True, timeout=120, check=True)
    proc = subprocess.run([CITYDC, "--config", str(cfg), "log", "search", "--action", "sso-login", "--since",
                           "2000-01-01T00:00:00Z", "--limit", "100000", "--json"], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(proc.stdout)


def test_audit_auth_names_an_unreadable_log_and_unreadable_lines(tmp_path):
    cfg = config(tmp_path, tmp_path / "missing.log", "syslog")
    proc = audit_auth(cfg)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"sso source kc-log: cannot read {tmp_path / 'missing.log'}: No such file or directory" in proc.stderr
    log = tmp_path / "missing.log"
    log.write_text(SYSLOG.read_text().replace('realmName="', 'realmName=""', 1))  # one event line broken
    proc = audit_auth(cfg)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr  # a login not audited is said in the exit too
    assert "1 event line(s) unreadable, the first at byte offset" in " ".join(proc.stderr.split())


# -- hostile and odd logs (third exploratory pass) ------------------------------------------------------------------

def renamed_users(text: str, prefix: str) -> str:
    """The same lines with other usernames and sequence numbers: what a log rewritten in place would hold."""
    text = re.sub(r'"sequence":(\d+)', lambda m: f'"sequence":{int(m.group(1)) + 100_000}', text)
    return text.replace('username=\\"', f'username=\\"{prefix}')


def test_a_log_truncated_and_rewritten_in_place_past_the_old_offset_is_read_anew(tmp_path):
    # logrotate's copytruncate: the same inode, and by the next run the log may have grown past the old offset
    log = tmp_path / "kc.json.log"
    shutil.copy(JSON_LOG, log)
    first_reader, first = read(log, "keycloak-json")
    new = renamed_users(JSON_LOG.read_text(), "zz-")
    with log.open("r+") as fh:
        fh.truncate(0)
        fh.write(new + new[:2000].replace("\n", " "))  # past the old offset, with a line not complete yet
    second_reader, second = read(log, "keycloak-json", LogPosition(**first_reader.saved_position()))
    assert second_reader.pos.restarted and len(second) == len(first)
    assert {it.doc["user"]["name"] for it in second if it.attempt} == {f"zz-{it.attempt.user}" for it in first
                                                                       if it.attempt}
    assert not {it.event_id for it in first} & {it.event_id for it in second}  # new lines, new ids


def test_a_fifo_or_a_device_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "kc.fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        proc = audit_auth(config(tmp_path, path, "keycloak-json"))  # hangs without O_NONBLOCK: a hang check
        assert proc.returncode == 1 and f"cannot read {path}: not a regular file" in proc.stderr


def test_crlf_line_ends_are_read(tmp_path):
    for fmt, source in (("syslog", SYSLOG), ("keycloak-json", JSON_LOG)):
        log = tmp_path / f"crlf-{fmt}.log"
        log.write_bytes(source.read_bytes().replace(b"\n", b"\r\n"))
        reader, items = read(log, fmt)
        assert reader.bad == 0 and facts(items) == facts(read(source, fmt)[1]), fmt


def test_two_log_sources_of_one_file_are_refused_at_load(tmp_path):
    cfg = config(tmp_path, JSON_LOG, "keycloak-json")
    data = yaml.safe_load(cfg.read_text())
    data["sso"].append({**data["sso"][0], "name": "kc-log-2"})
    cfg.write_text(yaml.safe_dump(data))
    proc = subprocess.run([CITYDC, "config", "check", str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "sso[1].log_path" in proc.stdout + proc.stderr
    assert "the same file as sso[0].log_path" in proc.stdout + proc.stderr


def test_a_damaged_state_is_set_aside_and_said(tmp_path):
    log = tmp_path / "kc.json.log"
    shutil.copy(JSON_LOG, log)
    cfg = config(tmp_path, log, "keycloak-json")
    state = tmp_path / "state" / "kc-log" / "events.json"
    assert audit_auth(cfg).returncode in (0, 1)
    saved = json.loads(state.read_text())
    state.write_text(json.dumps({**saved, "detector": {"fail_user": {"a": "zz"}}}))
    proc = audit_auth(cfg, "--json")
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr
    assert "the detections' windows are damaged" in " ".join(proc.stderr.split())
    assert json.loads(proc.stdout)["sources"][0]["sso"]["kc-log"]["logins"] == 0  # the place in the log was kept
    state.write_text("garbage{")
    proc = audit_auth(cfg, "--json")
    assert "damaged" in proc.stderr and "read from its start" in " ".join(proc.stderr.split())
    assert (state.parent / "events.json.damaged").read_text() == "garbage{"
    assert json.loads(proc.stdout)["sources"][0]["sso"]["kc-log"]["logins"] > 0


def test_a_missing_stats_log_does_not_stop_the_keycloak_log_of_its_group(tmp_path):
    log = tmp_path / "kc.json.log"
    shutil.copy(JSON_LOG, log)
    cfg = config(tmp_path, log, "keycloak-json")
    data = yaml.safe_load(cfg.read_text())
    data["ldap"] = [{"name": "dir1", "url": "ldap://127.0.0.1:1", "bind_dn": "cn=a,dc=x", "bind_password": "env:PW",
                     "base_dn": "dc=x", "start_tls": False, "allow_plain_bind": True, "site": "siwei",
                     "stats_log": str(tmp_path / "missing-stats.log"), "state_dir": str(tmp_path / "st")}]
    data["sso"][0]["ldap_source"] = "dir1"
    cfg.write_text(yaml.safe_dump(data))
    proc = audit_auth(cfg, "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"ldap source dir1: cannot read {tmp_path / 'missing-stats.log'}" in " ".join(proc.stderr.split())
    (rep,) = json.loads(proc.stdout)["sources"]
    assert rep["log_failed"] and rep["sso"]["kc-log"]["logins"] > 0 and rep["detections"]
    proc = audit_auth(cfg)
    assert "dir1: stats log not read" in proc.stdout
