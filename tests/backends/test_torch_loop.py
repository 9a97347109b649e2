"""The plain PyTorch loop backend driven directly: what a warm start (a clone) carries over.
Chunk equivalence, stop and resume and state round trips are in ``test_conformance.py``."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from runfleet.backends.torch_loop import TorchLoopBackend
from runfleet.engine.backend import WorkerResources
from runfleet.engine.chunking import StepPlan
from runfleet.engine.spec import RunSpec
from runfleet.fit import TorchConfig
from tests.backends.conftest import state_tensors
from tests.engine.models import Regressor, regression_data

NUM_TRAIN = 64


def no_dropout_model(config: TorchConfig) -> torch.nn.Module:
    """Without dropout a step's loss depends only on the weights and the batch."""
    return Regressor(int(config["hidden"]), dropout=0.0)


def make_spec(run_id: str, *, hidden: int = 8, lr: float = 0.01, seed: int = 0) -> RunSpec:
    config = TorchConfig(hidden=hidden, learning_rate=lr, per_device_train_batch_size=8,
                         max_steps=8, lr_scheduler_type="cosine", warmup_steps=2)
    plan = StepPlan.build(num_examples=NUM_TRAIN, batch_size=8, epochs=1, max_steps=8,
                          num_chunks=1, seed=11)
    return RunSpec(run_id=run_id, trainer="torch", config=config, plan=plan, seed=seed)


@pytest.fixture
def resources() -> WorkerResources:
    return WorkerResources(device="cpu", train_dataset=regression_data(NUM_TRAIN),
                           eval_dataset=None, create_model_fn=no_dropout_model)


def train(spec: RunSpec, res: WorkerResources, state: dict[str, Any] | None, start: int,
          end: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    backend = TorchLoopBackend(spec, res)
    backend.open(state)
    try:
        steps = [backend.train_step(s, spec.plan.batch_indices(s)) for s in range(start, end)]
        return steps, backend.state()
    finally:
        backend.close()


def test_warm_start_continues_from_the_parent(resources: WorkerResources) -> None:
    parent = make_spec("parent")
    _, state = train(parent, resources, None, 0, 4)
    kept = copy.deepcopy(state)
    child = make_spec("child", lr=0.05, seed=3)
    first = child.plan.batch_indices(0)
    resumed = TorchLoopBackend(parent, resources)
    resumed.open(state)
    parent_loss = resumed.train_step(4, first)["loss"]  # the parent's loss on that batch
    resumed.close()

    backend = TorchLoopBackend(child, resources)
    backend.open({**state, "warm_start": True})
    after_open = torch.get_rng_state()
    assert all(torch.equal(backend.model.state_dict()[k], v) for k, v in state["model"].items())
    step = backend.train_step(0, first)
    optimizer = backend.optimizer
    backend.close()

    assert abs(step["loss"] - parent_loss) <= 0.05 * parent_loss
    assert step["loss"] == pytest.approx(parent_loss, abs=1e-6)
    assert all(int(s["step"]) == 5 for s in optimizer.state.values())  # Adam goes on
    assert optimizer.param_groups[0]["initial_lr"] == 0.05  # at the child's own rate
    (fresh, *_), _ = train(child, resources, None, 0, 1)
    assert step["learning_rate"] == fresh["learning_rate"] == 0.0  # a fresh warmup
    torch.manual_seed(3)
    assert torch.equal(after_open, torch.get_rng_state())  # RNG from the child's seed
    for part in ("model", "optimizer"):  # the parent's checkpoint stays as saved
        assert all(torch.equal(a, b) for a, b in zip(state_tensors(kept[part]),
                                                     state_tensors(state[part])))


def test_cold_start_equals_a_fresh_run(resources: WorkerResources) -> None:
    train(make_spec("parent"), resources, None, 0, 4)
    child = make_spec("child", lr=0.05, seed=3)
    cold, _ = train(child, resources, None, 0, 4)
    new_worker = WorkerResources(device="cpu", train_dataset=regression_data(NUM_TRAIN),
                                 eval_dataset=None, create_model_fn=no_dropout_model)
    fresh, _ = train(child, new_worker, None, 0, 4)
    assert [s["loss"] for s in cold] == [s["loss"] for s in fresh]


def test_warm_start_needs_the_parents_model_shapes(resources: WorkerResources) -> None:
    _, state = train(make_spec("parent"), resources, None, 0, 2)
    with pytest.raises(RuntimeError, match="size mismatch"):
        TorchLoopBackend(make_spec("child", hidden=16), resources).open(
            {**state, "warm_start": True})
