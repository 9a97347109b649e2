"""The write path: one :class:`WriteBatch` in one transaction across the tables it
touches, and the ``replayed_spills`` table that makes replaying a spill file idempotent."""

from __future__ import annotations

import sqlite3
import time

import numpy as np

from runfleet.store.base import SYSTEM_PREFIX, WriteBatch
from runfleet.store.sqlite import events, runs, series, summaries
from runfleet.store.sqlite.connection import Db


def write_batch(db: Db, state: series.SeriesState, batch: WriteBatch) -> None:
    """Write ``batch`` atomically: points (segments and their summaries), the runs' last
    steps, media, alerts and run updates. A batch replayed from spill file
    ``batch.spill_name`` is written once only. ``state`` (key ids, open tails) changes
    only if the transaction commits."""
    if batch.is_empty() and batch.spill_name is None:
        return
    pending: dict[series.Slot, series.WrittenSegment | None] = {}
    key_ids_before = dict(state.key_ids)

    def body(conn: sqlite3.Connection) -> None:
        if batch.spill_name is not None:
            if _replayed(conn, batch.spill_name):
                return
            conn.execute("INSERT INTO replayed_spills (name, time) VALUES (?, ?)",
                         (batch.spill_name, time.time()))
        last_steps: dict[int, int] = {}
        for chunk in batch.series:
            if len(chunk.steps) == 0:
                continue
            for seg in series.write_chunk(conn, state, chunk, pending):
                summaries.write_summary(conn, seg.id, chunk.kind, seg.steps, seg.times,
                                        seg.values)
            if chunk.key.startswith(SYSTEM_PREFIX):
                continue  # system samples count their own steps: not the run's step
            top = int(np.max(chunk.steps))
            last_steps[chunk.run] = max(last_steps.get(chunk.run, -1), top)
        for run, step in last_steps.items():
            runs.raise_last_step(conn, run, step)
        for m in batch.media:
            events.insert_media(conn, m)
        for a in batch.alerts:
            events.insert_alert(conn, a)
        for rid, fields in batch.run_updates.items():
            # A replayed batch keeps its own time, so newer updates are recognisable.
            runs.update_run(conn, rid, {"updated": batch.created, **fields})

    try:
        db.transaction(body)
    except BaseException:
        state.key_ids = key_ids_before  # ids of keys inserted by the rolled-back txn
        raise
    for slot, seg in pending.items():
        if seg is None:
            state.tails.pop(slot, None)
        else:
            state.tails[slot] = seg


def _replayed(conn: sqlite3.Connection, spill_name: str) -> bool:
    row = conn.execute("SELECT 1 FROM replayed_spills WHERE name = ?",
                       (spill_name,)).fetchone()
    return row is not None


def is_replayed(db: Db, spill_name: str) -> bool:
    """True if the spill file ``spill_name`` was replayed into this database already."""
    with db.lock:
        return _replayed(db.conn, spill_name)
