"""One contract, every trainer backend (see :mod:`runfleet.engine.backend`).

Each case is a backend with a config, a second config of the same trainer to interleave
(of the other kind where there is one: full fine-tuning beside LoRA), fresh worker
resources, and how to find the trainable tensors in a state. Everything runs through the
real worker loop (:func:`runfleet.engine.worker.run_task`) and a real checkpoint store, as
a worker would; plans come from the backend's own :meth:`~runfleet.engine.backend.Backend.
plan`. A third-party backend joins by adding a case: ``example-mean`` comes from the
example package installed for the session (``tests/plugins/example_plugin``).

The contract: chunked == unchunked (interleaved with another run, evaluating at every
chunk end); a stop mid-chunk then a resume continue exactly; a state reloaded from disk by
another worker continues exactly; a warm start takes another run's weights and trains on
from them; ``close()`` after a failure leaves the worker able to train other runs exactly.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from runfleet.engine.backend import WorkerResources, backend_class
from runfleet.engine.checkpoint import LocalCheckpointStore
from runfleet.engine.events import ChunkDone, StepMetrics, TaskFailed
from runfleet.engine.spec import ChunkResult, ChunkTask, RunSpec
from runfleet.engine.worker import run_task
from runfleet.fit import TorchConfig
from tests.backends.hf_configs import NUM_TRAIN, dpo_config, grpo_config, lora, resources_for
from tests.backends.hf_configs import sft_config as _sft_config
from tests.engine.models import make_model, regression_data

SEED = 11
CHUNKS = 4


class Fixtures:
    """Session fixtures a case needs, fetched on first use."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request

    def __getattr__(self, name: str) -> Any:
        return self.request.getfixturevalue(name)


@dataclass(frozen=True)
class Case:
    """A backend under test."""

    trainer: str
    config: Callable[[Fixtures], Any]
    other: Callable[[Fixtures], Any]  # interleaved with ``config`` on the same worker
    resources: Callable[[Fixtures], WorkerResources]  # a fresh worker's
    weights: Callable[[dict[str, Any]], dict[str, torch.Tensor]]  # trainable tensors
    num_examples: int


# -- the cases ----------------------------------------------------------------------------------
def _with_steps(config: Any, steps: int = 8) -> Any:
    """An HF config whose training args run ``steps`` optimizer steps."""
    args = config.training_args
    return config.with_values({**config.as_dict(), "training_args": args.with_values(
        {**args.kwargs, "max_steps": steps})})


def _hf(trainer: str, make: Callable[..., Any], uses_lora: bool) -> Case:
    return Case(
        trainer,
        config=lambda f: _with_steps(make(f.tiny_model, lora() if uses_lora else None)),
        other=lambda f: _with_steps(make(f.tiny_model, None if uses_lora else lora(8),
                                         lr=1e-2)),
        resources=lambda f: resources_for(trainer, f.instructions, f.preferences),
        weights=lambda state: dict(state["weights"]),
        num_examples=NUM_TRAIN)


def _sft(path: str, peft: Any, lr: float = 5e-3) -> Any:
    return _sft_config(path, peft, lr)


def _torch_config(hidden: int, lr: float) -> TorchConfig:
    return TorchConfig(hidden=hidden, learning_rate=lr, per_device_train_batch_size=8,
                       max_steps=8, lr_scheduler_type="cosine", warmup_steps=2)


def _torch_resources(_: Fixtures) -> WorkerResources:
    return WorkerResources(device="cpu", train_dataset=regression_data(64),
                           eval_dataset=regression_data(16, seed=1), create_model_fn=make_model)


def _mean_config(f: Fixtures, lr: float) -> Any:
    f.example_plugin  # noqa: B018  (installs the example package for the session)
    from runfleet_example_plugin.backend import MeanConfig

    return MeanConfig(learning_rate=lr, batch_size=4, max_steps=8, noise=0.5)


def _mean_resources(_: Fixtures) -> WorkerResources:
    rows = [{"y": float(i % 7) - 2.5} for i in range(40)]
    return WorkerResources(device="cpu", train_dataset=rows, eval_dataset=rows[:8],
                           create_model_fn=lambda config: None)


CASES = {
    "sft-lora": _hf("sft", _sft, True),
    "sft-full": _hf("sft", _sft, False),
    "dpo-lora": _hf("dpo", dpo_config, True),
    "dpo-full": _hf("dpo", dpo_config, False),
    "grpo-lora": _hf("grpo", grpo_config, True),
    "grpo-full": _hf("grpo", grpo_config, False),
    "torch": Case("torch", config=lambda f: _torch_config(8, 0.01),
                  other=lambda f: _torch_config(16, 0.05), resources=_torch_resources,
                  weights=lambda state: dict(state["model"]), num_examples=64),
    "example-mean": Case("example-mean", config=lambda f: _mean_config(f, 0.1),
                         other=lambda f: _mean_config(f, 0.05), resources=_mean_resources,
                         weights=lambda state: {"value": state["value"]}, num_examples=40),
}


# -- a worker, as the suite drives it -------------------------------------------------------------
@dataclass
class Worker:
    """One worker's resources and checkpoint store; runs tasks through ``run_task``."""

    resources: WorkerResources
    checkpoints: LocalCheckpointStore
    events: list[Any]

    def run(self, spec: RunSpec, chunk: int, start: int, end: int, state_key: str | None,
            stop_after: int | None = None,
            on_event: Callable[[Any], None] | None = None) -> tuple[list[float], Any]:
        """Train ``[start, end)``; return the losses logged and the task's last event."""
        task = ChunkTask(len(self.events) + 1, spec, chunk, start, end, state_key)
        mine: list[Any] = []

        def report(event: Any) -> None:
            mine.append(event)
            if on_event is not None:
                on_event(event)

        def should_stop(task_id: int) -> bool:
            steps = sum(1 for e in mine if isinstance(e, StepMetrics) and "loss" in e.values)
            return stop_after is not None and steps >= stop_after

        run_task(0, task, self.resources, self.checkpoints, report, should_stop)
        self.events += mine
        assert all(e.task_id == task.task_id for e in mine if isinstance(e, StepMetrics))
        losses = [e.values["loss"] for e in mine if isinstance(e, StepMetrics)
                  and "loss" in e.values]
        return losses, mine[-1]


def done(event: Any) -> ChunkResult:
    """The result of a finished task (failing the test with the traceback otherwise)."""
    if isinstance(event, TaskFailed):
        pytest.fail(f"the task failed: {event.error}\n{event.traceback}")
    assert isinstance(event, ChunkDone), event
    return event.result


def saved(event: Any) -> str:
    """Where a finished task left its run's state."""
    key = done(event).state_key
    assert key is not None
    return key


@dataclass
class Suite:
    """A case with its plans and fresh workers."""

    case: Case
    fixtures: Fixtures
    tmp: Path

    def spec(self, config: Any, run_id: str, chunks: int = CHUNKS, seed: int = 0,
             warm_start: str | None = None) -> RunSpec:
        plan = backend_class(self.case.trainer).plan(config, self.case.num_examples, chunks,
                                                     SEED)
        return RunSpec(run_id, self.case.trainer, config, plan.steps, seed, plan.eval_steps,
                       warm_start)

    def worker(self, name: str, resources: WorkerResources | None = None) -> Worker:
        return Worker(resources or self.case.resources(self.fixtures),
                      LocalCheckpointStore(self.tmp / name), [])

    def alone(self, spec: RunSpec) -> tuple[list[float], dict[str, Any]]:
        """``spec`` in one go on a fresh worker: its losses and final state."""
        worker = self.worker(f"alone-{spec.run_id}")
        losses, last = worker.run(spec, 0, 0, spec.plan.total_steps, None)
        return losses, worker.checkpoints.load(saved(last))

    def assert_same(self, a: dict[str, Any], b: dict[str, Any]) -> None:
        wa, wb = self.case.weights(a), self.case.weights(b)
        assert wa.keys() == wb.keys() and wa
        for key in wa:
            assert torch.equal(wa[key], wb[key]), key


@pytest.fixture(params=list(CASES))
def suite(request: pytest.FixtureRequest, tmp_path: Path) -> Suite:
    return Suite(CASES[request.param], Fixtures(request), tmp_path)


def close_enough(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) > 0 and max(abs(x - y) for x, y in zip(a, b)) <= 1e-6


# -- the contract ---------------------------------------------------------------------------------
def test_chunked_interleaved_training_equals_training_in_one_go(suite: Suite) -> None:
    config, other_config = suite.case.config(suite.fixtures), suite.case.other(suite.fixtures)
    losses_alone, state_alone = suite.alone(suite.spec(config, "run", chunks=1))

    spec, other = suite.spec(config, "run"), suite.spec(other_config, "other", seed=5)
    worker = suite.worker("interleaved")
    losses: list[float] = []
    key = other_key = None
    for chunk, ((start, end), (o_start, o_end)) in enumerate(zip(spec.plan.chunks,
                                                                 other.plan.chunks)):
        _, last = worker.run(other, chunk, o_start, o_end, other_key)
        other_key = saved(last)
        chunk_losses, last = worker.run(spec, chunk, start, end, key)
        key = saved(last)
        losses += chunk_losses
    assert worker.resources.eval_dataset is not None and any(
        isinstance(e, StepMetrics) and any(k.startswith("eval_") for k in e.values)
        for e in worker.events)  # evaluations ran at the chunk ends in between

    assert len(losses_alone) == spec.plan.total_steps == 8
    assert all(math.isfinite(v) for v in losses_alone)
    assert close_enough(losses_alone, losses)
    assert key is not None
    suite.assert_same(state_alone, worker.checkpoints.load(key))


def test_stop_mid_chunk_then_resume_continues_exactly(suite: Suite) -> None:
    spec = suite.spec(suite.case.config(suite.fixtures), "run", chunks=1)
    losses_alone, state_alone = suite.alone(spec)

    worker = suite.worker("stopped")
    first, last = worker.run(spec, 0, 0, 8, None, stop_after=3)
    result = done(last)
    assert result.stopped and result.end_step == 3 and str(result.state_key).endswith("-step-3")
    rest, last = worker.run(spec, 0, result.end_step, 8, result.state_key)
    assert not done(last).stopped and done(last).end_step == 8
    assert close_enough(losses_alone, first + rest)
    suite.assert_same(state_alone, worker.checkpoints.load(saved(last)))


def test_a_state_reloaded_from_disk_continues_exactly_on_another_worker(suite: Suite) -> None:
    spec = suite.spec(suite.case.config(suite.fixtures), "run")
    losses_alone, state_alone = suite.alone(suite.spec(spec.config, "run", chunks=1))

    first_worker = suite.worker("handoff")
    losses, last = first_worker.run(spec, 0, *spec.plan.chunks[0], None)
    key = saved(last)
    # another worker, another process's view of the store: the state comes from the file
    second = Worker(suite.case.resources(suite.fixtures),
                    pickle.loads(pickle.dumps(first_worker.checkpoints)), [])
    for chunk, (start, end) in enumerate(spec.plan.chunks[1:], start=1):
        more, last = second.run(spec, chunk, start, end, key)
        key = saved(last)
        losses += more
    assert close_enough(losses_alone, losses)
    suite.assert_same(state_alone, second.checkpoints.load(key))


def test_a_warm_start_takes_another_runs_weights(suite: Suite) -> None:
    config = suite.case.config(suite.fixtures)
    parent = suite.spec(config, "parent")
    worker = suite.worker("warm")
    _, last = worker.run(parent, 0, *parent.plan.chunks[0], None)
    parent_key = saved(last)
    worker.checkpoints.copy(parent_key, "child/warm-start")

    child = suite.spec(config, "child", seed=3, warm_start="child/warm-start")
    backend = backend_class(suite.case.trainer)(child, worker.resources)
    backend.open({**worker.checkpoints.load("child/warm-start"), "warm_start": True})
    opened = backend.state()
    backend.close()
    suite.assert_same(worker.checkpoints.load(parent_key), opened)

    warm_losses, last = worker.run(child, 0, *child.plan.chunks[0], None)
    done(last)
    cold_losses, _ = suite.worker("cold").run(replace(child, warm_start=None), 0,
                                             *child.plan.chunks[0], None)
    assert len(warm_losses) == len(cold_losses) > 0 and warm_losses != cold_losses


def test_close_after_a_failure_leaves_the_worker_usable(suite: Suite,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config, other_config = suite.case.config(suite.fixtures), suite.case.other(suite.fixtures)
    failing = suite.spec(config, "failing", chunks=1)
    other = suite.spec(other_config, "other", chunks=1)
    worker = suite.worker("failing")
    backward = torch.Tensor.backward
    out_of_memory = {"now": False}

    def backward_or_oom(self: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        if out_of_memory["now"]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated in backward)")
        backward(self, *args, **kwargs)

    def oom_after_the_first_step(event: Any) -> None:
        if isinstance(event, StepMetrics):
            out_of_memory["now"] = True

    monkeypatch.setattr(torch.Tensor, "backward", backward_or_oom)
    _, last = worker.run(failing, 0, 0, 8, None, on_event=oom_after_the_first_step)
    assert isinstance(last, TaskFailed) and "out of memory" in last.error
    assert sum(isinstance(e, StepMetrics) and "loss" in e.values for e in worker.events) == 1
    out_of_memory["now"] = False
    # the same worker trains other runs (and the failed one again) exactly
    for spec in (other, failing):
        losses_alone, state_alone = suite.alone(spec)
        losses, last = worker.run(spec, 0, 0, 8, None)
        assert close_enough(losses_alone, losses)
        suite.assert_same(state_alone, worker.checkpoints.load(saved(last)))
