"""The report Prometheus's built TSDB is kept in the download cache and copied into a new lab directory."""

from __future__ import annotations

import json
from pathlib import Path

from citydc.lab.prometheus_report import STAMP, keep_blocks, restore_blocks

STAMP_A = {"month": "2026-11", "version": 1, "build": 3, "rules": "aaaa"}
STAMP_B = {"month": "2026-12", "version": 1, "build": 3, "rules": "aaaa"}


def _tsdb(path: Path, blocks: dict[str, bytes]) -> Path:
    """A TSDB directory as Prometheus leaves it: blocks (with meta.json), a WAL and a lock file."""
    for name, chunk in blocks.items():
        (path / name / "chunks").mkdir(parents=True)
        (path / name / "meta.json").write_text(json.dumps({"ulid": name}))
        (path / name / "chunks" / "000001").write_bytes(chunk)
    (path / "wal").mkdir(parents=True)
    (path / "wal" / "00000000").write_bytes(b"wal")
    (path / "lock").write_text("")
    return path


def test_blocks_kept_then_restored_into_an_empty_lab(tmp_path: Path) -> None:
    built = _tsdb(tmp_path / "built", {"01AAA": b"one", "01BBB": b"two"})
    cache = tmp_path / "cache"
    cache.mkdir()
    keep_blocks(built, cache, STAMP_A)

    data = tmp_path / "lab" / "data"
    assert restore_blocks(cache, data, STAMP_A)
    assert sorted(p.name for p in data.iterdir()) == ["01AAA", "01BBB", STAMP]
    assert (data / "01BBB" / "chunks" / "000001").read_bytes() == b"two"
    assert json.loads((data / STAMP).read_text()) == STAMP_A  # the lab's start sees a built TSDB


def test_another_stamp_is_not_restored_and_the_tsdb_is_left_alone(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    keep_blocks(_tsdb(tmp_path / "built", {"01AAA": b"one"}), cache, STAMP_A)
    data = _tsdb(tmp_path / "data", {"01OLD": b"old"})

    assert not restore_blocks(cache, data, STAMP_B)  # a new month (or rules) builds again
    assert (data / "01OLD" / "chunks" / "000001").read_bytes() == b"old"


def test_a_new_build_replaces_the_cached_one(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    keep_blocks(_tsdb(tmp_path / "a", {"01AAA": b"one"}), cache, STAMP_A)
    keep_blocks(_tsdb(tmp_path / "b", {"01CCC": b"three"}), cache, STAMP_B)

    assert len(list(cache.iterdir())) == 1  # one month kept, not one per month forever
    assert not restore_blocks(cache, tmp_path / "x", STAMP_A)
    assert restore_blocks(cache, tmp_path / "y", STAMP_B)
    assert (tmp_path / "y" / "01CCC" / "chunks" / "000001").read_bytes() == b"three"


def test_a_copy_cut_short_is_not_restored(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    keep_blocks(_tsdb(tmp_path / "a", {"01AAA": b"one"}), cache, STAMP_A)
    (next(cache.iterdir()) / STAMP).unlink()  # as a copy interrupted before its stamp was written

    assert not restore_blocks(cache, tmp_path / "data", STAMP_A)
