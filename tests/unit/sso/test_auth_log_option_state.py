"""``citydc audit auth --log FILE`` reads another file of the directory without taking over the configured
stats_log's place in the state (found by the identity auditor's pass on slapd 2.5: after one --log run, the next
normal run read the whole stats log again and fired its old detections a second time)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.sso.test_audit_hardening import citydc, ldap_entry, stats_log, write_config


def read(cfg: Path, *args: str) -> tuple[int, int]:
    """Run the audit; return its binds and detections."""
    proc = citydc(cfg, "audit", "auth", "--json", *args)
    assert proc.returncode in (0, 1), proc.stderr
    (rep,) = json.loads(proc.stdout)["sources"]
    return rep["binds"], len(rep["detections"])


def test_a_log_option_run_and_the_configured_log_keep_their_own_positions(tmp_path):
    configured, other = tmp_path / "stats.log", tmp_path / "old-stats.log"
    stats_log(configured, "uid=a,dc=x", 6)                       # a brute force of a
    stats_log(other, "uid=b,dc=x", 4, start=0x6b10fd85)          # an older file: 4 binds of b
    cfg = write_config(tmp_path, ldap=[ldap_entry("dir1", 1, stats_log=str(configured),
                                                  state_dir=str(tmp_path / "st"))])
    binds, detections = read(cfg)
    assert binds == 6 and detections >= 1
    assert read(cfg, "--log", str(other))[0] == 4
    assert read(cfg) == (0, 0)                                    # nothing new: not the 6 binds again
    assert read(cfg, "--log", str(other)) == (0, 0)               # --log FILE resumes its own place too
    with configured.open("a") as f:                               # one more failure in the configured log
        t = f"{0x6b12fd85 + 10:08x}.00000000 0x7f"
        f.write(f"{t} conn=200 fd=12 ACCEPT from IP=10.10.2.9:5555 (IP=0.0.0.0:389)\n"
                f'{t} conn=200 op=0 BIND dn="uid=c,dc=x" method=128\n{t} conn=200 op=0 RESULT tag=97 err=49 text=\n')
    assert read(cfg)[0] == 1


def test_a_log_in_a_format_not_read_is_said_and_fails_the_run(tmp_path):
    log = tmp_path / "slapd.log"
    log.write_text("Dec  8 10:00:00 ldap1 slapd[123]: conn=1000 fd=12 ACCEPT from IP=10.10.2.9:5555 (IP=0.0.0.0:389)\n"
                   'Dec  8 10:00:00 ldap1 slapd[123]: conn=1000 op=0 BIND dn="uid=a,dc=x" method=128\n'
                   "Dec  8 10:00:00 ldap1 slapd[123]: conn=1000 op=0 RESULT tag=97 err=49 text=\n")
    cfg = write_config(tmp_path, ldap=[ldap_entry("dir1", 1, stats_log=str(log), state_dir=str(tmp_path / "st"))])
    proc = citydc(cfg, "audit", "auth")
    assert proc.returncode == 1, proc.stderr
    assert f"{log}: 3 line(s) and no bind in a format citydc reads" in proc.stderr.replace("\n", " ")
    stats_log(log, "uid=a,dc=x", 1)  # the same bind in slapd -d stats form: read, no warning
    proc = citydc(cfg, "audit", "auth", "--from-start")
    assert proc.returncode == 0 and "no bind in a format" not in proc.stderr, proc.stderr
