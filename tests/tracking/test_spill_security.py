"""Spill files are replayed only from this user's own private folders, and a spill line can
never make replay write or move a file outside the home."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import runfleet
from runfleet.home import Home
from runfleet.store import codec
from runfleet.store.base import MediaRow, SeriesChunk, WriteBatch
from runfleet.store.sqlite import SQLiteStore
from runfleet.tracking import homes, spill


@pytest.fixture
def tracked(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Home, SQLiteStore]]:
    """A home with run ``p/x`` (``v`` = [1.0]), its open store, and a clean temp spill
    folder (removed afterwards: it lives in the shared system temp dir)."""
    monkeypatch.setattr(spill, "_warned", set(), raising=False)  # once per process
    runfleet.init(project="p", dir=home, id="x")
    runfleet.log({"v": 1.0})
    runfleet.finish()
    h = Home.resolve(home)
    temp = h.spill_dirs[-1]
    _remove(temp)
    yield h, homes.get(h).store
    _remove(temp)


def _remove(folder: Path) -> None:
    if folder.is_symlink():
        folder.unlink()
    elif folder.exists():
        folder.chmod(0o700)
        shutil.rmtree(folder)


def _rid(store: SQLiteStore) -> int:
    record = store.find_run("p", id="x")
    assert record is not None
    return record.rid


def _points(rid: int, value: float) -> WriteBatch:
    return WriteBatch(series=[SeriesChunk(rid, "v", codec.FLOAT, np.array([1]),
                                          np.array([1.7e9]), np.array([value]))])


def _media_line(rid: int, path: str, spilled_to: str | None) -> WriteBatch:
    meta: dict[str, object] = {"caption": None}
    if spilled_to is not None:
        meta["spilled_to"] = spilled_to
    return WriteBatch(media=[MediaRow(rid, "img", 1, "image", path, meta, time.time())])


def _plant(folder: Path, lines: list[str]) -> Path:
    """Write a spill file into ``folder`` as another process would (not through spill.write)."""
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "spill-planted-1-abcdef.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p)] = f"-> {os.readlink(p)}"
        elif p.is_file():
            out[str(p)] = p.read_bytes()
    return out


def test_planted_lines_never_touch_files_outside_the_home(
        tracked: tuple[Home, SQLiteStore], tmp_path: Path) -> None:
    h, store = tracked
    rid = _rid(store)
    folder = h.spill_dirs[-1]  # the predictable folder in the system temp dir
    folder.mkdir(mode=0o700)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious")
    (outside / "secret.png").write_bytes(b"secret")
    payload = folder / "payload.png"
    payload.write_bytes(b"evil")
    (folder / "link.png").symlink_to(outside / "victim.txt")
    before = _snapshot(outside)
    climb = os.path.relpath(outside / "victim.txt", h.root)  # ../outside/victim.txt
    assert climb.startswith("..")
    db = store.db_id
    lines = [
        spill._encode(_media_line(rid, f"media/../{climb}", str(payload)), db),  # ../ path
        spill._encode(_media_line(rid, str(outside / "abs.txt"), str(payload)), db),  # absolute
        spill._encode(_media_line(rid, "media/p/x/a.png", str(outside / "secret.png")), db),
        spill._encode(_media_line(rid, "media/p/x/b.png", f"{folder}/../{payload.name}"), db),
        spill._encode(_media_line(rid, "media/p/x/c.png", str(folder / "link.png")), db),
        spill._encode(_points(rid, 2.0), db),  # the run's other data: must still replay
    ]
    planted = _plant(folder, lines)

    assert spill.replay(h, store) == 1

    assert _snapshot(outside) == before  # nothing outside the home changed
    assert not (outside / "abs.txt").exists()
    assert payload.read_bytes() == b"evil" and (folder / "link.png").is_symlink()
    assert not (h.media_dir / "p" / "x").exists()  # no media moved into the home either
    assert not planted.exists()
    bad = folder / "spill-planted-1-abcdef.jsonl.bad"
    assert bad.read_text().splitlines() == lines[:5]  # set aside, kept for inspection
    assert store.media(rid) == []
    assert runfleet.Api(h.root).run("p", "x").history()["v"].tolist() == [1.0, 2.0]


def test_spilled_media_of_the_home_still_replays(tracked: tuple[Home, SQLiteStore]) -> None:
    h, store = tracked
    rid = _rid(store)
    rel = "media/p/x/img_1_0123abcd.png"
    kept = spill.media_path(h, Path(rel))  # where the writer keeps an unwritable media file
    kept.write_bytes(b"png bytes")
    spill.write(h, _media_line(rid, rel, str(kept)), store.db_id)
    assert stat.S_IMODE(h.spill_dirs[-1].stat().st_mode) == 0o700
    assert spill.replay(h, store) == 1
    assert (h.root / rel).read_bytes() == b"png bytes" and not kept.exists()
    assert [m.path for m in store.media(rid)] == [rel]
    assert "spilled_to" not in store.media(rid)[0].meta


def test_media_moves_across_file_systems_copy_without_following_links(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src.png"
    src.write_bytes(b"data")
    dest = tmp_path / "dest.png"
    real_replace = os.replace
    calls: list[str] = []

    def replace(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
        calls.append(str(a))
        if len(calls) == 1:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(a, b)

    monkeypatch.setattr(spill.os, "replace", replace)
    spill._move_file(src, dest)
    assert dest.read_bytes() == b"data" and not src.exists() and len(calls) == 2


@pytest.mark.parametrize("how", ["world-writable", "foreign-owner", "symlink"])
def test_unsafe_spill_folders_are_skipped_with_a_warning(
        tracked: tuple[Home, SQLiteStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        how: str) -> None:
    h, store = tracked
    folder = h.spill_dirs[-1]
    real = tmp_path / "real-folder" if how == "symlink" else folder
    planted = _plant(real, [spill._encode(_points(_rid(store), 2.0), store.db_id)])
    if how == "symlink":
        folder.symlink_to(real, target_is_directory=True)
        reason = "symbolic link"
    elif how == "world-writable":
        folder.chmod(0o777)
        reason = "other users may write to it"
    else:  # as if another user had created the folder first (tests may not run as root)
        uid = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: uid + 4242)
        reason = "owned by uid"
    with pytest.warns(spill.SpillFolderWarning, match=reason) as record:
        assert spill.replay(h, store) == 0
    assert any(str(folder) in str(w.message) for w in record)
    monkeypatch.undo()
    assert planted.exists()  # left alone, neither replayed nor deleted
    assert runfleet.Api(h.root).run("p", "x").history()["v"].tolist() == [1.0]


def test_spill_files_that_are_not_regular_files_are_skipped(
        tracked: tuple[Home, SQLiteStore], tmp_path: Path) -> None:
    h, store = tracked
    folder = h.spill_dirs[0]  # <home>/spill
    folder.mkdir(mode=0o700, exist_ok=True)
    elsewhere = tmp_path / "lines.jsonl"
    elsewhere.write_text(spill._encode(_points(_rid(store), 2.0), store.db_id) + "\n")
    link = folder / "spill-planted-1-abcdef.jsonl"
    link.symlink_to(elsewhere)
    with pytest.warns(spill.SpillFolderWarning, match="not a regular file"):
        assert spill.replay(h, store) == 0
    assert link.is_symlink() and elsewhere.exists()
    assert runfleet.Api(h.root).run("p", "x").history()["v"].tolist() == [1.0]


def test_a_refused_temp_folder_is_not_written_to(
        tracked: tuple[Home, SQLiteStore], monkeypatch: pytest.MonkeyPatch) -> None:
    h, store = tracked
    folder = h.spill_dirs[-1]
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    # The home's own spill folder is unusable too (a file stands where it would be).
    h.spill_dirs[0].write_text("not a folder")
    with pytest.warns(spill.SpillFolderWarning) as record, \
            pytest.raises(OSError, match="not used"):
        spill.write(h, _points(_rid(store), 2.0), store.db_id)
    messages = [str(w.message) for w in record]
    assert any(str(folder) in m and "other users may write" in m for m in messages)
    assert any(str(h.spill_dirs[0]) in m and "not a directory" in m for m in messages)
    assert list(folder.iterdir()) == []
