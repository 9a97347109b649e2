"""The MLflow sink as MLflow itself shows it: read through mlflow's public API, not read_project."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient

import runfleet
from runfleet.errors import RunfleetError
from runfleet.sinks import resolve_sinks, sink_class
from runfleet.sinks.base import RunInfo
from runfleet.sinks.fanout import close_all
from runfleet.sinks.mlflow import (
    MAX_PARAM_VALUE_LENGTH,
    MLflowSink,
    decode_param,
    encode_param,
    mlflow_name,
)

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def db_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture
def uri(db_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test database as MLflow's default tracking URI (MLFLOW_TRACKING_URI)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", db_uri)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    return db_uri


@pytest.fixture
def sink(uri: str) -> Iterator[MLflowSink]:
    s = MLflowSink()  # the default URI: MLFLOW_TRACKING_URI
    yield s
    s.close()


def project() -> str:
    return f"mlf-{uuid.uuid4().hex[:10]}"


def frame(name: str) -> dict[str, dict[str, Any]]:
    """mlflow.search_runs' rows of experiment ``name``, by runfleet run id."""
    df = mlflow.search_runs(experiment_names=[name])
    return {str(row["tags.runfleet.run_id"]): {str(k): v for k, v in row.items()}
            for _, row in df.iterrows()}


def history(uri: str, mlflow_id: str, key: str) -> list[tuple[int, float, int]]:
    found = MlflowClient(uri).get_metric_history(mlflow_id, key)
    return sorted((m.step, m.value, m.timestamp) for m in found)


def test_runs_params_tags_and_metrics_as_mlflow_shows_them(sink: MLflowSink, uri: str) -> None:
    name = project()
    config = {"lr": 3e-4, "epochs": 3, "optim": "adamw_torch", "use_peft": True,
              "seed_text": "42", "dropout": None, "layers": [1, 2]}
    sink.start_run(RunInfo(name, "par-1", "parent", group="g", config=config, tags=("x",)))
    assert sink.tracking_uri == uri
    sink.start_run(RunInfo(name, "kid-1", "child", config={"lr": 1e-4}, parent="par-1",
                           parent_step=20))
    sink.log("par-1", [(0, T0, {"loss": 2.5, "flag": True, "note": "warm"}),
                       (3, T0 + 1.2345, {"loss": math.nan, "flag": False})])
    sink.log("par-1", [(10, T0 + 2, {"loss": math.inf, "grad": -math.inf, "cfg": {"a": 1}})])
    sink.log("kid-1", [(20, T0 + 3, {"loss": 0.5})])
    sink.finish_run("par-1", "completed")
    sink.finish_run("kid-1", "failed")

    rows = frame(name)
    p, c = rows["par-1"], rows["kid-1"]
    assert (p["status"], p["tags.runfleet.status"]) == ("FINISHED", "completed")
    assert (c["status"], c["tags.runfleet.status"]) == ("FAILED", "failed")
    assert p["tags.mlflow.runName"] == "parent" and c["tags.mlflow.runName"] == "child"
    assert p["tags.runfleet.group"] == "g"
    assert json.loads(p["tags.runfleet.tags"]) == ["x"]
    # params: JSON for non-strings, strings as-is unless they would parse as JSON
    assert p["params.lr"] == "0.0003" and p["params.epochs"] == "3"
    assert p["params.optim"] == "adamw_torch" and p["params.use_peft"] == "true"
    assert p["params.seed_text"] == '"42"' and p["params.dropout"] == "null"
    assert p["params.layers"] == "[1, 2]"
    # lineage: params, tags, and MLflow's own parent link
    assert c["params.parent"] == "par-1" and c["params.parent_step"] == "20"
    assert c["tags.runfleet.parent"] == "par-1" and c["tags.runfleet.parent_step"] == "20"
    assert c["tags.mlflow.parentRunId"] == p["run_id"]
    # metrics: steps, ms timestamps, NaN kept, infinities as MLflow's SQL store keeps them
    loss = history(uri, p["run_id"], "loss")
    assert [(s, t) for s, _, t in loss] == [(0, 1_700_000_000_000), (3, 1_700_000_001_234),
                                             (10, 1_700_000_002_000)]
    assert loss[0][1] == 2.5 and math.isnan(loss[1][1])
    assert loss[2][1] == sys.float_info.max
    assert history(uri, p["run_id"], "grad")[0][1] == -sys.float_info.max
    assert [v for _, v, _ in history(uri, p["run_id"], "flag")] == [1.0, 0.0]
    run = MlflowClient(uri).get_run(p["run_id"])
    assert sorted(run.data.metrics) == ["flag", "grad", "loss"]  # "note" and "cfg" left out
    assert run.data.tags["runfleet.values_left_out"] == "2"
    assert sink.left_out["par-1"] == 2
    # read_project turns the stored infinities back into infinities
    back = {r.run_id: r for r in sink.read_project(name)}
    assert back["par-1"].points["loss"][2] == (10, math.inf)
    assert back["par-1"].points["grad"] == [(10, -math.inf)]
    assert back["par-1"].config == config


def test_status_changes_map_to_mlflow_statuses(sink: MLflowSink, uri: str) -> None:
    name, client = project(), MlflowClient(uri)

    def state(rid: str) -> tuple[str, str]:
        row = frame(name)[rid]
        return row["status"], row["tags.runfleet.status"]

    sink.start_run(RunInfo(name, "st-1", "one"))
    sink.start_run(RunInfo(name, "st-2", "two"))
    sink.start_run(RunInfo(name, "st-3", "three"))
    assert state("st-1") == ("RUNNING", "running")
    sink.set_status("st-1", "stopped")
    assert state("st-1") == ("KILLED", "stopped")
    assert client.get_run(frame(name)["st-1"]["run_id"]).info.end_time is not None
    sink.set_status("st-1", "running")
    assert state("st-1") == ("RUNNING", "running")
    sink.set_status("st-1", "pending")
    assert state("st-1") == ("SCHEDULED", "pending")
    sink.set_status("st-1", "running")
    sink.finish_run("st-1", "deleted")
    assert state("st-1") == ("KILLED", "deleted")
    sink.finish_run("st-2", "stopped")
    assert state("st-2") == ("KILLED", "stopped")
    sink.close()  # st-3 was left running: terminated, runfleet's last status kept
    assert state("st-3") == ("KILLED", "running")
    with pytest.raises(RunfleetError, match="not open"):
        sink.log("st-3", [(1, T0, {"loss": 1.0})])


def test_a_resumed_run_continues_the_same_mlflow_run(uri: str) -> None:
    name = project()
    info = RunInfo(name, "res-1", "resumable", config={"lr": 0.01})
    first = MLflowSink(uri)
    first.start_run(info)
    first.log("res-1", [(0, T0, {"loss": 1.0})])
    first.finish_run("res-1", "stopped")
    mlflow_id = frame(name)["res-1"]["run_id"]

    second = MLflowSink(uri)  # another process: only the tag can find the run
    second.start_run(RunInfo(name, "res-1", "resumable", config={"lr": 0.01, "extra": 2},
                             resumed=True))
    rows = frame(name)
    assert len(rows) == 1 and rows["res-1"]["run_id"] == mlflow_id
    assert (rows["res-1"]["status"], rows["res-1"]["tags.runfleet.status"]) == ("RUNNING",
                                                                                  "running")
    second.log("res-1", [(1, T0 + 5, {"loss": 0.5})])
    second.finish_run("res-1", "completed")
    row = frame(name)["res-1"]
    assert (row["status"], row["params.lr"], row["params.extra"]) == ("FINISHED", "0.01", "2")
    assert [s for s, _, _ in history(uri, mlflow_id, "loss")] == [0, 1]

    # a resumed run MLflow never saw gets a new MLflow run
    second.start_run(RunInfo(name, "res-2", "unknown before", resumed=True))
    second.finish_run("res-2", "completed")
    assert sorted(frame(name)) == ["res-1", "res-2"]


def test_config_changes_keep_the_first_param_and_tag_the_latest(sink: MLflowSink,
                                                                 uri: str) -> None:
    name = project()
    long = "x" * (MAX_PARAM_VALUE_LENGTH + 500)
    sink.start_run(RunInfo(name, "cf-1", "config", config={"lr": 0.01, "prompt": long}))
    sink.update_config("cf-1", {"lr": 0.02, "prompt": long, "batch": 8})
    sink.update_config("cf-1", {"lr": 0.02, "prompt": long, "batch": 8})  # no change: no-op
    sink.finish_run("cf-1", "completed")

    row = frame(name)["cf-1"]
    assert row["params.lr"] == "0.01" and row["tags.runfleet.config.lr"] == "0.02"
    assert row["params.batch"] == "8"
    stored = row["params.prompt"]
    assert len(stored) == MAX_PARAM_VALUE_LENGTH
    assert stored.endswith(f"...[truncated by runfleet: {len(long)} chars]")
    back = sink.read_project(name)[0].config
    assert back["lr"] == 0.02 and back["batch"] == 8 and back["prompt"] == stored


@pytest.mark.parametrize("value", [0, -7, 10**30, 0.1, 1e-300, math.inf, -math.inf, True, False,
                                   None, "", "adamw", "3", "true", "null", '"q"', "NaN",
                                   "[1]", " 4 ", "{x}", [1, "a"], {"k": [1.5]}])
def test_param_values_round_trip(value: Any) -> None:
    text = encode_param(value)
    assert isinstance(text, str)
    back = decode_param(text)
    assert back == value and type(back) is type(value)
    if isinstance(value, str):  # plain words stay readable in the MLflow UI
        assert text == value or text == json.dumps(value)


def test_param_values_json_cannot_hold() -> None:
    assert encode_param(math.nan) == "NaN" and math.isnan(decode_param("NaN"))
    assert decode_param(encode_param((1, 2))) == [1, 2]  # JSON has lists only
    assert decode_param(encode_param(Path("/a"))) == "/a"  # objects: their str()
    assert decode_param(encode_param(Path("3"))) == "3"


NAMES = ["train/loss", "eval/acc@1", "a//b", "/lead", "trail/", "../up", "..", ".", "a/./b",
         "x:y", "ünï-cödé ok", "k" * 300, "", "a@b", "a#b", "(paren)", "tab\there"]


def test_names_mlflow_rejects_are_sanitized_and_read_back(sink: MLflowSink, uri: str) -> None:
    from mlflow.utils.validation import path_not_unique, validate_param_and_metric_name

    for key in NAMES:
        mapped = mlflow_name(key)
        assert mapped == mlflow_name(key) and len(mapped) <= 250
        assert validate_param_and_metric_name(mapped) and not path_not_unique(mapped), key
        assert (mapped == key) == (key in ("train/loss", "ünï-cödé ok"))
    assert len({mlflow_name(k) for k in NAMES}) == len(NAMES)

    name = project()
    sink.start_run(RunInfo(name, "nm-1", "names", config={k: i for i, k in enumerate(NAMES)}))
    sink.log("nm-1", [(i, T0 + i, {k: float(i) for k in NAMES}) for i in range(3)])
    sink.finish_run("nm-1", "completed")

    mlflow_id = frame(name)["nm-1"]["run_id"]
    assert [v for _, v, _ in history(uri, mlflow_id, mlflow_name("eval/acc@1"))] == [0, 1, 2]
    run = sink.read_project(name)[0]
    assert run.config == {k: i for i, k in enumerate(NAMES)}
    assert run.points == {k: [(0, 0.0), (1, 1.0), (2, 2.0)] for k in NAMES}


def test_more_than_1000_metrics_in_one_call(sink: MLflowSink, uri: str) -> None:
    name = project()
    sink.start_run(RunInfo(name, "big-1", "big"))
    sink.log("big-1", [(s, T0 + s, {"a": s * 0.5, "b": -s, "c": s % 2 == 0}) for s in range(700)])
    sink.finish_run("big-1", "completed")
    mlflow_id = frame(name)["big-1"]["run_id"]
    for key in ("a", "b", "c"):
        assert [s for s, _, _ in history(uri, mlflow_id, key)] == list(range(700))
    assert sink.read_project(name)[0].points["a"][-1] == (699, 349.5)


def test_file_store_uri_keeps_infinity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    file_uri = (tmp_path / "mlruns").as_uri()
    s = MLflowSink(file_uri)
    s.start_run(RunInfo("files", "f-1", "file run", config={"lr": 0.5}))
    s.log("f-1", [(0, T0, {"loss": math.inf}), (1, T0 + 1, {"loss": math.nan})])
    s.finish_run("f-1", "completed")
    client = MlflowClient(file_uri)
    exp = client.get_experiment_by_name("files")
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id])
    values = [m.value for m in client.get_metric_history(run.info.run_id, "loss")]
    assert values[0] == math.inf and math.isnan(values[1])
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.5"}


def test_unusable_uris_raise_a_clear_error_from_start_run(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bad = f"sqlite:///{blocker}/mlflow.db"
    s = MLflowSink(bad)  # constructing never touches the target
    with pytest.raises(RunfleetError, match="MLflow sink cannot"):
        s.start_run(RunInfo("p", "r", "n"))
    with pytest.raises(RunfleetError, match="bogus-scheme"):
        MLflowSink("bogus-scheme://nowhere").start_run(RunInfo("p", "r", "n"))


def test_missing_mlflow_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'runfleet\[mlflow\]'"):
        MLflowSink()


def test_through_runfleet_init(uri: str, home: Path) -> None:
    assert sink_class("mlflow") is MLflowSink
    assert isinstance(resolve_sinks(["runfleet", "mlflow"])[0], MLflowSink)
    s = MLflowSink(uri)
    name = project()
    run = runfleet.init(project=name, name="via-init", dir=home, config={"lr": 0.1},
                        sinks=[s])
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1), "phase": "train"}, step=step)
    run.finish()
    close_all()
    row = frame(name)[run.id]
    assert (row["status"], row["tags.runfleet.status"]) == ("FINISHED", "completed")
    assert row["params.lr"] == "0.1"
    (back,) = s.read_project(name)
    assert back.points["loss"] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
