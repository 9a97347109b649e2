"""The ``metric_keys`` and ``segments`` tables: metric points of a series (run, key) as
columnar segments of up to :data:`SEGMENT_POINTS` points; writing them (appending to the
open tail segment) and reading them back as one :class:`Series`."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from runfleet.store import codec
from runfleet.store.base import KeyInfo, Series, SeriesChunk
from runfleet.store.sqlite.connection import Db, Row

# Keys under this prefix (system metrics) are indexed by sample, not by training step.
# Points per segment: large enough that per-row overhead vanishes, small enough that a
# zoomed chart decodes little more than it shows and the open tail is cheap to rewrite.
SEGMENT_POINTS = 4096

# A series of one value kind: (run rid, metric key id, kind).
Slot = tuple[int, int, str]


@dataclass
class WrittenSegment:
    """A segment row as this process last wrote it: its id and its points."""

    id: int
    steps: npt.NDArray[np.int64]
    times: npt.NDArray[np.float64]
    values: Any


@dataclass
class SeriesState:
    """What one connection remembers between writes: metric key ids, and the last, not
    yet full segment of each series it appends to (rewritten in place by the next write)."""

    key_ids: dict[str, int] = field(default_factory=dict)
    tails: dict[Slot, WrittenSegment] = field(default_factory=dict)

    def forget_run(self, rid: int) -> None:
        """Drop the tails of run ``rid`` (after its segments were deleted)."""
        self.tails = {k: v for k, v in self.tails.items() if k[0] != rid}


def key_id(conn: sqlite3.Connection, state: SeriesState, name: str) -> int:
    """The id of metric key ``name``, inserted when new (cached in ``state``)."""
    kid = state.key_ids.get(name)
    if kid is None:
        conn.execute("INSERT OR IGNORE INTO metric_keys (name) VALUES (?)", (name,))
        kid = int(conn.execute(
            "SELECT id FROM metric_keys WHERE name = ?", (name,)).fetchone()[0])
        state.key_ids[name] = kid
    return kid


def write_chunk(conn: sqlite3.Connection, state: SeriesState, chunk: SeriesChunk,
                pending: dict[Slot, WrittenSegment | None]) -> list[WrittenSegment]:
    """Append ``chunk``'s points to their series inside a transaction and return the
    segments written (whose block summaries the caller writes in the same transaction).

    The open tail of the series (from ``pending``, else from ``state``) is rewritten with
    the new points appended; full segments are closed and new ones inserted. The series'
    new tail (None: the last segment is full) is put into ``pending``, which the caller
    moves into ``state`` once the transaction committed.
    """
    kid = key_id(conn, state, chunk.key)
    slot = (chunk.run, kid, chunk.kind)
    json_kind = chunk.kind in (codec.JSON, codec.MEDIA)
    steps = np.asarray(chunk.steps, dtype=np.int64)
    times = np.asarray(chunk.times, dtype=np.float64)
    values: Any = list(chunk.values) if json_kind else np.asarray(chunk.values)
    seg_id: int | None = None
    tail = pending[slot] if slot in pending else state.tails.get(slot)
    if tail is not None and len(tail.steps) < SEGMENT_POINTS:
        seg_id = tail.id
        steps = np.concatenate([tail.steps, steps])
        times = np.concatenate([tail.times, times])
        values = (list(tail.values) + values) if json_kind else \
            np.concatenate([tail.values, values])
    written: list[WrittenSegment] = []
    new_tail: WrittenSegment | None = None
    for lo in range(0, len(steps), SEGMENT_POINTS):
        hi = min(lo + SEGMENT_POINTS, len(steps))
        s, t, v = steps[lo:hi], times[lo:hi], values[lo:hi]
        row = _segment_row(chunk.kind, s, t, v)
        updated = 0
        if seg_id is not None:
            updated = conn.execute(
                "UPDATE segments SET n = ?, step_min = ?, step_max = ?, time_min = ?,"
                " time_max = ?, vmin = ?, vmax = ?, steps = ?, times = ?, vals = ?"
                " WHERE id = ?", (*row, seg_id)).rowcount
            this_id = seg_id
            seg_id = None
        if not updated:  # a new segment, or the tail row was purged meanwhile
            cur = conn.execute(
                "INSERT INTO segments (run, key, kind, n, step_min, step_max, time_min,"
                " time_max, vmin, vmax, steps, times, vals)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (chunk.run, kid, chunk.kind, *row))
            this_id = int(cur.lastrowid or 0)
        segment = WrittenSegment(this_id, s, t, v)
        written.append(segment)
        new_tail = segment if hi - lo < SEGMENT_POINTS else None
    pending[slot] = new_tail
    return written


def _segment_row(kind: str, steps: npt.NDArray[np.int64], times: npt.NDArray[np.float64],
                 values: Any) -> tuple[Any, ...]:
    """The column values of a segment: count, step/time/value ranges, encoded blobs."""
    vmin = vmax = None
    if kind in (codec.FLOAT, codec.INT) and len(values):
        arr = np.asarray(values, dtype=np.float64)
        finite_or_inf = arr[~np.isnan(arr)]
        if finite_or_inf.size:
            vmin, vmax = float(finite_or_inf.min()), float(finite_or_inf.max())
    return (
        len(steps), int(steps.min()), int(steps.max()), float(times.min()),
        float(times.max()), vmin, vmax, codec.encode_steps(steps),
        codec.encode_times(times), codec.encode_values(kind, values),
    )


def delete_run_segments(conn: sqlite3.Connection, rid: int) -> None:
    """Delete every segment of run ``rid`` (their summaries follow by trigger)."""
    conn.execute("DELETE FROM segments WHERE run = ?", (rid,))


def keys(db: Db, rid: int) -> list[KeyInfo]:
    """The metric keys of run ``rid`` with point counts, step ranges and value kinds."""
    rows = db.fetchall(
        "SELECT k.name, SUM(s.n), MIN(s.step_min), MAX(s.step_max),"
        " GROUP_CONCAT(DISTINCT s.kind) FROM segments s"
        " JOIN metric_keys k ON k.id = s.key WHERE s.run = ? GROUP BY k.name"
        " ORDER BY k.name", (rid,))
    return [KeyInfo(key=r[0], count=int(r[1]), step_min=int(r[2]), step_max=int(r[3]),
                    kinds=sorted(r[4].split(","))) for r in rows]


def series(db: Db, rid: int, key: str, start: float | None = None,
           end: float | None = None) -> Series:
    """The points of (``rid``, ``key``) with steps in ``[start, end]``, step-sorted,
    decoding only the segments that overlap the range."""
    sql = ("SELECT s.kind, s.n, s.steps, s.times, s.vals FROM segments s"
           " JOIN metric_keys k ON k.id = s.key WHERE s.run = ? AND k.name = ?")
    args: list[Any] = [rid, key]
    if start is not None:
        sql += " AND s.step_max >= ?"
        args.append(start)
    if end is not None:
        sql += " AND s.step_min <= ?"
        args.append(end)
    rows = db.fetchall(sql + " ORDER BY s.id", args)
    return decode_segments(key, rows, start, end)


def segments_by_id(db: Db, key: str, ids: list[int]) -> Series:
    """Decode the segments with these ids (all of series ``key``) into one series."""
    rows: list[Row] = []
    for lo in range(0, len(ids), 500):  # stay below SQLite's bound-parameter limit
        part = ids[lo:lo + 500]
        marks = ",".join("?" * len(part))
        rows += db.fetchall(
            f"SELECT kind, n, steps, times, vals FROM segments WHERE id IN ({marks})"
            " ORDER BY id", part)
    return decode_segments(key, rows, None, None)


def clip(s: Series, xs: npt.NDArray[Any], start: float | None, end: float | None) -> Series:
    """Keep the points of ``s`` whose ``xs`` lie in ``[start, end]``."""
    if start is None and end is None:
        return s
    keep = np.ones(len(xs), dtype=bool)
    if start is not None:
        keep &= xs >= start
    if end is not None:
        keep &= xs <= end
    return Series(s.key, s.steps[keep], s.times[keep], s.values[keep])


def decode_segments(key: str, rows: list[Row], start: float | None,
                    end: float | None) -> Series:
    """Decode segment rows (kind, n, steps, times, vals) into one step-sorted series."""
    if not rows:
        return Series(key, np.empty(0, np.int64), np.empty(0, np.float64),
                      np.empty(0, np.float64))
    steps = [codec.decode_steps(r[2]) for r in rows]
    times = [codec.decode_times(r[3]) for r in rows]
    vals = [codec.decode_values(r[0], r[4], r[1]) for r in rows]
    kinds = {r[0] for r in rows}
    if len(kinds) > 1:
        vals = [v.astype(object) for v in vals]
    s = np.concatenate(steps)
    t = np.concatenate(times)
    v = np.concatenate(vals)
    if len(s) > 1 and np.any(s[1:] < s[:-1]):
        order = np.argsort(s, kind="stable")
        s, t, v = s[order], t[order], v[order]
    if start is not None or end is not None:
        lo = 0 if start is None else int(np.searchsorted(s, start, side="left"))
        hi = len(s) if end is None else int(np.searchsorted(s, end, side="right"))
        s, t, v = s[lo:hi], t[lo:hi], v[lo:hi]
    return Series(key, s, t, v)
