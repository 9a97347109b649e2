"""Spill files: where batches go when the database cannot take them, until it can.

A spill file is append-only JSON lines, one :class:`WriteBatch` a line, named
``spill-<pid>-<ns>-<random>.jsonl`` in the first writable spill folder of the home (see
:attr:`Home.spill_dirs`). Each line carries a unique id and the id of its database.

Replay claims a file by renaming it (atomic, so two processes never replay the same
file; files of live processes are left to their owners, who may still be appending),
writes each line as its own transaction tagged with the line's id (recorded in the
database, so a crash mid-replay never duplicates a line), moves spilled media files into
the home, then deletes the file. Lines of another database (a home deleted and recreated
at the same path) are set aside, never replayed into the wrong runs.

Spill files are trusted only as far as their folder is: the folder in the system temp dir
has a predictable name, so another local user could create it first and plant lines. A
spill folder is therefore created with mode 0700 and used (for writing or replay) only if
:func:`folder_problem` finds nothing wrong: a real directory (not a symlink), owned by the
current user, writable by nobody else; anything else is skipped with a
:class:`SpillFolderWarning` naming the folder and why. Spill files must be regular files
owned by the user. Every path a line names is checked before it is used: a media row's
``path`` must stay inside the home's ``media/`` folder and a spilled media file
(``spilled_to``) must be a regular file inside one of the home's spill folders; a line
naming anything else is set aside as bad (like an undecodable one), and no file is moved.
Media files are moved without following symlinks.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import time
import uuid
import warnings
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import psutil

from runfleet.home import Home
from runfleet.store import codec
from runfleet.store.base import AlertRow, MediaRow, SeriesChunk, Store, WriteBatch

_CLAIM = ".replaying-"
_episode = {"name": ""}
_FOLDER_MODE = 0o700
_FILE_MODE = 0o600
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_warned: set[tuple[str, str]] = set()


class SpillFolderWarning(RuntimeWarning):
    """A spill folder or file was not used because it is not safely this user's own."""


class UnsafeSpillLine(ValueError):
    """A spill line names a path outside the places runfleet would have put it."""


def _uid() -> int | None:
    getuid = getattr(os, "getuid", None)  # POSIX only
    return getuid() if getuid is not None else None


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` must not be used as a spill folder, or None if it may (it exists, is
    a real directory rather than a symlink, is owned by the current user, and neither its
    group nor others may write to it)."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return "it does not exist"
    except OSError as exc:
        return f"it cannot be inspected ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    uid = _uid()
    if uid is not None and st.st_uid != uid:
        return f"it is owned by uid {st.st_uid}, not by this user (uid {uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"other users may write to it (mode {stat.S_IMODE(st.st_mode):o}); "
                f"check its files, then chmod 700 it")
    return None


def _file_problem(path: Path) -> str | None:
    """Why the spill file ``path`` must not be read, or None (a regular file of ours)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"it cannot be inspected ({exc.strerror or exc})"
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    uid = _uid()
    if uid is not None and st.st_uid != uid:
        return f"it is owned by uid {st.st_uid}, not by this user (uid {uid})"
    return None


def _warn_skip(what: Path, why: str) -> None:
    """Warn (once per process for each path and reason) that ``what`` was not used."""
    key = (str(what), why)
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(f"runfleet ignores spill folder or file {what}: {why}", SpillFolderWarning,
                  stacklevel=3)


def _make_folder(folder: Path) -> None:
    """Create ``folder`` (mode 0700) if missing; raise OSError if it is not safe to use."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(folder, _FOLDER_MODE)
        os.chmod(folder, _FOLDER_MODE)  # exactly 0700, whatever the umask
    except FileExistsError:
        pass
    problem = folder_problem(folder)
    if problem is not None:
        _warn_skip(folder, problem)
        raise PermissionError(f"spill folder {folder} is not used: {problem}")


def _safe_folders(home: Home) -> list[Path]:
    """The home's spill folders that exist and are safe to read (others are warned about)."""
    out: list[Path] = []
    for folder in home.spill_dirs:
        if not os.path.lexists(folder):
            continue
        problem = folder_problem(folder)
        if problem is None:
            out.append(folder)
        else:
            _warn_skip(folder, problem)
    return out


def _new_episode() -> str:
    """Start a new spill file name for this process (after its earlier files replayed)."""
    _episode["name"] = f"spill-{os.getpid()}-{time.time_ns()}-{uuid.uuid4().hex[:6]}.jsonl"
    return _episode["name"]


def _file_name() -> str:
    name = _episode["name"]
    if not name or not name.startswith(f"spill-{os.getpid()}-"):  # first use, or forked
        name = _new_episode()
    return name


def _encode(batch: WriteBatch, db_id: str) -> str:
    series = []
    for c in batch.series:
        vals = c.values.tolist() if isinstance(c.values, np.ndarray) else list(c.values)
        series.append({"run": c.run, "key": c.key, "kind": c.kind,
                       "steps": np.asarray(c.steps).tolist(),
                       "times": np.asarray(c.times).tolist(), "values": vals})
    return json.dumps({
        "id": uuid.uuid4().hex,
        "db": db_id,
        "created": batch.created,
        "series": series,
        "run_updates": {str(k): v for k, v in batch.run_updates.items()},
        "media": [m.__dict__ for m in batch.media],
        "alerts": [a.__dict__ for a in batch.alerts],
    }, allow_nan=True, default=str)


def _decode(line: str) -> WriteBatch:
    d = json.loads(line)
    series = []
    for c in d["series"]:
        kind = c["kind"]
        vals: Any = c["values"]
        if kind == codec.FLOAT:
            vals = np.array(vals, dtype=np.float64)
        elif kind == codec.INT:
            vals = np.array(vals, dtype=np.int64)
        elif kind == codec.BOOL:
            vals = np.array(vals, dtype=bool)
        series.append(SeriesChunk(c["run"], c["key"], kind, np.array(c["steps"], np.int64),
                                  np.array(c["times"], np.float64), vals))
    batch = WriteBatch(
        series=series,
        run_updates={int(k): v for k, v in d["run_updates"].items()},
        media=[MediaRow(**m) for m in d["media"]],
        alerts=[AlertRow(**a) for a in d["alerts"]],
    )
    batch.created = float(d.get("created", 0.0))
    batch.spill_name = str(d["id"])
    return batch


def write(home: Home, batch: WriteBatch, db_id: str) -> Path:
    """Append ``batch`` to this process's spill file; return its path or raise OSError.

    ``db_id`` identifies the database the batch belongs to: a line is only ever replayed
    into that database (a home deleted and recreated at the same path gets a new id).
    """
    line = _encode(batch, db_id) + "\n"
    last: OSError | None = None
    for folder in home.spill_dirs:
        try:
            _make_folder(folder)
            path = folder / _file_name()
            _append(path, line, sync=True)
            return path
        except OSError as exc:
            last = exc
    assert last is not None
    raise last


def media_path(home: Home, rel: Path) -> Path:
    """Where to keep a media file that cannot be written into the home (``rel`` is its
    path relative to the home, e.g. ``media/<project>/<run>/<file>``)."""
    folder = home.spill_dirs[-1]
    _make_folder(folder)
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _append(path: Path, text: str, sync: bool = False) -> None:
    """Append ``text`` to ``path`` (created 0600), never through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, _FILE_MODE)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def pending(home: Home) -> list[Path]:
    """Spill files waiting to be replayed (including claims of dead processes), in the
    spill folders that are safe to use (see :func:`folder_problem`)."""
    out: list[Path] = []
    for folder in _safe_folders(home):
        out.extend(p for p in folder.iterdir()
                   if p.name.startswith("spill-") and not p.name.endswith((".foreign",
                                                                           ".bad")))
    return sorted(out)


def own_pending(home: Home) -> list[Path]:
    """Spill files written or claimed by this process."""
    mine = f"spill-{os.getpid()}-"
    return [p for p in pending(home)
            if p.name.startswith(mine) or p.name.endswith(f"{_CLAIM}{os.getpid()}")]


def _owner_alive(pid_text: str) -> bool:
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    return pid != os.getpid() and psutil.pid_exists(pid)


def _claimable(path: Path) -> bool:
    """Files of live processes are theirs to replay (they may still be appending)."""
    if _CLAIM in path.name:
        return not _owner_alive(path.name.rsplit(_CLAIM, 1)[1])
    parts = path.name.split("-")
    return len(parts) < 2 or not _owner_alive(parts[1])


def replay(home: Home, store: Store) -> int:
    """Write every claimable spill file into ``store``; return the number of lines replayed.

    Lines already replayed (by id) are skipped; lines of another database are moved aside
    to ``<file>.foreign`` and lines that cannot be decoded, or that name a path outside
    the home's media folder or spill folders, to ``<file>.bad`` (kept, never deleted).
    Files that are not regular files owned by this user are left alone, with a warning. A
    file that fails to replay is given back for a later try.
    """
    done = 0
    replayed_own = False
    db_id = store.db_id
    for path in pending(home):
        if not _claimable(path):
            continue
        problem = _file_problem(path)
        if problem is not None:
            _warn_skip(path, problem)
            continue
        base = path.name.split(_CLAIM)[0]
        claimed = path.with_name(base + _CLAIM + str(os.getpid()))
        try:
            if path != claimed:
                path.rename(claimed)
        except OSError:
            continue  # another process claimed it first
        try:
            for line in _read_text(claimed).splitlines():
                if not line.strip():
                    continue
                try:
                    batch = _decode(line)
                    line_db = json.loads(line).get("db")
                    moves = _media_moves(home, batch)
                except (ValueError, KeyError, TypeError, AttributeError):
                    _set_aside(claimed.with_name(base + ".bad"), line)
                    continue
                if line_db != db_id:
                    _set_aside(claimed.with_name(base + ".foreign"), line)
                    continue
                assert batch.spill_name is not None
                if store.is_replayed(batch.spill_name):
                    continue
                _restore_media(home, moves)
                _drop_stale_updates(store, batch, batch.created)
                store.write(batch)
                done += 1
            claimed.unlink()
            replayed_own = replayed_own or base.startswith(f"spill-{os.getpid()}-")
        except Exception:
            with contextlib.suppress(OSError):
                claimed.rename(path)  # give it back for a later try
            raise
    if replayed_own:
        _new_episode()
    return done


def _read_text(path: Path) -> str:
    """The text of a claimed spill file, opened without following a symlink."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    with os.fdopen(fd, encoding="utf-8") as fh:
        return fh.read()


def _set_aside(path: Path, line: str) -> None:
    _append(path, line + "\n")


def _inside(path: Path, folder: Path) -> bool:
    """True if ``path`` is ``folder`` or below it (both already resolved)."""
    return path == folder or folder in path.parents


def _media_dest(home: Home, rel: Any) -> Path:
    """Where a media row's relative ``path`` lives in the home; UnsafeSpillLine if it would
    leave the home's media folder."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        raise UnsafeSpillLine(f"media path {rel!r} is not a relative path")
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or ".." in parts or parts[:1] != ("media",) or \
            len(parts) < 2:
        raise UnsafeSpillLine(f"media path {rel!r} is not inside the home's media folder")
    dest = home.root.joinpath(*parts)
    media = home.media_dir.resolve()
    if not _inside(dest.parent.resolve(), media):
        raise UnsafeSpillLine(f"media path {rel!r} leads outside {media}")
    return dest


def _media_source(home: Home, src: Any) -> Path:
    """The spilled media file ``src`` after checks: a regular file of this user inside one
    of the home's safe spill folders; UnsafeSpillLine otherwise."""
    if not isinstance(src, str) or not src or "\0" in src:
        raise UnsafeSpillLine(f"spilled media file {src!r} is not a path")
    path = Path(src)
    if not path.is_absolute() or ".." in path.parts:
        raise UnsafeSpillLine(f"spilled media file {src!r} is not an absolute path")
    parent = path.parent.resolve()
    if not any(_inside(parent, f.resolve()) for f in _safe_folders(home)):
        raise UnsafeSpillLine(f"spilled media file {src!r} is not in a spill folder of "
                              f"{home.root}")
    return parent / path.name


def _media_moves(home: Home, batch: WriteBatch) -> list[tuple[Path, Path]]:
    """Check every path ``batch`` names; return the (spilled file, destination) pairs to
    move. Raises UnsafeSpillLine, before anything is moved, if any path is unsafe."""
    moves: list[tuple[Path, Path]] = []
    for m in batch.media:
        dest = _media_dest(home, m.path)
        src = m.meta.pop("spilled_to", None)
        if src is None:
            continue
        source = _media_source(home, src)
        if os.path.lexists(source):  # gone: moved by a replay that crashed before commit
            problem = _file_problem(source)
            if problem is not None:
                raise UnsafeSpillLine(f"spilled media file {src!r}: {problem}")
        moves.append((source, dest))
    return moves


def _restore_media(home: Home, moves: list[tuple[Path, Path]]) -> None:
    """Move spilled media files into the home, never through a symlink: a source that is
    not a regular file of this user is left where it is (its row then names a missing
    file), and a destination's resolved folder must be inside the home's media folder."""
    media = home.media_dir.resolve()
    for src, dest in moves:
        problem = _file_problem(src)
        if problem is not None:
            if os.path.lexists(src):
                _warn_skip(src, problem)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not _inside(dest.parent.resolve(), media):
            _warn_skip(src, f"its destination {dest} leads outside {media}")
            continue
        _move_file(src, dest)


def _move_file(src: Path, dest: Path) -> None:
    """Move the regular file ``src`` to ``dest`` without following symlinks at either end
    (a rename; across file systems, a copy into a new file beside ``dest``, then a rename)."""
    try:
        os.replace(src, dest)  # rename(2) replaces a symlink at dest, never follows it
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    src_fd = os.open(src, os.O_RDONLY | _NOFOLLOW)
    try:
        dst_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, _FILE_MODE)
        with os.fdopen(dst_fd, "wb") as out, os.fdopen(src_fd, "rb", closefd=False) as inp:
            shutil.copyfileobj(inp, out)
    finally:
        os.close(src_fd)
    os.replace(tmp, dest)
    os.unlink(src)


def _drop_stale_updates(store: Store, batch: WriteBatch, created: float) -> None:
    """Run updates newer than the spilled batch win: never roll a summary or status back."""
    for rid in list(batch.run_updates):
        try:
            current = store.get_run(rid)
        except LookupError:
            del batch.run_updates[rid]
            continue
        if current.updated > created:
            del batch.run_updates[rid]
