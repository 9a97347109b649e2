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
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from runfleet.home import Home
from runfleet.store import codec
from runfleet.store.base import AlertRow, MediaRow, SeriesChunk, Store, WriteBatch

_CLAIM = ".replaying-"
_episode = {"name": ""}


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
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / _file_name()
            with path.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            return path
        except OSError as exc:
            last = exc
    assert last is not None
    raise last


def media_path(home: Home, rel: Path) -> Path:
    """Where to keep a media file that cannot be written into the home (``rel`` is its
    path relative to the home, e.g. ``media/<project>/<run>/<file>``)."""
    path = home.spill_dirs[-1] / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def pending(home: Home) -> list[Path]:
    """Spill files waiting to be replayed (including claims of dead processes)."""
    out: list[Path] = []
    for folder in home.spill_dirs:
        if folder.is_dir():
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
    to ``<file>.foreign`` and lines that cannot be decoded to ``<file>.bad`` (kept, never
    deleted). A file that fails to replay is given back for a later try.
    """
    done = 0
    replayed_own = False
    db_id = store.db_id
    for path in pending(home):
        if not _claimable(path):
            continue
        base = path.name.split(_CLAIM)[0]
        claimed = path.with_name(base + _CLAIM + str(os.getpid()))
        try:
            if path != claimed:
                path.rename(claimed)
        except OSError:
            continue  # another process claimed it first
        try:
            for line in claimed.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    batch = _decode(line)
                    line_db = json.loads(line).get("db")
                except (ValueError, KeyError, TypeError):
                    _set_aside(claimed.with_name(base + ".bad"), line)
                    continue
                if line_db != db_id:
                    _set_aside(claimed.with_name(base + ".foreign"), line)
                    continue
                assert batch.spill_name is not None
                if store.is_replayed(batch.spill_name):
                    continue
                _restore_media(home, batch)
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


def _set_aside(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _restore_media(home: Home, batch: WriteBatch) -> None:
    for m in batch.media:
        src = m.meta.pop("spilled_to", None)
        if src and Path(src).exists():
            dest = home.root / m.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(src, dest)


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
