"""The LDAP audit's own plain-bind probe (a failed bind of a fixed DN per run) is not a brute force."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from citydc.config.models import AuthDetection
from citydc.sso.detect import Attempt, Detector
from citydc.sso.directory import PROBE_RDN

T0 = datetime(2026, 12, 8, 2, 10, tzinfo=UTC)


def test_five_audit_runs_in_ten_minutes_are_not_a_brute_force_of_the_probe():
    det = Detector(AuthDetection())
    probe = f"{PROBE_RDN},dc=city,dc=example"
    found = [d for i in range(8) for d in det.feed(Attempt(T0 + timedelta(seconds=30 * i), probe, "127.0.0.1", False))]
    assert found == []


def test_a_real_account_and_a_look_alike_dn_are_still_counted():
    det = Detector(AuthDetection(success_after_failures=1))
    user = "uid=sw-admin1,ou=people,dc=city,dc=example"
    found = [d.action for i in range(5) for d in det.feed(Attempt(T0 + timedelta(seconds=i), user, "10.0.0.9", False))]
    assert found == ["auth-bruteforce"]
    # a DN that only starts like the probe's RDN is another account
    other = f"{PROBE_RDN}x,dc=city,dc=example"
    found = [d.action for i in range(5) for d in det.feed(Attempt(T0 + timedelta(seconds=i), other, "10.0.0.9", False))]
    assert found == ["auth-bruteforce"]


def test_an_escaped_dn_is_one_account_however_slapd_and_the_baseline_spell_it():
    from citydc.sso.detect import account_key

    # slapd 2.5 logs the bind of the entry uid=lin\,mei as uid=lin\2Cmei; Keycloak names the user lin,mei
    logged = "uid=lin\\2Cmei,ou=people,ou=siwei,dc=city,dc=example"
    baseline = "uid=lin\\,mei,ou=people,ou=siwei,dc=city,dc=example"
    assert account_key(logged) == account_key(baseline) == account_key("Lin,Mei") == "lin,mei"
    assert account_key("uid=sw\\2Dadmin1,ou=people,dc=x") == account_key("uid=sw-admin1,ou=people,dc=x")
    assert account_key("cn=a\\,b,dc=x") == "cn=a\\,b,dc=x"
    # the off-hours login of such a privileged account is found
    det = Detector(AuthDetection(), privileged=[baseline])
    night = datetime(2026, 12, 8, 17, 0, tzinfo=UTC)  # 01:00 in Asia/Taipei
    assert [d.action for d in det.feed(Attempt(night, logged, "10.0.0.9", True))] == ["auth-offhours-privileged"]
