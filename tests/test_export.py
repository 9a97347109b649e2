"""Export of run histories: exact round-trips through CSV, JSON Lines and Parquet."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import runfleet
from runfleet.errors import RunNotFoundError
from runfleet.export import LONG_COLUMNS, META_TYPES, export_project, parse_cell, read_long
from tests.conftest import same_value as same

FLOATS = [0.1, 1e308, math.nan, math.inf, -math.inf, 5e-324, -0.0, 1 / 3, 2.5e-310, -1e-300]
INTS = [2**62, -(2**63), 2**63 - 1, 7, 0, -1]
BOOLS = [True, False, True]
TEXTS = ["hello", "NaN", "", 'a,b\n"quoted"', "inf", "ünï"]


def same_list(a: Sequence[object], b: Sequence[object]) -> bool:
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


@pytest.fixture
def home(tmp_path):
    """A home with project "exp": run "alpha" (every value kind) and run "beta"."""
    runfleet.init(project="exp", name="alpha", dir=tmp_path, system_metrics=False,
                  config={"lr": 0.1})
    for i, v in enumerate(FLOATS):
        runfleet.log({"f": v}, step=i)
    for i, n in enumerate(INTS):
        runfleet.log({"i": n}, step=i)
    for i, flag in enumerate(BOOLS):
        runfleet.log({"b": flag}, step=i)
    for i, text in enumerate(TEXTS):
        runfleet.log({"s": text}, step=i)
    runfleet.log({"big": 2**70}, step=0)
    runfleet.log({"mixed": 3}, step=20)
    runfleet.log({"mixed": "three"}, step=21)
    runfleet.log({"mixed": None}, step=22)
    runfleet.log({"f": 42.0}, step=3)  # a second point at step 3
    runfleet.finish()
    runfleet.init(project="exp", name="beta", dir=tmp_path, system_metrics=False)
    for i in range(5):
        runfleet.log({"loss": 1.0 / (i + 1)})
    runfleet.finish()
    return tmp_path


def expected(tmp_path) -> dict[tuple[str, str], tuple[list[int], list[float], list[object]]]:
    """Ground truth from the read API: (run name, key) -> steps, times, values."""
    out = {}
    with runfleet.Api(dir=tmp_path) as api:
        for run in api.runs("exp"):
            for key in run.keys("all"):
                s = run.series(key)
                out[(run.name, key)] = (s.steps.tolist(), s.times.tolist(), s.values.tolist())
    return out


def grouped(frame: pd.DataFrame) -> dict[tuple[str, str], tuple[list, list, list]]:
    out: dict[tuple[str, str], tuple[list, list, list]] = {}
    for row in frame.itertuples(index=False):
        steps, times, values = out.setdefault((str(row.run_name), str(row.key)), ([], [], []))
        steps.append(row.step)
        times.append(row.timestamp)
        values.append(row.value)
    return out


def check_exact(tmp_path, frame: pd.DataFrame) -> None:
    truth = expected(tmp_path)
    got = grouped(frame)
    assert set(got) == set(truth)
    for k, (steps, times, values) in truth.items():
        g_steps, g_times, g_values = got[k]
        assert g_steps == steps, k
        assert same_list(list(map(float, g_times)), times), k
        assert same_list(g_values, values), (k, g_values, values)
    # and against what was logged, for the single-type keys
    assert same_list(truth[("alpha", "i")][2], INTS)
    assert same_list(truth[("alpha", "b")][2], BOOLS)
    assert same_list(truth[("alpha", "s")][2], TEXTS)
    assert same_list(truth[("alpha", "big")][2], [2**70])
    f_steps, _, f_values = truth[("alpha", "f")]
    assert f_steps == [0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9]
    assert same_list(f_values, [*FLOATS[:4], 42.0, *FLOATS[4:]])


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_long_export_round_trips_exactly(home, tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    with runfleet.Api(dir=home) as api:
        rows = export_project(api, "exp", fmt=fmt, path=out)
    frame = read_long(out)
    assert list(frame.columns) == list(LONG_COLUMNS)
    assert len(frame) == sum(len(v[0]) for v in expected(home).values())
    assert set(frame["project"]) == {"exp"}
    check_exact(home, frame)
    # plus the run rows: config, summary and fields (created ... notes) of each run
    with_meta = read_long(out, meta=True)
    meta = with_meta[with_meta["value_type"].isin(META_TYPES)]
    with runfleet.Api(dir=home) as api:
        runs = api.runs("exp")
        assert rows == len(with_meta) == len(frame) + len(meta)
        assert len(meta) == sum(len(r.config) + len(r.summary) + 6 for r in runs)
        for run in runs:
            mine = meta[meta["run_id"] == run.id]
            config = mine[mine["value_type"] == "config"]
            assert dict(zip(config["key"], config["value"])) == run.config
            fields = mine[mine["value_type"] == "run"]
            got = dict(zip(fields["key"], fields["value"]))
            assert got["created"] == run.created_at and got["status"] == "completed"


def test_csv_cells_are_plain_text_readable_without_runfleet(home, tmp_path):
    out = tmp_path / "out.csv"
    with runfleet.Api(dir=home) as api:
        export_project(api, "exp", path=out)
    with open(out, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["value_type"] not in META_TYPES]
    f_cells = [r["value"] for r in rows if r["run_name"] == "alpha" and r["key"] == "f"]
    assert f_cells[:4] == ["0.1", "1e+308", "nan", "inf"]
    assert "-inf" in f_cells and "-0.0" in f_cells and "5e-324" in f_cells
    values = [parse_cell(r["value"], r["value_type"]) for r in rows]
    assert any(v == 'a,b\n"quoted"' for v in values)
    null_rows = [r for r in rows if r["value_type"] == "null"]
    assert [r["value"] for r in null_rows] == [""]
    # pandas reads the float-only export back bit for bit
    loss_csv = tmp_path / "loss.csv"
    with runfleet.Api(dir=home) as api:
        export_project(api, "exp", runs=["alpha"], keys=["f"], path=loss_csv)
    frame = pd.read_csv(loss_csv)
    assert frame["value"].dtype == np.float64
    assert same_list(frame["value"].tolist(), [*FLOATS[:4], 42.0, *FLOATS[4:]])


def test_jsonl_is_strict_json(home, tmp_path):
    out = tmp_path / "out.jsonl"
    with runfleet.Api(dir=home) as api:
        export_project(api, "exp", fmt="jsonl", path=out)

    def reject(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    lines = out.read_text(encoding="utf-8").splitlines()
    objs = [o for o in (json.loads(line, parse_constant=reject) for line in lines)
            if o["value_type"] not in META_TYPES]
    nan_rows = [o for o in objs if o["key"] == "f" and o["value"] == "NaN"]
    assert len(nan_rows) == 1 and nan_rows[0]["value_type"] == "float"
    text_nan = [o for o in objs if o["key"] == "s" and o["value"] == "NaN"]
    assert text_nan[0]["value_type"] == "str"
    assert {o["value"] for o in objs if o["key"] == "i"} == set(INTS)


def test_parquet_dtypes(home, tmp_path):
    out = tmp_path / "out.parquet"
    with runfleet.Api(dir=home) as api:
        export_project(api, "exp", path=out)
    schema = pq.read_schema(out)
    assert str(schema.field("step").type) == "int64"
    assert str(schema.field("timestamp").type) == "double"
    assert str(schema.field("value").type) == "double"
    assert str(schema.field("value_int").type) == "int64"
    rows = [r for r in pq.read_table(out).to_pylist() if r["value_type"] not in META_TYPES]
    assert [r["value_int"] for r in rows if r["key"] == "i"] == INTS
    frame = pd.read_parquet(out, dtype_backend="numpy_nullable")
    frame = frame[~frame.value_type.isin(META_TYPES)]
    assert frame.loc[frame.key == "i", "value_int"].tolist() == INTS


def test_export_selected_runs_by_id_or_name(home, tmp_path):
    with runfleet.Api(dir=home) as api:
        beta = api.runs("exp", filters={"name": "beta"})[0]
        buf = io.StringIO()
        export_project(api, "exp", runs=[beta.id], path=buf)
        by_id = buf.getvalue()
        buf = io.StringIO()
        export_project(api, "exp", runs=["beta"], path=buf)
        assert buf.getvalue() == by_id
        frame = read_long(io.StringIO(by_id))
        assert set(frame["run_id"]) == {beta.id}
        assert same_list(frame["value"].tolist(), [1.0, 0.5, 1 / 3, 0.25, 0.2])
        with pytest.raises(RunNotFoundError):
            export_project(api, "exp", runs=["nope"], path=io.StringIO())
        with pytest.raises(ValueError, match="unknown project"):
            export_project(api, "nope", path=io.StringIO())


def test_wide_csv_keeps_nan_apart_from_missing(home, tmp_path):
    out = tmp_path / "wide.csv"
    with runfleet.Api(dir=home) as api:
        rows = export_project(api, "exp", path=out, wide=True)
    with open(out, newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert rows == len(table)
    assert list(table[0])[:5] == ["_project", "_run_id", "_run_name", "_step", "_timestamp"]
    alpha = [r for r in table if r["_run_name"] == "alpha"]
    # step 3 was logged twice for "f": two rows at step 3
    assert [r["_step"] for r in alpha].count("3") == 2
    at = {(r["_step"], r["f"]) for r in alpha}
    assert ("2", "nan") in at and ("3", "inf") in at and ("3", "42.0") in at
    row20 = next(r for r in alpha if r["_step"] == "20")
    assert row20["f"] == "" and row20["mixed"] == "3"
    beta = [r for r in table if r["_run_name"] == "beta"]
    assert [float(r["loss"]) for r in beta] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert all(r["f"] == "" for r in beta)


def test_wide_parquet_nulls_and_nans(home, tmp_path):
    out = tmp_path / "wide.parquet"
    with runfleet.Api(dir=home) as api:
        export_project(api, "exp", path=out, wide=True)
    table = pq.read_table(out)
    assert str(table.schema.field("f").type) == "double"
    assert str(table.schema.field("i").type) == "int64"
    assert str(table.schema.field("b").type) == "bool"
    assert str(table.schema.field("s").type) == "string"
    assert str(table.schema.field("big").type) == "string"  # beyond int64: kept as text
    rows = table.to_pylist()
    alpha = [r for r in rows if r["_run_name"] == "alpha"]
    f_values = [r["f"] for r in alpha if r["f"] is not None]
    assert same_list(f_values, [*FLOATS[:4], 42.0, *FLOATS[4:]])
    assert [r["big"] for r in alpha if r["big"] is not None] == [str(2**70)]
    assert [r["i"] for r in alpha if r["i"] is not None] == INTS
    assert all(r["f"] is None for r in rows if r["_run_name"] == "beta")


def test_wide_jsonl_omits_missing_keys(home, tmp_path):
    out = tmp_path / "wide.jsonl"
    with runfleet.Api(dir=home) as api:
        export_project(api, "exp", path=out, wide=True)
    objs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    beta = [o for o in objs if o["_run_name"] == "beta"]
    assert [sorted(k for k in o if not k.startswith("_")) for o in beta] == [["loss"]] * 5
    alpha_2 = [o for o in objs if o["_run_name"] == "alpha" and o["_step"] == 2]
    assert alpha_2[0]["f"] == "NaN"


def test_stream_selection(tmp_path):
    runfleet.init(project="sys", dir=tmp_path, system_metrics=False)
    runfleet.log({"loss": 1.0, "system/cpu": 12.5})
    runfleet.finish()
    with runfleet.Api(dir=tmp_path) as api:
        everything = read_long(_csv(api, "sys"))
        training = read_long(_csv(api, "sys", stream="default"))
        system = read_long(_csv(api, "sys", stream="system"))
    assert set(everything["key"]) == {"loss", "system/cpu"}
    assert set(training["key"]) == {"loss"}
    assert set(system["key"]) == {"system/cpu"}


def _csv(api: runfleet.Api, project: str, **kwargs: object) -> io.StringIO:
    buf = io.StringIO()
    export_project(api, project, path=buf, **kwargs)  # type: ignore[arg-type]
    buf.seek(0)
    return buf


def test_parquet_needs_a_path(home):
    with runfleet.Api(dir=home) as api, pytest.raises(ValueError, match="file path"):
        export_project(api, "exp", fmt="parquet", path="-")


# -- text UTF-8 cannot encode, stored below the tracking API (an older version, an import) ---
LONE = "a\ud800b"


@pytest.fixture
def surrogate_home(tmp_path):
    """Project "p" whose run holds a lone surrogate in a logged text value, a tag and its
    config, written through the store as an importer writes (log() refuses such text)."""
    from runfleet.store import codec
    from runfleet.store.base import SeriesChunk, WriteBatch
    from runfleet.store.sqlite import SQLiteStore

    store = SQLiteStore.open(tmp_path / "runfleet.db")
    run = store.create_run("p", "r1", "imported", tags=["\ud800"], config={"c": LONE})
    times = np.array([1.7e9, 1.7e9 + 1])
    store.write(WriteBatch(series=[
        SeriesChunk(run.rid, "s", codec.JSON, np.array([0, 1]), times, [LONE, "ok"]),
        SeriesChunk(run.rid, "v", codec.FLOAT, np.array([0, 1]), times, np.array([1.0, 2.0])),
    ]))
    store.close()
    return tmp_path


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_escapes_stored_lone_surrogates(surrogate_home, tmp_path, fmt, wide):
    out = tmp_path / f"out.{fmt}"
    with runfleet.Api(dir=surrogate_home) as api:
        # long: 4 points + 7 run rows (1 config key, no summary, 6 run fields)
        assert export_project(api, "p", fmt=fmt, path=out, wide=wide) == (2 if wide else 11)
    if fmt == "parquet":
        texts = [str(v) for v in pq.read_table(out).to_pydict()[
            "s" if wide else "value_text"] if v is not None]
        assert "a\\ud800b" in texts
    else:
        text = out.read_text(encoding="utf-8")  # valid UTF-8 throughout
        assert "a\\ud800b" in text
    if not wide:
        values = read_long(out)["value"].tolist()
        assert values[:2] == (["a\\ud800b", "ok"] if fmt != "jsonl" else [LONE, "ok"])


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_cli_export_to_stdout_with_stored_lone_surrogates(surrogate_home, fmt):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "runfleet.cli", "export", "-p", "p",
                           "--dir", str(surrogate_home), "-F", fmt], capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"Traceback" not in proc.stderr
    out = proc.stdout.decode("utf-8")  # strict: the output is valid UTF-8
    assert "a\\ud800b" in out
