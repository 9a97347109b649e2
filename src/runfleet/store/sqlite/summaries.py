"""The ``segment_summaries`` table and the chart reads built on it: block summaries of
segments (written with each segment, back-filled for segments of schema 1), series extents
and :func:`series_blocks`, which answers a chart from summaries where it can."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from runfleet.store import codec
from runfleet.store.base import BlockedSeries, Blocks, SeriesExtent
from runfleet.store.sqlite import series
from runfleet.store.sqlite.connection import Db


def write_summary(conn: sqlite3.Connection, seg_id: int, kind: str,
                  steps: npt.NDArray[np.int64], times: npt.NDArray[np.float64],
                  values: Any) -> None:
    """Store the block summary of a segment just written (replacing any older one; a kind
    without summaries deletes it)."""
    blob = codec.encode_summary(kind, steps, times, values)
    if blob is None:
        conn.execute("DELETE FROM segment_summaries WHERE segment = ?", (seg_id,))
    else:
        conn.execute("INSERT OR REPLACE INTO segment_summaries (segment, n, blocks)"
                     " VALUES (?, ?, ?)", (seg_id, len(steps), blob))


def fill_summaries(conn: sqlite3.Connection, limit: int) -> int:
    """Inside a transaction, compute the missing block summaries of up to ``limit``
    segments; return how many were filled (0: none left)."""
    rows = conn.execute(
        "SELECT s.id, s.kind, s.n, s.steps, s.times, s.vals FROM segments s"
        " LEFT JOIN segment_summaries ss ON ss.segment = s.id"
        " WHERE ss.segment IS NULL AND s.kind IN (?, ?, ?) LIMIT ?",
        (*codec.SUMMARY_KINDS, limit)).fetchall()
    for seg_id, kind, n, steps, times, vals in rows:
        write_summary(conn, seg_id, kind, codec.decode_steps(steps),
                      codec.decode_times(times), codec.decode_values(kind, vals, n))
    return len(rows)


def series_extents(db: Db, rids: Sequence[int], key: str) -> dict[int, SeriesExtent]:
    """Point count and step/time range of ``key`` per run that has it (one query over
    segment metadata per 500 runs, no decoding)."""
    rids = list(rids)
    out: dict[int, SeriesExtent] = {}
    for lo in range(0, len(rids), 500):  # stay below SQLite's bound-parameter limit
        part = rids[lo:lo + 500]
        marks = ",".join("?" * len(part))
        rows = db.fetchall(
            "SELECT s.run, SUM(s.n), MIN(s.step_min), MAX(s.step_max), MIN(s.time_min),"
            " MAX(s.time_max) FROM segments s JOIN metric_keys k ON k.id = s.key"
            f" WHERE k.name = ? AND s.run IN ({marks}) GROUP BY s.run",
            [key, *part])
        for r in rows:
            out[int(r[0])] = SeriesExtent(int(r[1]), int(r[2]), int(r[3]), float(r[4]),
                                          float(r[5]))
    return out


def series_blocks(db: Db, rid: int, key: str, start: float | None = None,
                  end: float | None = None, x: str = "step",
                  coarse: bool = False) -> BlockedSeries:
    """The points of (``rid``, ``key``) with ``x`` (step or time) in ``[start, end]``.

    With ``coarse``, segments lying wholly inside the range and carrying an up-to-date
    summary are returned as blocks; the others (range edges, text kinds, segments
    written before schema 2) are decoded into exact points.
    """
    if x not in ("step", "time"):
        raise ValueError(f"x must be 'step' or 'time', got {x!r}")
    lo_col, hi_col = ("step_min", "step_max") if x == "step" else ("time_min", "time_max")
    sql = (f"SELECT s.id, s.n, s.{lo_col}, s.{hi_col}, ss.n, ss.blocks FROM segments s"
           " JOIN metric_keys k ON k.id = s.key"
           " LEFT JOIN segment_summaries ss ON ss.segment = s.id"
           " WHERE s.run = ? AND k.name = ?")
    args: list[Any] = [rid, key]
    if start is not None:
        sql += f" AND s.{hi_col} >= ?"
        args.append(start)
    if end is not None:
        sql += f" AND s.{lo_col} <= ?"
        args.append(end)
    if not coarse:  # skip reading the summaries at all
        sql = sql.replace("ss.n, ss.blocks", "NULL, NULL")
    rows = db.fetchall(sql + " ORDER BY s.id", args)
    blobs: list[bytes] = []
    counts: list[int] = []
    exact_ids: list[int] = []
    for seg_id, n, lo, hi, summary_n, summary in rows:
        inside = (start is None or lo >= start) and (end is None or hi <= end)
        if coarse and inside and summary is not None and summary_n == n:
            blobs.append(summary)
            counts.append(n)
        else:
            exact_ids.append(seg_id)
    points = series.segments_by_id(db, key, exact_ids)
    if x == "step":
        points = series.clip(points, points.steps, start, end)
    else:
        points = series.clip(points, points.times, start, end)
    blocks = Blocks(**codec.decode_summaries(blobs, counts)) if blobs else None
    return BlockedSeries(points, blocks)
