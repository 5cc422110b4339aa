"""The repository is the whole product: nothing in it reads a folder beside the checkout or an
absolute path of a developer's machine (the demo, the lab, the tests and the benchmarks included)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Spelled in pieces so this file does not match itself.
FORBIDDEN = re.compile("|".join([
    r"\.\./" + "shared",                       # the folder beside the checkout
    r"/work/" + r"(shared|main|wt)\b",         # developer machine paths
    r"""parents\[\d\]\s*/\s*["']""" + "shared",  # a path built up to a sibling folder
    r"""["']""" + "shared" + r"""["']\s*/\s*["']data""",
]))


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = [ROOT / name for name in out.decode().split("\0") if name]
    return [f for f in files if f.is_file() and f.suffix not in (".pcap", ".snmprec", ".bz2", ".png")]


def test_no_file_points_outside_the_repository():
    hits = []
    for path in tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for no, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()[:120]}")
    assert not hits, "paths outside the repository:\n" + "\n".join(hits)


def test_the_pattern_catches_what_it_must():
    # Negative control of the scanner itself, on lines of the kind it was written against.
    word = "sha" + "red"
    for line in (f'CAPTURES = Path(__file__).resolve().parents[5] / "{word}" / "data" / "netflow"',
                 'RECORDINGS = Path("/work/' + 'shared/data/snmp/real")',
                 "see ../" + "shared/data/snmp/README.md"):
        assert FORBIDDEN.search(line), line
    assert not FORBIDDEN.search("one shared config for both sites")
