"""userPassword schemes slapd stores (pw-sha2 and argon2 loaded, as in the lab): which are weak."""

from __future__ import annotations

from datetime import UTC, datetime

from citydc.config.models import LdapRuleSettings
from citydc.sso.model import Account
from citydc.sso.rules import RuleContext, ServerPosture, WeakHash, password_problem

WEAK = LdapRuleSettings().weak_schemes


def test_unsalted_sha2_is_weak_like_sha():
    # slappasswd -o module-load=pw-sha2 -h '{SHA512}': a bind with the password works on slapd 2.5
    for scheme in ("SHA256", "SHA384", "SHA512", "sha512"):
        assert password_problem(f"{{{scheme}}}GGAqAAAA", WEAK) == ("weak", scheme.upper())
    for strong in ("{SSHA256}x", "{SSHA512}x", "{ARGON2}$argon2id$v=19$m=65536,t=2,p=1$x$y",
                   "{PBKDF2-SHA512}10000$x$y", "{CRYPT}$6$x$y", "{SSHA}x"):
        assert password_problem(strong, WEAK) is None
    # only as weak as {SHA} is configured to be
    assert password_problem("{SHA512}x", ["MD5"]) is None


def test_the_finding_names_the_scheme_never_the_value():
    acct = Account("uid=a,dc=x", ["a"], ["1"], [], ["{SHA512}GGAqSecretDigest=="], None, None, None, None, None)
    ctx = RuleContext(LdapRuleSettings(), datetime.now(UTC), ServerPosture("ldap://x"))
    (f,) = WeakHash(ctx).account(acct)
    assert f.message == "password hashed with weak scheme SHA512" and "GGAq" not in repr(f)
