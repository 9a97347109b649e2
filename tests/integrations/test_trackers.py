"""The 4-config demo experiment logged to trackio, MLflow and TensorBoard besides runfleet's
store, with a run stopped by an op and a warm clone; each tracker's data is then read back
through that tracker's own public API or files (not through runfleet's sink code) and
compared with runfleet's store point by point."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import runfleet
from runfleet import Experiment
from runfleet.sinks.mlflow import MLflowSink, encode_param
from runfleet.sinks.tensorboard import TensorBoardSink
from runfleet.sinks.trackio import TrackioSink

NAME = "trackers-demo"


@dataclass
class Demo:
    home: Path
    mlflow_uri: str
    tb_logdir: Path
    stopped: str  # id of the run stopped by an op
    clone: str  # id of its warm clone
    runs: dict[str, Any]  # runfleet's own view: id -> ApiRun
    points: dict[str, dict[str, list[tuple[int, Any]]]]  # id -> key -> [(step, value)]
    results: pd.DataFrame


def _store_points(run: Any) -> dict[str, list[tuple[int, Any]]]:
    out = {}
    for key in run.keys(stream="default"):
        series = run.series(key)
        out[key] = [(int(s), v.item() if hasattr(v, "item") else v)
                    for s, v in zip(series.steps.tolist(), series.values)]
    return out


def _control(home: Path, errors: list[BaseException], ids: dict[str, str]) -> None:
    """Stop run-1 once its first chunk is done, then warm-clone it (from another thread,
    through Experiment.attach, as a user would from another process)."""
    try:
        deadline = time.monotonic() + 300
        while True:
            if time.monotonic() > deadline:
                raise AssertionError("run-1 never finished a chunk")
            if (home / "experiments" / NAME / "experiment.json").exists():
                exp = Experiment.attach(NAME, dir=home)
                runs = exp.runs()
                row = runs[runs["name"] == "run-1"]
                if len(row) and int(row["chunks_done"].iloc[0]) >= 1:
                    break
            time.sleep(0.05)
        ids["stopped"] = str(row["id"].iloc[0])
        assert exp.stop(ids["stopped"], timeout=120).status == "applied"
        child = exp.clone(ids["stopped"], changes={"training_args.learning_rate": 1e-3},
                          warm_start=True, timeout=120)
        assert isinstance(child, str), child  # the new run's id once applied
        ids["clone"] = child
    except BaseException as exc:  # reported by the fixture
        errors.append(exc)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    from runfleet.demo.sft_demo import demo_space, prepare
    from runfleet.demo.tiny import load_model
    from runfleet.home import Home

    root = tmp_path_factory.mktemp("trackers")
    home = root / "home"
    mlflow_uri = f"sqlite:///{root / 'mlflow.db'}"
    tb_logdir = root / "tb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUNFLEET_SYSTEM_METRICS", "0")
        mp.setenv("RUNFLEET_WORKER_THREADS", "1")
        model_path, train, evaluation = prepare(Home.resolve(home))
        errors: list[BaseException] = []
        ids: dict[str, str] = {}
        control = threading.Thread(target=_control, args=(home, errors, ids), daemon=True)
        control.start()
        exp = Experiment(NAME, dir=home, trackers=(
            "runfleet", "trackio", MLflowSink(tracking_uri=mlflow_uri),
            TensorBoardSink(logdir=str(tb_logdir))))
        results = exp.run_fit(demo_space(model_path, max_steps=8, eval_steps=4), load_model,
                              train, evaluation, num_chunks=2, workers=1, progress=False)
        control.join(60)
        assert not errors, errors
    api = runfleet.Api(home)
    runs = {r.id: r for r in api.runs(NAME)}
    yield Demo(home, mlflow_uri, tb_logdir, ids["stopped"], ids["clone"], runs,
               {rid: _store_points(r) for rid, r in runs.items()}, results)
    api.close()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b) and type(a) is type(b)


def test_experiment_shape(demo: Demo) -> None:
    statuses = {r.name: r.status for r in demo.runs.values()}
    assert statuses == {"run-1": "stopped", "run-2": "completed", "run-3": "completed",
                        "run-4": "completed", "run-1.c1": "completed"}
    clone = demo.runs[demo.clone]
    assert clone.config["warm_start"] is True and clone.parent_step is not None
    for points in demo.points.values():
        assert {"loss", "learning_rate", "eval_loss"} <= set(points)


def test_trackio_holds_every_run_config_and_point(demo: Demo) -> None:
    import trackio

    db = Path(TrackioSink().data_dir()) / f"{NAME}.db"
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        configs = {rid: (name, json.loads(cfg)) for rid, name, cfg in
                   conn.execute("SELECT run_id, run_name, config FROM configs")}
        metric_rows = conn.execute("SELECT run_id, step, metrics FROM metrics").fetchall()
    assert set(configs) == set(demo.runs)  # one trackio run per runfleet run, same ids
    decode = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
    points: dict[str, dict[str, list[tuple[int, Any]]]] = {rid: {} for rid in configs}
    for rid, step, metrics in metric_rows:
        for key, value in json.loads(metrics).items():
            key = key[2:] if key.startswith("__") else key  # trackio's reserved-key rename
            value = decode.get(value, value) if isinstance(value, str) else value
            points[rid].setdefault(key, []).append((step, value))
    for rid, run in demo.runs.items():
        name, config = configs[rid]
        assert name == run.name and config["_Group"] == NAME
        for key, value in run.config.items():
            assert _same(config[key], value), (key, config[key], value)
        if run.parent:
            assert (config["parent"], config["parent_step"]) == (run.parent, run.parent_step)
            assert config["warm_start"] is True
        mine = demo.points[rid]
        assert set(points[rid]) == set(mine)
        for key, expected in mine.items():
            got = sorted(points[rid][key], key=lambda p: p[0])
            assert len(got) == len(expected) and all(
                s1 == s2 and _same(v1, v2) for (s1, v1), (s2, v2) in zip(got, expected)), key
    # trackio's public API shows the same runs, configs and statuses
    listed = {r.id: r for r in trackio.Api().runs(NAME)}
    assert set(listed) == set(demo.runs)
    for rid, r in listed.items():
        assert r.name == demo.runs[rid].name
        assert r.config is not None and r.config["peft_config.r"] == \
            demo.runs[rid].config["peft_config.r"]
    stopped_alerts = [a["title"] for a in listed[demo.stopped].alerts()]
    assert stopped_alerts and stopped_alerts[-1] == "run stopped"
    alerts = trackio.Api().alerts(NAME)
    titles: dict[str, list[str]] = {}
    for alert in alerts:
        titles.setdefault(alert["run"], []).append(alert["title"])
    assert "run stopped" in titles["run-1"] and "run completed" not in titles["run-1"]
    for name in ("run-2", "run-3", "run-4", "run-1.c1"):
        assert titles[name][-1] == "run completed"


def test_results_read_back_from_trackio_equal_the_store(demo: Demo) -> None:
    exp = Experiment.attach(NAME, dir=demo.home)
    mine = exp.results().sort_values("id").reset_index(drop=True)
    theirs = exp.results(source="trackio").sort_values("id").reset_index(drop=True)
    assert list(theirs["status"]) == list(mine["status"])
    metric_cols = [c for c in mine.columns if c.startswith(("last_", "best_"))]
    assert metric_cols and set(metric_cols) <= set(theirs.columns)
    pd.testing.assert_frame_equal(theirs[metric_cols], mine[metric_cols])


def test_mlflow_holds_every_run_param_and_metric(demo: Demo,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", demo.mlflow_uri)  # mlflow's global URI unset
    frame = mlflow.search_runs(experiment_names=[NAME], output_format="pandas")
    assert isinstance(frame, pd.DataFrame) and len(frame) == len(demo.runs)
    client = MlflowClient(demo.mlflow_uri)
    for _, row in frame.iterrows():
        rid = row["tags.runfleet.run_id"]
        run = demo.runs[rid]
        assert row["tags.mlflow.runName"] == run.name
        expected_status = "stopped" if rid == demo.stopped else "completed"
        assert row["tags.runfleet.status"] == expected_status
        assert row["status"] == ("KILLED" if rid == demo.stopped else "FINISHED")
        for key, value in run.config.items():
            assert row[f"params.{key}"] == encode_param(value), key
        for key, expected in demo.points[rid].items():
            numeric = [(s, float(v)) for s, v in expected
                       if isinstance(v, (int, float)) and not isinstance(v, str)]
            if not numeric:
                continue
            history = client.get_metric_history(row["run_id"], key)
            got = sorted((m.step, m.value) for m in history)
            assert len(got) == len(numeric), key
            assert all(s1 == s2 and _same(v1, v2) for (s1, v1), (s2, v2) in
                       zip(got, sorted(numeric))), key


def test_tensorboard_holds_every_run_and_scalar(demo: Demo) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    run_dirs = sorted(p.parent for p in (demo.tb_logdir / NAME).rglob("events.out.tfevents.*"))
    assert len(set(run_dirs)) == len(demo.runs)
    seen = set()
    for run_dir in sorted(set(run_dirs)):
        acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0, "scalars": 0})
        acc.Reload()
        text = {tag: [tensor_util.make_ndarray(e.tensor_proto).item().decode()
                      for e in acc.Tensors(tag)]
                for tag in acc.Tags()["tensors"] if tag.startswith("runfleet/")}
        rid = json.loads(text["runfleet/run"][-1])["run_id"]
        seen.add(rid)
        config = json.loads(text["runfleet/config"][-1])
        for key, value in demo.runs[rid].config.items():
            assert _same(config[key], value), key
        expected_status = "stopped" if rid == demo.stopped else "completed"
        assert expected_status in text["runfleet/status"][-1]
        for key, expected in demo.points[rid].items():
            numeric = [(s, float(v)) for s, v in expected
                       if isinstance(v, (int, float)) and not isinstance(v, str)]
            if not numeric:
                continue
            events = acc.Tensors(key)
            got = sorted((e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                         for e in events)
            assert len(got) == len(numeric), key
            assert all(s1 == s2 and (v1 == v2 or (np.isnan(v1) and np.isnan(v2)))
                       for (s1, v1), (s2, v2) in zip(got, sorted(numeric))), key
    assert seen == set(demo.runs)
