"""Scans by x range and min/max downsampling (the dashboard's chart query)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import runfleet
from runfleet.downsample import min_max_buckets


def _run_with_spike(home: Path, n: int = 100_000, spike_at: int = 73_421) -> str:
    run = runfleet.init(project="ds", dir=home)
    rng = np.random.default_rng(0)
    values = rng.normal(0.0, 0.01, n) + 1.0
    values[spike_at] = 50.0
    for v in values.tolist():
        runfleet.log({"loss": v})
    runfleet.finish()
    return run.id


def test_one_point_spike_survives_default_downsampling(home: Path) -> None:
    run_id = _run_with_spike(home)
    r = runfleet.Api(home).run("ds", run_id)
    df = r.downsample("loss", buckets=1000)
    assert len(df) == 1000
    assert df["max"].max() == 50.0
    assert int(df["count"].sum()) == 100_000
    zoom = r.downsample("loss", buckets=1000, start=73_000, end=73_999)
    assert len(zoom) == 1000 and (zoom["count"] == 1).all()  # exact points when few enough
    assert zoom.loc[zoom["x"] == 73_421, "max"].item() == 50.0


def test_scan_reads_a_step_range_exactly(home: Path) -> None:
    run = runfleet.init(project="scan", dir=home)
    for i in range(10_000):
        runfleet.log({"a": i * 0.1, "b": -i})
    runfleet.finish()
    r = runfleet.Api(home).run("scan", run.id)
    part = r.scan(keys=["a"], start=5_000, end=5_009)
    assert part["step"].tolist() == list(range(5_000, 5_010))
    assert part["value"].tolist() == [i * 0.1 for i in range(5_000, 5_010)]
    both = r.scan(start=0, end=1)
    assert sorted(both["key"].unique()) == ["a", "b"]
    by_time = r.scan(keys=["b"], x="relative", start=0)
    assert len(by_time) == 10_000


def test_min_max_buckets_edges() -> None:
    xs = np.arange(10)
    vals = np.array([0, 1, math.nan, 3, 4, 5, 6, 7, 8, math.inf])
    out = min_max_buckets(xs, vals, buckets=2)
    assert out["min"].tolist() == [0.0, 5.0] and out["max"].tolist() == [4.0, math.inf]
    assert out["count"].tolist() == [5, 5]
    with pytest.raises(ValueError):
        min_max_buckets(xs, vals, buckets=0)
    text = min_max_buckets(xs, np.array(list("abcdefghij"), dtype=object), buckets=3)
    assert len(text["x"]) == 3


def test_history_samples_and_x_axis_errors(home: Path) -> None:
    run = runfleet.init(project="h", dir=home)
    for i in range(1000):
        runfleet.log({"a": float(i)})
    runfleet.finish()
    r = runfleet.Api(home).run("h", run.id)
    sampled = r.history(samples=10)
    assert len(sampled) == 10 and sampled["a"].iloc[0] == 0.0 and sampled["a"].iloc[-1] == 999.0
    with pytest.raises(ValueError, match="x="):
        r.history(x="nonexistent")
    with pytest.raises(ValueError, match="x must be"):
        r.downsample("a", x="bogus")


def test_history_by_a_metric_not_in_keys_and_mixed_int_float_downsampling(home: Path) -> None:
    run = runfleet.init(project="mix", dir=home, config={"opt": {"lr": 0.1}})
    for epoch, loss in enumerate([0, 1.5, 99.0, 0.5, 2]):  # ints and floats in one key
        runfleet.log({"epoch": epoch, "loss": loss})
    runfleet.finish()
    api = runfleet.Api(home)
    r = api.run("mix", run.id)
    h = r.history(keys=["loss"], x="epoch")
    assert h["epoch"].tolist() == [0, 1, 2, 3, 4] and h["loss"].tolist() == [0, 1.5, 99.0, 0.5, 2]
    df = r.downsample("loss", buckets=2)
    assert df["max"].max() == 99.0 and int(df["count"].sum()) == 5
    assert len(api.runs("mix", filters={"config.opt.lr": 0.1})) == 1
    with pytest.raises(ValueError, match="unknown filter operator"):
        api.runs("mix", filters={"config.nope": {"$gtt": 1}})
