"""The streaming LDIF reader on ldapsearch-shaped output."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citydc.sso.ldif import LdifError, parse, parse_chunks

SAMPLE = """\
dn: uid=a,ou=people,dc=x
uid: a
userPassword:: e1NTSEF9b09zdHcvbEQ0b1E4TU1FbW5IZjExWFBhWUdrcXpWbGRpYVlqNWc9PQ==
mail: a@x
mail: a2@x

# a comment
dn:: dWlkPea4rOippixvdT1wZW9wbGUsZGM9eA==
cn: wrapped
  value
"""


def test_entries_base64_and_continuations():
    got = list(parse(SAMPLE.splitlines()))
    assert got[0] == ("uid=a,ou=people,dc=x", {"uid": ["a"], "mail": ["a@x", "a2@x"],
                                               "userpassword": ["{SSHA}oOstw/lD4oQ8MMEmnHf11XPaYGkqzVldiaYj5g=="]})
    assert got[1] == ("uid=測試,ou=people,dc=x", {"cn": ["wrapped value"]})


@pytest.mark.parametrize(("text", "where"), [("dn: x\nno colon here\n", "line 2"),
                                              ("uid: a\n", "line 1"), ("dn: x\nuserPassword:: ***\n", "line 2")])
def test_errors_name_the_line_and_never_the_value(text, where):
    with pytest.raises(LdifError, match=where) as exc:
        list(parse(text.splitlines()))
    assert "***" not in str(exc.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("dn:uid= ,\n#abc:AQ==")), max_size=200))
def test_any_input_gives_entries_or_ldif_error(text):
    try:
        for dn, attrs in parse(text.splitlines()):
            assert isinstance(dn, str) and all(isinstance(v, list) for v in attrs.values())
    except LdifError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, len(SAMPLE)), max_size=8))
def test_any_chunking_gives_the_same_entries(cuts):
    data = SAMPLE.encode()
    bounds = sorted(set(cuts))
    chunks = [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True)]
    assert list(parse_chunks(chunks)) == list(parse(SAMPLE.splitlines()))


def test_a_bad_line_after_good_entries_raises_without_yielding_twice():
    text = "dn: a\nuid: a\n\ndn: b\nuid: b\n\ndn: c\nbroken line\n\n"
    seen = []
    with pytest.raises(LdifError, match="line 8"):
        for dn, _ in parse_chunks([text.encode()]):
            seen.append(dn)
    assert seen == []  # the block is judged as a whole: nothing half-read is passed on
