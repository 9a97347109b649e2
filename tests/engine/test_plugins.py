"""A third party extends runfleet by installing a package: the example package
(``tests/plugins/example_plugin``) registers a trainer, an executor, a tracker and a
stopping policy through entry points, and an experiment uses all four by name, with real
worker processes that find the trainer the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runfleet import Experiment, GridSearch, List, plugins
from runfleet.api import Api
from runfleet.engine.backend import backend_class, trainers
from runfleet.engine.executor import make_executor
from runfleet.sinks import sink_class, sink_names
from runfleet.store.base import RunStatus


def test_each_group_lists_runfleets_own_and_the_packages_names(example_plugin: Path) -> None:
    assert {"sft", "dpo", "grpo", "torch", "example-mean"} <= set(trainers())
    assert {"local", "example-local"} <= set(plugins.names(plugins.EXECUTORS))
    assert {"runfleet", "trackio", "mlflow", "tensorboard", "example-jsonl"} <= set(sink_names())
    assert {"successive-halving", "median", "example-threshold"} <= set(
        plugins.names(plugins.STOPPING))
    assert backend_class("example-mean").__module__ == "runfleet_example_plugin.backend"
    assert sink_class("example-jsonl").name == "example-jsonl"


def test_unknown_names_list_what_is_installed() -> None:
    with pytest.raises(ValueError, match=r"unknown trainer 'nope'; installed: .*sft"):
        backend_class("nope")
    with pytest.raises(ValueError, match=r"unknown executor 'nope'; installed: .*local"):
        make_executor("nope", None)


def no_model(config: Any) -> None:
    """The example trainer builds its own parameter."""


def test_an_experiment_uses_a_packages_trainer_executor_tracker_and_policy(
        example_plugin: Path, home: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from runfleet_example_plugin.backend import MeanConfig
    from runfleet_example_plugin.executor import ExampleExecutor

    monkeypatch.setenv("EXAMPLE_JSONL_DIR", str(tmp_path / "jsonl"))
    rows = [{"y": float(i % 7)} for i in range(40)]
    exp = Experiment("plugged", dir=home, trackers=("runfleet", "example-jsonl"))
    # no trainer named: MeanConfig says its default is the package's "example-mean"
    space = GridSearch(MeanConfig(learning_rate=List([0.05, 0.2]), batch_size=4, max_steps=8))
    # every eval_loss is above -1: the package's policy stops both runs after chunk 1
    exp.run_fit(space, no_model, rows, rows[:8], num_chunks=4, workers=1,
                executor="example-local", progress=False,
                stopping={"policy": "example-threshold", "metric": "eval_loss",
                          "threshold": -1.0})

    assert exp.last_controller is not None
    assert isinstance(exp.last_controller.executor, ExampleExecutor)
    runs = exp.runs().set_index("name")
    assert list(runs["trainer"]) == ["example-mean", "example-mean"]
    assert list(runs["status"]) == [RunStatus.STOPPED, RunStatus.STOPPED]
    assert list(runs["chunks_done"]) == [1, 1]
    stops = [op for op in exp.ops() if op.source == "policy:AboveThreshold"]
    assert len(stops) == 2 and all("above -1.0" in op.args["reason"] for op in stops)

    tracked = sink_class("example-jsonl")().read_project("plugged")
    with Api(home) as api:
        for run in api.runs("plugged"):
            mine = next(t for t in tracked if t.run_id == run.id)
            history = run.history(keys=["loss"])
            assert [(int(s), float(v)) for s, v in zip(history["_step"], history["loss"])] == \
                mine.points["loss"] == [(1, mine.points["loss"][0][1]),
                                        (2, mine.points["loss"][1][1])]
            assert mine.status == "stopped" and mine.config["trainer"] == "example-mean"
