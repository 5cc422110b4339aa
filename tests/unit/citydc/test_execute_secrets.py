"""execute refuses a secret in argv where a program would take it, and only there: a short password that
happens to occur inside a path (``repo`` in ``/srv/repo2``) is no leak, and refusing it stopped every backup."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citydc import execute

LONG = "Hunter2-long-enough-secret"


@pytest.mark.parametrize(("secret", "arg"), [
    ("repo", "/tmp/probe/b/repo2"),             # the finding: the offsite password inside the repository path
    ("repo", "/srv/restic/repo"),               # a path component is not where a password goes
    ("x", "citydc.job=siwei-ldap"),             # a one-character password
    ("7", "--keep-daily"),
    ("siwei", "sftp:citydc@backup.siwei.example:/srv/r"),
    ("Hunter2-long", "/srv/Hunter2-lon"),       # a long secret's prefix is not the secret
])
def test_a_short_secret_occurring_by_coincidence_is_not_refused(secret, arg):
    assert execute.secret_in_argument(arg, secret) is None
    res = execute.run("echo", [sys.executable, "-c", "pass", arg], secrets=[secret])
    assert res.ok


@pytest.mark.parametrize(("secret", "arg", "where"), [
    ("repo", "repo", "the whole argument"),
    ("7", "7", "the whole argument"),
    ("hunter2", "--password=hunter2", "after '='"),
    ("hunter2", "s3.secret=hunter2,region=x", "after '='"),
    ("hunter2", "rest:https://restic:hunter2@backup.example/siwei", "user:password"),
    ("hunter2", "https://hunter2@backup.example/", "user:password"),
    ("p@ss:w", "rest:https://restic:p%40ss%3Aw@backup.example/", "user:password"),  # percent-encoded
    ("hunter2", "sftp.command=ssh -i key hunter2 -s sftp", "after '=', ':' or a space"),
    (LONG, f"/srv/x{LONG}y", "inside the argument"),  # long enough: refused anywhere
])
def test_a_secret_where_a_program_takes_it_is_refused(secret, arg, where):
    assert where in (execute.secret_in_argument(arg, secret) or "")
    with pytest.raises(execute.SecretInArgv, match="secret value appears in argv") as caught:
        execute.run("echo", ["echo", "ok", arg], secrets=["other", secret])
    assert caught.value.index == 1 and caught.value.argument == 2
    assert secret not in str(caught.value)


def test_stream_lines_refuses_before_starting():
    done = execute.Streamed()
    with pytest.raises(execute.SecretInArgv):
        list(execute.stream_lines("restic", [sys.executable, "-c", "print(1)", "--pw=hunter2"], done,
                                  secrets=["hunter2"]))
    assert done.rc is None


SECRET = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40)
WORDS = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=20)


@given(SECRET, WORDS, st.sampled_from(["--password=", "-o s3.key=", "user:", "ssh -i k "]),
       st.sampled_from(["", "@host/path", " -s sftp", ",region=x"]))
def test_every_way_of_putting_a_secret_into_an_argument_is_refused(secret, prefix, before, after):
    assert execute.secret_in_argument(f"{prefix}{before}{secret}{after}", secret) is not None


@given(WORDS, WORDS, WORDS)
def test_a_short_word_inside_a_path_is_never_refused(secret, head, tail):
    secret = secret[:execute.MIN_SUBSTRING_SECRET - 1]
    arg = f"/srv/{head}{secret}{tail}/x"
    assert execute.secret_in_argument(arg, secret) is None
