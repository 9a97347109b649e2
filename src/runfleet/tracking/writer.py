"""The per-process background writer: batches points and writes them without losing any.

``log()`` appends values to its run's :class:`PointBuffer` and returns. Every ``interval``
seconds (or sooner when a buffer grows), the writer thread takes every buffer and the queue
of run updates, turns columns into numpy chunks per (run, key), saves media files, folds
the points into run summaries, and writes everything in one transaction. A locked
database is retried with exponential backoff; a database that keeps failing (full or
read-only disk, I/O errors) gets the batch appended to a spill file (see
:mod:`runfleet.tracking.spill`), replayed as soon as writes succeed again or on the next
open of the home. ``flush()`` waits until all that was logged before it is durable.

What a ``kill -9`` can lose: points queued since the last flush, i.e. at most ``interval``
seconds of logging (0.5 s by default). Everything flushed is committed in SQLite's WAL.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runfleet.home import Home
from runfleet.store import codec
from runfleet.store.base import AlertRow, MediaRow, SeriesChunk, Store, StoreBusyError, WriteBatch
from runfleet.tracking import spill
from runfleet.tracking.buffer import Block, PointBuffer
from runfleet.tracking.media import Media
from runfleet.tracking.summary import Summary
from runfleet.tracking.text import escape_surrogates

DEFAULT_INTERVAL_S = 0.5
WAKE_AT_RECORDS = 50_000  # wake the writer early when a run has this many log() calls pending
BUSY_DEADLINE_S = 120.0  # give up retrying a locked database and spill after this long
ERROR_RETRIES = 3  # other database errors: retries before spilling
HEARTBEAT_S = 10.0
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class RunfleetWriteWarning(RuntimeWarning):
    """Points could not be written to the database yet; they were kept elsewhere."""


@dataclass
class RunTarget:
    """What the writer needs to know about a run it writes for."""

    rid: int
    project: str
    run_id: str
    summary: Summary
    metadata: dict[str, Any] = field(default_factory=dict)
    metadata_dirty: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    buffer: PointBuffer = field(default_factory=PointBuffer)


@dataclass
class _Update:
    rid: int
    fields: dict[str, Any]


@dataclass
class _Alert:
    row: AlertRow


@dataclass
class _Barrier:
    done: threading.Event = field(default_factory=threading.Event)


def kind_of(value: Any) -> str:
    """The storage kind of one normalised value."""
    t = type(value)
    if t is float:
        return codec.FLOAT
    if t is bool:
        return codec.BOOL
    if t is int:
        return codec.INT if _INT64_MIN <= value <= _INT64_MAX else codec.JSON
    if isinstance(value, dict):
        return codec.MEDIA
    return codec.JSON


def _column_kinds(col: list[Any]) -> tuple[str, Any] | None:
    """Fast path: the whole column is one numeric kind; return (kind, array) or None."""
    types = set(map(type, col))
    if types == {float}:
        return codec.FLOAT, np.fromiter(col, dtype=np.float64, count=len(col))
    if types == {int}:
        try:
            return codec.INT, np.array(col, dtype=np.int64)
        except OverflowError:
            return None
    if types == {bool}:
        return codec.BOOL, np.array(col, dtype=bool)
    return None


class Writer:
    """Background writer for one home in one process; shared by all runs of the process."""

    def __init__(self, store: Store, home: Home, interval: float = DEFAULT_INTERVAL_S) -> None:
        self.store = store
        self.home = home
        self.interval = interval
        self._queue: deque[Any] = deque()
        self._targets: dict[int, RunTarget] = {}
        self._wake = threading.Event()
        self._stop = False
        self._stuck: list[WriteBatch] = []  # batches neither written nor spilled
        self._spilled = False
        self._last_heartbeat = 0.0
        self._write_lock = threading.Lock()
        self._forked = False  # set in a fork()ed child: the parent owns the buffers
        self._media_spilled = False  # a media file of this batch lives in the spill folder
        self.on_error: Callable[[str], None] | None = None
        self._thread = threading.Thread(target=self._loop, name="runfleet-writer", daemon=True)
        self._thread.start()

    # -- producer side (any thread) -----------------------------------------------------------
    def add_target(self, target: RunTarget) -> None:
        """Register a run so its summary and metadata are persisted."""
        self._targets[target.rid] = target

    def remove_target(self, rid: int) -> None:
        """Forget a run (after its last flush)."""
        self._targets.pop(rid, None)

    def wake(self) -> None:
        """Ask the writer thread to flush now rather than at the next interval."""
        self._wake.set()

    def update_run(self, rid: int, **fields: Any) -> None:
        """Queue run column updates (status, config, ...), applied in order with points."""
        self._queue.append(_Update(rid, fields))

    def alert(self, row: AlertRow) -> None:
        """Queue an alert row."""
        self._queue.append(_Alert(row))

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything queued before this call is written or spilled."""
        if not self._thread.is_alive():
            self._drain_and_write()
            return True
        barrier = _Barrier()
        self._queue.append(barrier)
        self._wake.set()
        return barrier.done.wait(timeout)

    def close(self) -> None:
        """Flush and stop the thread."""
        self._stop = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._drain_and_write()

    # -- writer thread --------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop:
                break
            try:
                self._drain_and_write()
            except Exception as exc:  # the thread must survive; record and go on
                self._warn(f"runfleet writer error: {exc!r}")

    def _drain_and_write(self) -> None:
        if self._forked:
            return
        with self._write_lock:
            q = self._queue
            items = [q.popleft() for _ in range(len(q))]
            barriers = [it for it in items if type(it) is _Barrier]
            try:
                batch = self._build(items)
                now = time.time()
                if now - self._last_heartbeat >= HEARTBEAT_S:
                    self._last_heartbeat = now
                    for rid in list(self._targets):
                        batch.run_updates.setdefault(rid, {}).setdefault("heartbeat", now)
                self._persist(batch, force_spill=self._media_spilled)
                self._media_spilled = False
            except Exception as exc:  # a bug here must neither kill the thread nor hang flush()
                self._warn(f"runfleet writer failed on a batch: {exc!r}")
            finally:
                for b in barriers:
                    b.done.set()

    def _build(self, items: list[Any]) -> WriteBatch:
        batch = WriteBatch()
        for item in items:
            if type(item) is _Update:
                batch.run_updates.setdefault(item.rid, {}).update(item.fields)
            elif type(item) is _Alert:
                batch.alerts.append(item.row)
        for rid, target in list(self._targets.items()):
            blocks = target.buffer.take()
            if blocks:
                try:
                    self._add_blocks(batch, rid, blocks)
                except Exception as exc:  # one run's bad data must not sink the others
                    self._alert_failure(batch, rid, None, f"points could not be stored: {exc!r}")
            dirty = target.summary.take_dirty()
            with target.lock:
                if dirty is not None:
                    values, aggregates = dirty
                    target.metadata["summary_state"] = aggregates
                    target.metadata_dirty = True
                    batch.run_updates.setdefault(rid, {})["summary"] = values
                if target.metadata_dirty:
                    target.metadata_dirty = False
                    batch.run_updates.setdefault(rid, {})["metadata"] = dict(target.metadata)
        return batch

    def _add_blocks(self, batch: WriteBatch, rid: int, blocks: dict[tuple[str, ...], Block]
                    ) -> None:
        """Turn a run's buffered blocks into one chunk per (key, kind), in logging order."""
        parts: dict[str, list[tuple[Any, ...]]] = {}
        for keys, block in blocks.items():
            steps = np.array(block.steps, dtype=np.int64)
            times = np.array(block.times, dtype=np.float64)
            for key, col in zip(keys, block.cols):
                parts.setdefault(key, []).append((block.seq, steps, times, col))
        for key, plist in parts.items():
            self._add_series(batch, rid, key, plist)

    def _add_series(self, batch: WriteBatch, rid: int, key: str,
                    plist: list[tuple[Any, ...]]) -> None:
        if len(plist) == 1:
            _, steps, times, col = plist[0]
        else:  # the key was logged in payloads of several shapes: restore logging order
            order = np.argsort(np.concatenate([np.asarray(p[0]) for p in plist]),
                               kind="stable")
            steps = np.concatenate([p[1] for p in plist])[order]
            times = np.concatenate([p[2] for p in plist])[order]
            col_all = [v for p in plist for v in p[3]]
            col = [col_all[o] for o in order.tolist()]
        fast = _column_kinds(col)
        target = self._targets.get(rid)
        if fast is not None:
            kind, arr = fast
            batch.series.append(SeriesChunk(rid, key, kind, steps, times, arr))
            if target is not None:
                target.summary.apply(key, arr, col[-1])
            return
        values = [self._save_media(batch, rid, key, int(steps[i]), float(times[i]), v)
                  if isinstance(v, Media) else v for i, v in enumerate(col)]
        kinds = [kind_of(v) for v in values]
        for kind in dict.fromkeys(kinds):
            sel = [i for i, k in enumerate(kinds) if k == kind]
            vals: Any = [values[i] for i in sel]
            if kind in (codec.FLOAT, codec.INT, codec.BOOL):
                dtype = {codec.FLOAT: np.float64, codec.INT: np.int64, codec.BOOL: bool}[kind]
                vals = np.array(vals, dtype=dtype)
            batch.series.append(SeriesChunk(rid, key, kind, steps[sel], times[sel], vals))
            if target is not None:
                target.summary.apply(key, vals, values[-1])

    def _save_media(self, batch: WriteBatch, rid: int, key: str, step: int, when: float,
                    media: Media) -> dict[str, Any]:
        target = self._targets.get(rid)
        project = target.project if target else "_"
        run_id = target.run_id if target else str(rid)
        rel = Path("media") / _safe_name(project) / _safe_name(run_id) / \
            f"{_safe_name(key)}_{step}_{uuid.uuid4().hex[:8]}{media.extension}"
        ref: dict[str, Any] = {"_type": media.type_name, "path": rel.as_posix()}
        try:
            path = self.home.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            meta = media.write(path)
        except OSError as exc:
            try:
                path = spill.media_path(self.home, rel)
                meta = media.write(path)
                meta["spilled_to"] = str(path)
                self._media_spilled = True  # the batch must be replayed to move the file
                self._warn(f"cannot write media to {self.home.root} ({exc}); kept it at {path}")
            except OSError as exc2:
                self._alert_failure(batch, rid, step, f"media {key!r} at step {step} lost: {exc2}")
                return {"_type": media.type_name, "error": str(exc2)}
        except Exception as exc:  # bad media data must not stop logging
            self._alert_failure(batch, rid, step, f"media {key!r} at step {step}: {exc!r}")
            return {"_type": media.type_name, "error": repr(exc)}
        ref.update({k: v for k, v in meta.items() if k != "spilled_to"})
        batch.media.append(MediaRow(rid, key, step, media.type_name, rel.as_posix(), meta, when))
        return ref

    def _alert_failure(self, batch: WriteBatch, rid: int, step: int | None, text: str
                       ) -> None:
        text = escape_surrogates(text)  # an error's text may quote what it failed on
        batch.alerts.append(AlertRow(rid, "logging error", text, "error", step, time.time()))
        self._warn(text)

    def _persist(self, batch: WriteBatch, force_spill: bool = False) -> None:
        """Write ``batch`` after any older batches (stuck in memory or spilled), in order."""
        pending = [*self._stuck, batch] if self._stuck else [batch]
        self._stuck = []
        for i, b in enumerate(pending):
            if b.is_empty():
                continue
            if self._spilled and not self._replay_own():
                error: str | None = "earlier points still wait in a spill file"
            elif force_spill and b is batch:
                error = "media files could not be written into the home"
            else:
                error = self._write_with_retry(b)
            if error is None:
                continue
            try:
                where = spill.write(self.home, b, self.store.db_id)
                self._spilled = True
                self._warn(f"runfleet could not write to {self.home.db_path} ({error}); "
                           f"{_count(b)} points were saved to {where} and will be replayed")
            except OSError as exc:
                self._stuck.extend(pending[i:])
                self._warn(f"runfleet cannot write to the database ({error}) nor spill "
                           f"({exc}); {sum(_count(x) for x in pending[i:])} points are "
                           f"kept in memory and retried")
                return

    def _replay_own(self) -> bool:
        """Replay this process's spill files; True once none is left."""
        try:
            spill.replay(self.home, self.store)
        except Exception:  # the database still fails: keep the files, keep the order
            return False
        self._spilled = bool(spill.own_pending(self.home))
        return not self._spilled

    def _write_with_retry(self, batch: WriteBatch) -> str | None:
        """Write ``batch``; return None on success, else the last error message."""
        deadline = time.monotonic() + BUSY_DEADLINE_S
        delay = 0.005
        errors = 0
        while True:
            try:
                self.store.write(batch)
                return None
            except StoreBusyError as exc:
                if time.monotonic() > deadline:
                    return f"database stayed locked: {exc}"
            except Exception as exc:  # full disk, I/O error, or a bug: retry, then spill
                errors += 1
                if errors > ERROR_RETRIES:
                    return f"{type(exc).__name__}: {exc}" if not isinstance(
                        exc, (sqlite3.Error, OSError)) else str(exc)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)

    def _warn(self, message: str) -> None:
        warnings.warn(message, RunfleetWriteWarning, stacklevel=2)
        if self.on_error is not None:
            with contextlib.suppress(Exception):
                self.on_error(message)


def _safe_name(text: str) -> str:
    """A file-name component that cannot climb out of its folder (no separators, no '..')."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
    return cleaned[:80] or "_"


def _count(batch: WriteBatch) -> int:
    return sum(len(c.steps) for c in batch.series)


def writer_pid_guard(writer: Writer) -> None:
    """After ``fork()``, the child must not flush the parent's queue: give it an empty one."""
    pid = os.getpid()

    def _child() -> None:
        if os.getpid() != pid:
            writer._queue = deque()
            writer._stop = True
            writer._forked = True

    os.register_at_fork(after_in_child=_child)
