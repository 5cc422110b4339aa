"""Loading citydc.yaml: the findings of the exploratory test of the loader (/tmp/findings-config.md, 1-11).

Each test names the finding it guards: a secret in an error, a traceback instead of an error with
its line, a hang or unbounded read, a value `config check` accepted that a command crashed on, and
messages that did not say what to write instead.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from citydc.config import ConfigInvalid
from citydc.config.loader import MAX_CONFIG_BYTES, load, load_text

SITES = "sites:\n  - {id: siwei, name: Siwei}\n  - {id: fengshan, name: Fengshan}\n"


def errors_of(text: str, tmp_path: Path) -> list[str]:
    """Given config text, return every formatted error of loading it (none: it loaded)."""
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return errors_of_file(path)


def errors_of_file(path: Path) -> list[str]:
    try:
        load(path, check_files=False)
    except ConfigInvalid as exc:
        return [e.format(exc.filename) for e in exc.errors]
    return []


def only_error(text: str, tmp_path: Path) -> str:
    errors = errors_of(text, tmp_path)
    assert len(errors) == 1, errors
    return errors[0]


def job(extra: str = "", local: str = "repo", offsite: str | None = None) -> str:
    text = (SITES + "backup:\n  jobs:\n    - name: j1\n      site: siwei\n      sources: [/etc]\n" + extra
            + f'      local_repo: {{url: "{local}", password: env:RPW, site: siwei}}\n')
    if offsite is not None:
        text += f'      offsite_repo: {{url: "{offsite}", password: env:RPW, site: fengshan}}\n'
    return text


def auth(settings: str) -> str:
    return (SITES + "ldap:\n  - name: dir1\n    url: ldap://127.0.0.1:12101\n    bind_dn: cn=a,dc=x\n"
            "    bind_password: env:X\n    base_dn: dc=x\n    site: siwei\n    auth:\n" + settings)


# -- 1. the same repository twice: the REST password stays out of the error ---------------------------------

def test_same_repository_error_masks_the_rest_password(tmp_path):
    url = "rest:https://backup:S3cretRestPW@10.10.0.5:8000/j1"
    error = only_error(job(local=url, offsite=url + "/"), tmp_path)
    assert "S3cretRestPW" not in error
    assert "same repository as local_repo.url; expected a repository on the other site" in error
    assert error.startswith(f"{tmp_path}/c.yaml:10: backup.jobs[0].offsite_repo.url:")


# -- 2. a control character or NUL: an error with its line, not a traceback ----------------------------------

@pytest.mark.parametrize("char, code", [("\x01", "#x0001"), ("\x00", "#x0000")])
def test_a_control_character_is_an_error_with_its_line(tmp_path, char, code):
    error = only_error(f"sites:\n  - id: siwei\n    name: Si{char}wei\n", tmp_path)
    assert error == (f"{tmp_path}/c.yaml:3: <top>: not valid YAML at column 13: unacceptable character {code}: "
                     "special characters are not allowed")


def test_a_control_character_in_load_text_is_config_invalid():
    with pytest.raises(ConfigInvalid, match="unacceptable character"):
        load_text("sites: [\x07]\n")


# -- 3./4. only a regular file of bounded size is read -------------------------------------------------------

def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    found: list[list[str]] = []
    reader = threading.Thread(target=lambda: found.append(errors_of_file(fifo)), daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # unblock the open so the thread ends, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("loading a FIFO blocked")
    assert found == [[f"{fifo}: <top>: not a regular file (a FIFO); expected a YAML file"]]


def test_a_device_is_refused():
    assert errors_of_file(Path("/dev/zero")) == [
        "/dev/zero: <top>: not a regular file (a character device); expected a YAML file"]


def test_a_directory_is_refused(tmp_path):
    assert errors_of_file(tmp_path) == [f"{tmp_path}: <top>: not a regular file (a directory); expected a YAML file"]


def test_a_file_above_the_limit_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)  # sparse: costs no disk, and it is never read
    assert errors_of_file(big) == [f"{big}: <top>: file too large ({MAX_CONFIG_BYTES // 2**20}.0 MiB; "
                                    f"at most {MAX_CONFIG_BYTES // 2**20} MiB)"]


def test_a_file_at_the_limit_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(SITES + "#" * (MAX_CONFIG_BYTES - len(SITES) - 1) + "\n")
    assert errors_of_file(path) == []


# -- 5./6. auth.timezone and auth.working_hours: checked at load ---------------------------------------------

@pytest.mark.parametrize("zone", ["Mars/Olympus", "Asia"])
def test_auth_timezone_must_be_a_known_zone(tmp_path, zone):
    error = only_error(auth(f"      timezone: {zone}\n"), tmp_path)
    assert error == (f"{tmp_path}/c.yaml:12: ldap[0].auth.timezone: unknown time zone '{zone}'; "
                     "expected an IANA name such as Asia/Taipei or UTC")


def test_the_top_level_timezone_uses_the_same_check(tmp_path):
    assert only_error(SITES + "timezone: Mars/Olympus\n", tmp_path).endswith(
        "timezone: unknown time zone 'Mars/Olympus'; expected an IANA name such as Asia/Taipei or UTC")


@pytest.mark.parametrize("hours", ["25:00-99:99", "08:00-18:60", "24:00-18:00", "8:00-18:00", "08:00"])
def test_working_hours_must_be_times_of_day(tmp_path, hours):
    error = only_error(auth(f'      working_hours: "{hours}"\n'), tmp_path)
    assert error.startswith(f"{tmp_path}/c.yaml:12: ldap[0].auth.working_hours: expected HH:MM-HH:MM with times "
                            "from 00:00 to 23:59")


@pytest.mark.parametrize("hours", ["00:00-23:59", "22:00-06:00"])
def test_valid_working_hours_load_and_the_detector_takes_them(tmp_path, hours):
    from citydc.sso.detect import Detector

    errors = errors_of(auth(f'      timezone: UTC\n      working_hours: "{hours}"\n'), tmp_path)
    assert errors == []
    Detector(load(tmp_path / "c.yaml", check_files=False).config.ldap[0].auth)


# -- 7. pre_commands: each one a program --------------------------------------------------------------------

@pytest.mark.parametrize("commands, message", [
    ("[[]]", "pre_commands[0]: expected a command (a non-empty argv list"),
    ('[[""]]', "pre_commands[0]: expected a command: its first element, the program, is empty"),
    ('[[slapcat], ["", -n]]', "pre_commands[1]: expected a command: its first element, the program, is empty"),
])
def test_an_empty_pre_command_is_refused(tmp_path, commands, message):
    error = only_error(job(f"      pre_commands: {commands}\n"), tmp_path)
    assert f"c.yaml:9: backup.jobs[0].{message}" in error


def test_an_empty_drill_smoke_program_is_refused_and_no_command_is_fine(tmp_path):
    assert "drill_smoke_command: expected a command: its first element" in only_error(
        job('      drill_smoke_command: [""]\n'), tmp_path)
    assert errors_of(job("      drill_smoke_command: []\n      pre_commands: [[slapcat, -n, '1']]\n"), tmp_path) == []


# -- 9. an unknown key: the closest known key is named ------------------------------------------------------

def test_an_unknown_key_names_the_closest_key_of_its_model(tmp_path):
    errors = errors_of("sites:\n  - id: siwei\n    name: Siwei\n    netwroks: [10.0.0.0/8]\ndevcies: []\n"
                       "timzone: UTC\n" + "ldap:\n  - {name: d, url: 'ldap://h', bind_dn: a, bind_password: env:X,"
                       " base_dn: b, site: siwei, auth: {workin_hours: '08:00-18:00'}}\n", tmp_path)
    suggestions = {e.split(": ", 2)[1]: e.rsplit("; ", 1)[1] for e in errors}
    assert suggestions == {"sites[0].netwroks": 'did you mean "networks"?', "devcies": 'did you mean "devices"?',
                           "timzone": 'did you mean "timezone"?',
                           "ldap[0].auth.workin_hours": 'did you mean "working_hours"?'}


def test_an_unknown_key_far_from_any_gets_no_suggestion(tmp_path):
    assert only_error(SITES + "zzzzqqq: 1\n", tmp_path).endswith("unknown key (not part of the schema; check its "
                                                                   "spelling)")


# -- 10. a value YAML 1.1 read as another type: a hint to quote it ------------------------------------------

@pytest.mark.parametrize("value, kind", [("no", "a boolean"), ("on", "a boolean"), ("2026-12-07", "a date"),
                                         ("010", "a number")])
def test_a_yaml_11_scalar_where_text_belongs_says_to_quote_it(tmp_path, value, kind):
    error = only_error(f"sites:\n  - id: siwei\n    name: {value}\n", tmp_path)
    assert error.startswith(f"{tmp_path}/c.yaml:3: sites[0].name: expected text, got {kind} (YAML reads an unquoted")
    assert error.endswith("; quote it if it is text")


# -- 11. invalid UTF-8: its line and column ------------------------------------------------------------------

def test_invalid_utf8_is_reported_at_its_line_and_column(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("sites:\n  - id: siwei\n    name: Sü".encode() + b"\xffwei\n")
    # The column counts characters: the ü before the bad byte is one column, though two bytes.
    assert errors_of_file(path) == [f"{path}:3: <top>: not UTF-8 text at column 13 (invalid start byte)"]
