"""SASL binds in slapd 2.5's stats log (lines from a real slapd: EXTERNAL over ldapi, DIGEST-MD5 failures): the
BIND line has dn="", the identity a successful bind authenticated as is on the ``mech=`` line."""

from __future__ import annotations

from datetime import UTC, datetime

from citydc.config.models import AuthDetection
from citydc.sso.authlog import StatsParser
from citydc.sso.detect import Attempt, Detector

ADMIN = "uid=sw-admin1,ou=people,ou=siwei,dc=city,dc=example"
# 6b0f07a0 = 2026-12-01 17:45:04 UTC: 01:45 on a Wednesday in Asia/Taipei, outside the working hours
LOG = f"""\
6b0f07a0.2b0f70de 0x7fc71e3fd6c0 conn=1040 fd=16 ACCEPT from PATH=/run/slapd/ldapi (PATH=/run/slapd/ldapi)
6b0f07a0.2b96c113 0x7fc71ebfe6c0 conn=1040 op=0 BIND dn="" method=163
6b0f07a0.2b98e9d9 0x7fc71ebfe6c0 conn=1040 op=0 BIND authcid="sw-admin1" authzid="sw-admin1"
6b0f07a0.2b99767d 0x7fc71ebfe6c0 conn=1040 op=0 BIND dn="{ADMIN}" mech=DIGEST-MD5 bind_ssf=128 ssf=128
6b0f07a0.2b99ef2d 0x7fc71ebfe6c0 conn=1040 op=0 RESULT tag=97 err=0 qtime=0.000019 etime=0.000235 text=
6b0f07a0.38c9a113 0x7fc71e3fd6c0 conn=1069 fd=17 ACCEPT from IP=127.0.0.1:40000 (IP=127.0.0.1:14300)
6b0f07a0.38c9a114 0x7fc71e3fd6c0 conn=1069 op=0 BIND dn="" method=163
6b0f07a0.38cac99c 0x7fc71e3fd6c0 conn=1069 op=0 RESULT tag=97 err=14 text=SASL(0): successful result:
6b0f07a0.38f0bc41 0x7fc71dbfc6c0 conn=1069 op=1 BIND dn="" method=163
6b0f07a0.38f20c07 0x7fc71dbfc6c0 SASL [conn=1069] Failure: no secret in database
6b0f07a0.38f2a38b 0x7fc71dbfc6c0 conn=1069 op=1 RESULT tag=97 err=49 text=SASL(-13): user not found
6b0f07a0.39000000 0x7fc71dbfc6c0 conn=1070 fd=18 ACCEPT from IP=127.0.0.1:40001 (IP=127.0.0.1:14300)
6b0f07a0.39000001 0x7fc71dbfc6c0 conn=1070 op=0 BIND dn="{ADMIN}" method=128
6b0f07a0.39000002 0x7fc71dbfc6c0 conn=1070 op=0 BIND dn="{ADMIN.upper()}" mech=SIMPLE bind_ssf=0 ssf=0
6b0f07a0.39000003 0x7fc71dbfc6c0 conn=1070 op=0 RESULT tag=97 err=0 qtime=0.000017 etime=0.000145 text=
"""


def binds():
    parser = StatsParser()
    return [b for line in LOG.splitlines() for b in parser.feed(line)]


def test_a_sasl_bind_is_the_identity_it_authenticated_as():
    got = [(b.conn, b.dn, b.code, b.method) for b in binds()]
    assert got == [(1040, ADMIN, 0, "sasl"), (1069, "", 49, "sasl"), (1070, ADMIN, 0, "simple")]


def test_a_privileged_sasl_login_at_night_is_detected():
    det = Detector(AuthDetection(), privileged=[ADMIN])
    sasl = binds()[0]
    assert sasl.when.replace(microsecond=0) == datetime(2026, 12, 1, 17, 45, 4, tzinfo=UTC)
    found = det.feed(Attempt(sasl.when, sasl.user, sasl.source_ip, sasl.success))
    assert [d.action for d in found] == ["auth-offhours-privileged"]

