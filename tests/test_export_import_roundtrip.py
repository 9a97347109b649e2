"""``runfleet export`` then ``runfleet import csv`` gives back the same runs: a property
test over random projects (random runs, keys, steps, values incl. NaN and infinities, text,
configs and summaries), for both layouts the CSV importer reads (long and wide)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runfleet
from runfleet.api import Api, ApiRun
from runfleet.cli import main
from runfleet.export import export_project
from runfleet.importers import Points, series_chunks
from runfleet.importers.csv_file import import_csv
from runfleet.store.base import RunStatus, WriteBatch
from runfleet.store.sqlite import SQLiteStore
from tests.conftest import same_value

# -- strategies -------------------------------------------------------------------------------
KEY = st.from_regex(r"[a-z][a-z0-9_./-]{0,8}", fullmatch=True)
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"),
               max_size=12)
FLOAT = st.floats(allow_nan=True, allow_infinity=True)
INT = st.integers(-(2**63), 2**63 - 1)
JSONABLE = st.recursive(
    st.none() | st.booleans() | FLOAT | st.integers(-(2**70), 2**70) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6)
META = st.dictionaries(KEY, JSONABLE, max_size=4)


def _plain_text(s: str) -> bool:
    """Text a plain wide column keeps as text: not a number, not a bool, not blank."""
    if not s.strip() or s.strip().lower() in ("true", "false"):
        return False
    try:
        float(s.strip())
    except ValueError:
        return True
    return False


# One value kind per key in the wide layout (it types a column as a whole); any mix in the
# long layout, which records each value's type.
WIDE_COLUMN = st.sampled_from(["float", "int", "bool", "str"]).flatmap(lambda kind: st.lists(
    {"float": FLOAT, "int": INT, "bool": st.booleans(),
     "str": TEXT.filter(_plain_text)}[kind], min_size=1, max_size=5))
LONG_COLUMN = st.lists(FLOAT | INT | st.booleans() | st.none() | TEXT
                       | st.lists(st.integers(-5, 5), max_size=3), min_size=1, max_size=5)


def runs_strategy(column: st.SearchStrategy[list[Any]]) -> st.SearchStrategy[list[dict]]:
    series = st.dictionaries(KEY, column.flatmap(lambda values: st.tuples(
        st.just(values), st.lists(st.integers(0, 50), min_size=len(values),
                                  max_size=len(values)).map(sorted))), max_size=3)
    run = st.fixed_dictionaries({
        "name": TEXT.filter(lambda s: s != ""), "config": META, "summary": META,
        "series": series, "group": st.none() | TEXT, "tags": st.lists(TEXT, max_size=2),
        "notes": st.none() | TEXT})
    return st.lists(run, min_size=1, max_size=3)


# -- building and comparing -------------------------------------------------------------------
def _time(step: int, occurrence: int) -> float:
    """Every key's point at (step, occurrence) has the same time, as one log() call gives;
    the wide layout has one time per row."""
    return 1.9e9 + step * 0.25 + occurrence * 1e-3  # after the run was created (now)


def build(home: Path, runs: list[dict]) -> None:
    store = SQLiteStore.open(home / "runfleet.db")
    try:
        for i, spec in enumerate(runs):
            rec = store.create_run("p", f"run{i}", spec["name"], config=spec["config"],
                                   group=spec["group"], tags=spec["tags"], notes=spec["notes"])
            batch = WriteBatch(run_updates={rec.rid: {
                "status": RunStatus.COMPLETED, "summary": spec["summary"],
                "finished": 2e9}})
            for key, (values, steps) in spec["series"].items():
                points = Points()
                for j, (value, step) in enumerate(zip(values, steps)):
                    points.add(step, _time(step, steps[:j].count(step)), value)
                batch.series.extend(series_chunks(rec.rid, key, points))
            store.write(batch)
    finally:
        store.close()


def same(a: Any, b: Any) -> bool:
    """Equal, floats bit for bit (NaN equals NaN), recursively through lists and dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return same_value(a, b)


def check_same_run(orig: ApiRun, got: ApiRun, layout: str) -> None:
    assert (got.id, got.name) == (orig.id, orig.name)
    assert same(got.config, orig.config), (got.config, orig.config)
    assert same(got.summary, orig.summary), (got.summary, orig.summary)
    assert got.keys("all") == orig.keys("all")
    for key in orig.keys("all"):
        a, b = orig.series(key), got.series(key)
        assert a.steps.tolist() == b.steps.tolist(), key
        assert np.array_equal(a.times, b.times), key
        assert same(a.values.tolist(), b.values.tolist()), (key, a.values, b.values)
    assert list(got.history().columns) == list(orig.history().columns)
    assert got.created_at <= got.finished_at  # type: ignore[operator]
    if layout == "long":
        assert (got.created_at, got.finished_at) == (orig.created_at, orig.finished_at)
        assert (got.group, got.tags, got.notes) == (orig.group, orig.tags, orig.notes)
        assert got.status == orig.status == "completed"


def round_trip(runs: list[dict], wide: bool) -> None:
    layout = "wide" if wide else "long"
    with tempfile.TemporaryDirectory() as tmp:
        src, dst, out = Path(tmp) / "src", Path(tmp) / "dst", Path(tmp) / "export.csv"
        src.mkdir()
        dst.mkdir()
        build(src, runs)
        with Api(src) as api:
            export_project(api, "p", path=out, wide=wide)
        store = SQLiteStore.open(dst / "runfleet.db")
        try:
            result = import_csv(store, out, "p")
            assert len(result.imported) == len(runs) and not result.skipped
            again = import_csv(store, out, "p")  # importing again adds nothing
            assert len(again.skipped) == len(runs) and not again.imported
        finally:
            store.close()
        with Api(src) as a, Api(dst) as b:
            originals, copies = a.runs("p"), b.runs("p")
            assert [r.id for r in copies] == [r.id for r in originals]
            for orig, got in zip(originals, copies):
                check_same_run(orig, got, layout)


PROPERTY = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(runs_strategy(LONG_COLUMN))
def test_long_export_reimports_to_the_same_runs(runs: list[dict]) -> None:
    round_trip(runs, wide=False)


@PROPERTY
@given(runs_strategy(WIDE_COLUMN))
def test_wide_export_reimports_to_the_same_runs(runs: list[dict]) -> None:
    round_trip(runs, wide=True)


# -- the same through the command line, on runs logged by runfleet.init -----------------------
def test_cli_export_then_import_csv_gives_back_the_runs(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    for lr in (0.1, 0.01):
        with runfleet.init(project="p", dir=src, config={"lr": lr, "opt": {"name": "adam"}},
                           tags=["t"]) as run:
            for step in range(4):
                run.log({"loss": lr / (step + 1), "acc": math.nan if step == 0 else 0.5,
                         "phase": "warmup" if step < 2 else "main"})
            run.summary["best_loss"] = lr / 4
    for wide in (False, True):
        out = tmp_path / f"export-{wide}.csv"
        assert main(["export", "--dir", str(src), "-p", "p", "-o", str(out)]
                    + (["--wide"] if wide else [])) == 0
        assert main(["import", "csv", str(out), "--dir", str(dst / str(wide)), "-p", "p"]) == 0
        with Api(src) as a, Api(dst / str(wide)) as b:
            originals, copies = a.runs("p"), b.runs("p")
            assert len(copies) == 2
            for orig, got in zip(originals, copies):
                check_same_run(orig, got, "wide" if wide else "long")
                assert got.history()["phase"].tolist() == ["warmup"] * 2 + ["main"] * 2
                assert "_project" not in got.keys("all")  # metadata, not metrics


def test_a_plain_csv_run_spans_its_own_times(tmp_path: Path) -> None:
    """A plain table with a time column: the run is created at its first row and finished
    at its last (before this fix it was created at import time, after it had finished)."""
    table = tmp_path / "old.csv"
    table.write_text("step,time,loss\n0,2020-01-01T00:00:00+00:00,1.0\n"
                     "1,2020-01-01T00:01:00+00:00,0.5\n")
    assert main(["import", "csv", str(table), "--dir", str(tmp_path / "h"), "-p", "p",
                 "--time-column", "time"]) == 0
    with Api(tmp_path / "h") as api:
        run = api.runs("p")[0]
        assert (run.created_at, run.finished_at) == (1577836800.0, 1577836860.0)
        assert run.history()["_runtime"].tolist() == [0.0, 60.0]
