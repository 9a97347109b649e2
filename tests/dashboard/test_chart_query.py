"""Chart queries on the store: block summaries agree with the points, migrate from schema 1,
stay correct as a tail segment grows, and fall back to decoding where they cannot help."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from runfleet.dashboard.query import Query
from runfleet.downsample import GridBuckets
from runfleet.store import codec
from runfleet.store.base import SeriesChunk, WriteBatch
from runfleet.store.schema import SCHEMA_VERSION
from runfleet.store.sqlite import SQLiteStore


def _store_with_series(path: Path, n: int = 50_000, runs: int = 2) -> SQLiteStore:
    store = SQLiteStore.open(path / "runfleet.db")
    rng = np.random.default_rng(1)
    steps = np.arange(n, dtype=np.int64)
    for r in range(runs):
        rec = store.create_run("p", f"r{r}", f"r{r}")
        values = rng.normal(0, 1, n)
        values[n // 3] = 1e6  # a spike
        values[100:140] = np.nan
        times = (1.7e9 + steps * 0.5).astype(np.float64)
        store.write(WriteBatch(series=[SeriesChunk(rec.rid, "loss", codec.FLOAT, steps, times,
                                                   values)]))
    return store


def _sql(db: Path, statement: str) -> object:
    """Run one raw SQL statement on its own connection (committed); return the first
    column of the first row, if any. For checks below the Store interface."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            row = conn.execute(statement).fetchone()
        return None if row is None else row[0]
    finally:
        conn.close()


def _grid(store: SQLiteStore, rid: int, coarse: bool, buckets: int = 100) -> dict:
    got = store.series_blocks(rid, "loss", coarse=coarse)
    ext = store.series_extents([rid], "loss")[rid]
    g = GridBuckets(ext.step_min, ext.step_max, buckets)
    g.add_points(got.points.steps, got.points.values.astype(float))
    if got.blocks is not None:
        b = got.blocks
        g.add_blocks(b.step_lo, b.n, b.cnt, b.vmin, b.vmax, b.vsum)
    return {"blocks": got.blocks is not None, **g.result()}


def test_block_summaries_agree_with_the_points(tmp_path: Path) -> None:
    store = _store_with_series(tmp_path)
    exact = _grid(store, 1, coarse=False)
    coarse = _grid(store, 1, coarse=True)
    assert coarse["blocks"] and not exact["blocks"]
    assert coarse["count"].sum() == exact["count"].sum() == 50_000
    assert np.nanmax(coarse["max"]) == np.nanmax(exact["max"]) == 1e6
    assert np.nanmin(coarse["min"]) == np.nanmin(exact["min"])
    # A block lands in the bucket of its first point: buckets differ by a block at most.
    assert np.nanmedian(coarse["mean"]) == pytest.approx(np.nanmedian(exact["mean"]), abs=0.05)
    spike = int(np.nanargmax(coarse["max"]))
    assert abs(spike - int(np.nanargmax(exact["max"]))) <= 1
    store.close()


def test_tail_segment_rewrites_keep_the_summary_current(tmp_path: Path) -> None:
    store = SQLiteStore.open(tmp_path / "runfleet.db")
    rid = store.create_run("p", "a", "a").rid
    for i in range(10):  # ten flushes appending to one open segment
        steps = np.arange(i * 100, (i + 1) * 100, dtype=np.int64)
        store.write(WriteBatch(series=[SeriesChunk(rid, "x", codec.FLOAT, steps,
                                                   steps.astype(np.float64), steps * 2.0)]))
    got = store.series_blocks(rid, "x", coarse=True)
    assert got.blocks is not None and int(got.blocks.n.sum()) == 1000
    assert got.blocks.vmax.max() == 1998.0 and len(got.points.steps) == 0
    assert _sql(store.path, "SELECT COUNT(*) FROM segment_summaries") == 1
    store.close()


def test_range_edges_are_decoded_exactly(tmp_path: Path) -> None:
    store = _store_with_series(tmp_path, runs=1)
    got = store.series_blocks(1, "loss", start=1000, end=30_000, coarse=True)
    assert got.blocks is not None
    covered = int(got.blocks.n.sum()) + len(got.points.steps)
    assert covered == 29_001
    assert got.points.steps.min() == 1000 and got.points.steps.max() == 30_000
    by_time = store.series_blocks(1, "loss", start=1.7e9 + 500, end=1.7e9 + 600, x="time")
    assert by_time.blocks is None and len(by_time.points.steps) == 201
    store.close()


def test_text_series_are_never_summarised(tmp_path: Path) -> None:
    store = SQLiteStore.open(tmp_path / "runfleet.db")
    rid = store.create_run("p", "a", "a").rid
    steps = np.arange(5000, dtype=np.int64)
    texts = [f"v{i}" for i in range(5000)]
    store.write(WriteBatch(series=[SeriesChunk(rid, "t", codec.JSON, steps,
                                               steps.astype(np.float64), texts)]))
    got = store.series_blocks(rid, "t", coarse=True)
    assert got.blocks is None and len(got.points.steps) == 5000
    assert store.fill_summaries() == 0
    store.close()


def test_schema_1_database_migrates_and_gets_summaries(tmp_path: Path) -> None:
    store = _store_with_series(tmp_path, n=20_000, runs=1)
    store.close()
    # Turn it back into a schema-1 file: no summaries (nor later) tables, user_version 1.
    conn = sqlite3.connect(tmp_path / "runfleet.db")
    conn.execute("DROP TRIGGER segment_summaries_follow")
    conn.execute("DROP TABLE segment_summaries")
    conn.execute("DROP TABLE ops")
    for table in ("artifact_links", "artifact_aliases", "artifact_versions"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = SQLiteStore.open(tmp_path / "runfleet.db")
    assert _sql(store.path, "PRAGMA user_version") == SCHEMA_VERSION >= 2
    before = store.series_blocks(1, "loss", coarse=True)
    assert before.blocks is None and len(before.points.steps) == 20_000  # decoded instead
    assert store.fill_summaries(limit=2) == 2
    assert store.fill_summaries() == 3  # 20,000 points = 5 segments
    assert store.fill_summaries() == 0
    after = store.series_blocks(1, "loss", coarse=True)
    assert after.blocks is not None and int(after.blocks.n.sum()) == 20_000
    store.close()


def test_deleting_segments_removes_their_summaries(tmp_path: Path) -> None:
    store = _store_with_series(tmp_path, n=10_000, runs=1)
    _sql(store.path, "DELETE FROM segments")
    assert _sql(store.path, "SELECT COUNT(*) FROM segment_summaries") == 0
    store.close()


def test_query_chooses_blocks_only_for_dense_ranges(tmp_path: Path) -> None:
    _store_with_series(tmp_path, n=100_000, runs=2).close()
    q = Query(tmp_path)
    full = q.chart("p", "loss", ["r0", "r1"], buckets=1000)
    assert full["grid"] == {"lo": 0.0, "hi": 99_999.0, "buckets": 1000}
    assert all(s["mode"] == "buckets" and s["count"] == 100_000 for s in full["series"])
    assert max(v for v in full["series"][0]["max"] if isinstance(v, float)) == 1e6
    zoom = q.chart("p", "loss", ["r0"], start=50_000, end=50_499, buckets=1000)
    assert zoom["series"][0]["mode"] == "exact" and zoom["series"][0]["count"] == 500
    q.close()
