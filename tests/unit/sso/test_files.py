"""Baseline and accepted-risk files: typed, errors with file:line, expiry judged by date."""

from __future__ import annotations

from datetime import date

import pytest

from citydc.sso.files import FileInvalid, apply_acceptances, load_accepted, load_baseline
from citydc.sso.model import Finding
from citydc.sso.rules import RULES

GOOD = """\
accepted:
  - rule: LDAP-PWD-002
    subject: uid=a,dc=x
    reason: legacy ERP, CHG-1
    expires: 2026-12-31
    approved_by: CISO
"""


def test_load_and_apply_through_the_expiry_day(tmp_path):
    p = tmp_path / "acc.yaml"
    p.write_text(GOOD)
    (acc,) = load_accepted(p)
    f = Finding(RULES["LDAP-PWD-002"].info, "uid=a,dc=x", "weak")
    other = Finding(RULES["LDAP-PWD-002"].info, "uid=b,dc=x", "weak")
    on_the_day = apply_acceptances([f, other], [acc], date(2026, 12, 31))
    assert on_the_day.active == [other] and [x for x, _ in on_the_day.accepted] == [f]
    after = apply_acceptances([f, other], [acc], date(2027, 1, 1))
    assert after.active == [f, other] and [x for x, _ in after.expired] == [f]
    unused = apply_acceptances([other], [acc], date(2026, 1, 1))
    assert unused.unused == [acc]


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.replace("LDAP-PWD-002", "LDAP-NOPE"), r"acc.yaml:2: accepted\[0\]\.rule: unknown rule id 'LDAP-NOPE'"),
    (GOOD.replace("2026-12-31", "soon"), r"acc.yaml:5: accepted\[0\]\.expires"),
    (GOOD.replace("    approved_by: CISO\n", ""), r"acc.yaml:2: accepted\[0\]\.approved_by: Field required"),
    (GOOD + "    owner: me\n", r"acc.yaml:7: accepted\[0\]\.owner: unknown key"),
    ("accepted: [\n", r"acc.yaml:\d+: not valid YAML"),
])
def test_bad_accepted_file_names_line_and_field(tmp_path, text, expected):
    p = tmp_path / "acc.yaml"
    p.write_text(text)
    with pytest.raises(FileInvalid, match=expected):
        load_accepted(p)


def test_baseline(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_text("groups:\n  cn=g,dc=x:\n    - uid=a,dc=x\n")
    assert load_baseline(p) == {"cn=g,dc=x": ["uid=a,dc=x"]}
    p.write_text("groups:\n  cn=g,dc=x: uid=a\n")
    with pytest.raises(FileInvalid, match=r"b.yaml:2: groups\.cn=g,dc=x"):
        load_baseline(p)
    with pytest.raises(FileInvalid, match="cannot read"):
        load_baseline(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text", ["accepted:\n  - reason: *Hunter2Secret\n",
                                  "accepted:\n  - reason: !Hunter2Secret x\n", "a: &a [*a]\n", "a: 1\na: 2\n"])
def test_a_bad_accepted_file_never_echoes_its_text_nor_runs_away(tmp_path, text):
    p = tmp_path / "acc.yaml"
    p.write_text(text)
    with pytest.raises(FileInvalid) as exc:
        load_accepted(p)
    assert str(exc.value).startswith(f"{p}:") and "Hunter2" not in str(exc.value)
