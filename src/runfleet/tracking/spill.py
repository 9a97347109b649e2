"""Spill files: where batches go when the database cannot take them, until it can.

A spill file is append-only JSON lines, one :class:`WriteBatch` a line, named
``spill-<pid>-<ns>-<random>.jsonl`` in the first writable spill folder of the home (see
:attr:`Home.spill_dirs`). Replay claims a file by renaming it (atomic, so two processes never
replay the same file), writes each line as its own transaction tagged with
``<file>:<line>`` (recorded in the database, so a crash mid-replay never duplicates a line),
moves spilled media files into the home, then deletes the file.
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
_FILE_NAME = f"spill-{os.getpid()}-{time.time_ns()}-{uuid.uuid4().hex[:6]}.jsonl"


def _encode(batch: WriteBatch) -> str:
    series = []
    for c in batch.series:
        vals = c.values.tolist() if isinstance(c.values, np.ndarray) else list(c.values)
        series.append({"run": c.run, "key": c.key, "kind": c.kind,
                       "steps": np.asarray(c.steps).tolist(),
                       "times": np.asarray(c.times).tolist(), "values": vals})
    return json.dumps({
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
    return batch


def write(home: Home, batch: WriteBatch) -> Path:
    """Append ``batch`` to this process's spill file; return its path or raise OSError."""
    line = _encode(batch) + "\n"
    last: OSError | None = None
    for folder in home.spill_dirs:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / _FILE_NAME
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
    """Where to keep a media file that cannot be written into the home."""
    for folder in home.spill_dirs[1:]:
        path = folder / "media" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    raise OSError("no spill folder")


def pending(home: Home) -> list[Path]:
    """Spill files waiting to be replayed (including claims of dead processes)."""
    out: list[Path] = []
    for folder in home.spill_dirs:
        if folder.is_dir():
            out.extend(p for p in folder.iterdir() if p.name.startswith("spill-"))
    return sorted(out)


def _claimable(path: Path) -> bool:
    if _CLAIM not in path.name:
        return True
    try:
        pid = int(path.name.rsplit(_CLAIM, 1)[1])
    except ValueError:
        return True
    return pid == os.getpid() or not psutil.pid_exists(pid)


def replay(home: Home, store: Store) -> int:
    """Write every pending spill file into ``store``; return the number of lines replayed.

    Lines already replayed (by name) are skipped. Files that still fail stay for next time.
    """
    done = 0
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
            lines = claimed.read_text(encoding="utf-8").splitlines()
            for i, line in enumerate(lines):
                if not line.strip():
                    continue
                name = f"{base}:{i}"
                if store.is_replayed(name):
                    continue
                try:
                    batch = _decode(line)
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line from a crash mid-append holds no commit
                _restore_media(home, batch)
                _drop_stale_updates(store, batch, batch.created)
                batch.spill_name = name
                store.write(batch)
                done += 1
            claimed.unlink()
        except Exception:
            with contextlib.suppress(OSError):
                claimed.rename(path)  # give it back for a later try
            raise
    return done


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
