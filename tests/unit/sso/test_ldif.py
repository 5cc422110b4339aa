"""The streaming LDIF reader on ldapsearch-shaped output."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.sso.ldif import LdifError, _slow, parse, parse_chunks

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


def test_a_comment_with_a_colon_is_skipped():
    # ldapsearch -E pr=... writes "# pagedresults: cookie=..." between pages; the fast path once took it for
    # an attribute line and fell back to the careful path (or, inside an entry, read "# x" as an attribute).
    inside = "dn: a\n# note: inside\nuid: a\n\n"
    assert list(parse_chunks([inside.encode()])) == list(_slow(inside, 1)) == [("a", {"uid": ["a"]})]
    paged = "dn: a\nuid: a\n\n# pagedresults: cookie=AQ==\n\ndn: b\nuid: b\n\n"
    assert list(parse_chunks([paged.encode()])) == [("a", {"uid": ["a"]}), ("b", {"uid": ["b"]})]


_NAMES = st.sampled_from(["uid", "UID", "mail", "userPassword", "cn", "pwdLastSuccess", "x-y;lang-en"])
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
_VALUE = st.one_of(
    _TEXT.filter(lambda v: not v.startswith((" ", ":"))).map(lambda v: ("text", v)),
    st.binary(max_size=16).map(lambda b: ("b64", base64.b64encode(b).decode())))


def _line(name: str, value: tuple[str, str], space: bool) -> str:
    kind, v = value
    return f"{name}::{' ' if space else ''}{v}" if kind == "b64" else f"{name}:{' ' if space else ''}{v}"


def _fold(line: str, at: list[int]) -> str:
    # RFC 2849 folding: a line break followed by one space, anywhere after the first character.
    out, last = [], 0
    for i in sorted({a for a in at if 0 < a < len(line)}):
        out.append(line[last:i])
        last = i
    out.append(line[last:])
    return "\n ".join(out)


@st.composite
def _ldif(draw) -> str:
    paragraphs = []
    for _ in range(draw(st.integers(0, 5))):
        lines = [_line(draw(st.sampled_from(["dn", "DN"])), draw(_VALUE), draw(st.booleans()))]
        for _ in range(draw(st.integers(0, 5))):
            lines.append(_line(draw(_NAMES), draw(_VALUE), draw(st.booleans())))
        for _ in range(draw(st.integers(0, 2))):  # comments, some with colons, anywhere
            lines.insert(draw(st.integers(0, len(lines))), "#" + draw(st.sampled_from([" note", " a: b", ":", ""])))
        if draw(st.booleans()):
            lines = [_fold(ln, draw(st.lists(st.integers(1, 40), max_size=3))) for ln in lines]
        paragraphs.append("\n".join(lines))
        if draw(st.booleans()):
            paragraphs.append("# pagedresults: cookie=" + draw(st.sampled_from(["", "AQ==", "x:y"])))
    sep = draw(st.sampled_from(["\n\n", "\n\n\n"]))
    return sep.join(paragraphs) + "\n"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ldif(), st.lists(st.integers(1, 2000), max_size=6))
def test_the_fast_reader_equals_the_careful_one(text, cuts):
    data = text.encode()
    bounds = sorted({c for c in cuts if c < len(data)})
    chunks = [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True)]
    try:
        want = list(_slow(text + "\n", 1))
    except LdifError as exc:
        with pytest.raises(LdifError) as got:
            list(parse_chunks(chunks))
        assert str(got.value) == str(exc)
        return
    assert list(parse_chunks(chunks)) == want
