"""A scheduling policy is told which worker it places a run on and may pass over one: the
controller then offers the other idle workers a run (it used to stop at the first idle
worker, so one passed over stalled the whole experiment)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runfleet import Experiment, GridSearch, List
from runfleet.engine.policy import FairRoundRobin, Schedulable, SchedulingPolicy
from runfleet.fit import TorchConfig
from tests.engine.models import make_model, regression_data


class OnlyWorker(SchedulingPolicy):
    """Fair round robin on one worker; nothing for the others."""

    def __init__(self, worker: int) -> None:
        self.worker = worker

    def choose(self, runs: Sequence[Schedulable], worker: int) -> str | None:
        return FairRoundRobin().choose(runs, worker) if worker == self.worker else None


def test_a_policy_that_passes_over_a_worker_does_not_stall_the_others(home: Path) -> None:
    space = GridSearch(TorchConfig(hidden=List([4, 8]), learning_rate=0.01, max_steps=4,
                                   per_device_train_batch_size=8), trainer="torch")
    exp = Experiment("picky", dir=home)
    results = exp.run_fit(space, make_model, regression_data(32), num_chunks=2, workers=2,
                          policy=OnlyWorker(1), progress=False)
    assert list(results["status"]) == ["completed", "completed"]
    assert list(exp.runs()["step"]) == [4, 4]
