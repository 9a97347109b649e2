"""The engine end to end on the plain torch backend: real worker processes, real store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import runfleet
from runfleet import Experiment, GridSearch, List
from runfleet.engine.checkpoint import LocalCheckpointStore
from runfleet.engine.chunking import ChunkingError
from runfleet.fit import TorchConfig
from tests.engine.models import make_model, make_model_killing_worker, regression_data


def losses(home: Path, project: str) -> dict[int, list[float]]:
    """Per-step losses of each run of ``project``, by the run's ``hidden`` size."""
    api = runfleet.Api(home)
    return {int(r.config["hidden"]): r.history(keys=["loss"])["loss"].tolist()
            for r in api.runs(project)}


def final_weights(home: Path, exp: str, run_id: str) -> dict[str, torch.Tensor]:
    root = home / "experiments" / exp / "checkpoints"
    (path,) = (root / run_id).glob("chunk-*.pt")
    return LocalCheckpointStore(root).load(f"{run_id}/{path.stem}")["model"]


def test_chunked_interleaved_training_equals_training_alone(home: Path) -> None:
    data = regression_data(96)
    base = dict(learning_rate=0.01, per_device_train_batch_size=8, num_train_epochs=2,
                lr_scheduler_type="cosine", warmup_steps=3)
    alone = Experiment("alone", dir=home)
    alone.run_fit(TorchConfig(hidden=8, **base), make_model, data, num_chunks=1, workers=1,
                  progress=False)
    both = Experiment("both", dir=home)
    both.run_fit(GridSearch(TorchConfig(hidden=List([8, 16]), **base), trainer="torch"),
                 make_model, data, num_chunks=4, workers=1, progress=False)
    solo = losses(home, "alone")[8]
    chunked = losses(home, "both")[8]
    assert len(solo) == len(chunked) == 24
    assert np.max(np.abs(np.array(solo) - np.array(chunked))) <= 1e-6
    a_id = runfleet.Api(home).runs("alone")[0].id
    b_id = next(r.id for r in runfleet.Api(home).runs("both") if r.config["hidden"] == 8)
    wa, wb = final_weights(home, "alone", a_id), final_weights(home, "both", b_id)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_metrics_config_and_status_land_in_the_tracker(home: Path) -> None:
    exp = Experiment("tracked", dir=home)
    results = exp.run_fit(
        GridSearch(TorchConfig(hidden=List([4, 8]), per_device_train_batch_size=16,
                               num_train_epochs=1, eval_steps=2), trainer="torch"),
        make_model, regression_data(64), regression_data(32, seed=1), num_chunks=2,
        workers=1, progress=False)
    assert list(results["status"]) == ["completed", "completed"]
    assert {"last_loss", "best_loss", "last_eval_loss", "best_eval_loss"} <= set(results.columns)
    runs = exp.runs()
    assert list(runs["chunks_done"]) == [2, 2] and list(runs["step"]) == [4, 4]
    r = runfleet.Api(home).runs("tracked")[0]
    assert r.config["trainer"] == "torch" and r.config["hidden"] == 4
    h = r.history()
    assert h["_step"].tolist() == [1, 2, 3, 4]
    assert {"loss", "learning_rate", "grad_norm", "epoch", "step", "chunk", "eval_loss"} <= \
        set(h.columns)
    assert h["eval_loss"].notna().tolist() == [False, True, False, True]
    assert h["chunk"].tolist() == [0, 0, 1, 1]


def test_a_failing_config_fails_alone_and_the_others_finish(home: Path) -> None:
    exp = Experiment("fails", dir=home)
    results = exp.run_fit(
        GridSearch(TorchConfig(hidden=List([4, -1, 8]), per_device_train_batch_size=16,
                               num_train_epochs=1), trainer="torch"),
        make_model, regression_data(64), num_chunks=2, workers=1, progress=False)
    assert list(results["status"]) == ["completed", "failed", "completed"]
    failed = runfleet.Api(home).runs("fails", filters={"status": "failed"})[0]
    assert "hidden=-1 is not a valid layer size" in failed.alerts()[-1]["text"]
    assert "Traceback" in failed.alerts()[-1]["text"]


def test_killed_worker_is_replaced_and_no_step_is_logged_twice(home: Path,
                                                             tmp_path: Path) -> None:
    marker = tmp_path / "kill-once"
    marker.touch()
    exp = Experiment("killed", dir=home)
    results = exp.run_fit(
        GridSearch(TorchConfig(hidden=List([4, 8]), per_device_train_batch_size=8,
                               num_train_epochs=1, kill_marker=str(marker), kill_at=3),
                   trainer="torch"),
        make_model_killing_worker, regression_data(64), num_chunks=2, workers=1,
        progress=False)
    assert not marker.exists()  # the worker really was killed
    assert list(results["status"]) == ["completed", "completed"]
    for r in runfleet.Api(home).runs("killed"):
        steps = r.series("loss").steps.tolist()
        assert steps == list(range(1, 9)), steps  # no gap, no duplicate
        assert any(a["title"] == "worker died" for a in r.alerts()) or r.config["hidden"] == 8


def test_errors_before_any_training(home: Path) -> None:
    exp = Experiment("bad", dir=home)
    with pytest.raises(ChunkingError, match="fewer than num_chunks=8"):
        exp.run_fit(TorchConfig(hidden=4, per_device_train_batch_size=16, num_train_epochs=1),
                    make_model, regression_data(64), num_chunks=8, progress=False)
    with pytest.raises(ValueError, match=r"run 2 of 2: learning_rate must be > 0"):
        exp.run_fit(GridSearch(TorchConfig(hidden=4, learning_rate=List([0.1, -1.0])),
                               trainer="torch"), make_model, regression_data(64),
                    progress=False)
    assert not (home / "experiments" / "bad" / "checkpoints").exists()


def test_workers_that_cannot_start_fail_clearly_and_leave_no_lease(home: Path) -> None:
    from runfleet.engine.controller import EngineError
    from tests.engine.models import UnloadableInWorkers

    exp = Experiment("nostart", dir=home)
    space = GridSearch(TorchConfig(hidden=4, learning_rate=0.01, max_steps=2,
                                   per_device_train_batch_size=8))
    with pytest.raises(EngineError, match="workers keep dying before they start"):
        exp.run_fit(space, make_model, UnloadableInWorkers(regression_data(16)), num_chunks=1,
                    workers=1, progress=False)
    assert not (home / "experiments" / "nostart" / "controller.json").exists()
    assert not exp.controller_alive()
