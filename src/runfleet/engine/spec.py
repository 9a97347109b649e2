"""What the controller sends to workers: their setup once, then a run's spec with one chunk
of work at a time, and control messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runfleet.engine.checkpoint import CheckpointStore
from runfleet.engine.chunking import StepPlan


@dataclass
class WorkerSetup:
    """What every worker gets once, when it starts: the model factory, the datasets, where
    run states are kept, and the trainer to import before it reports ready."""

    create_model_fn: Any
    train_dataset: Any
    eval_dataset: Any
    checkpoints: CheckpointStore
    trainer: str = ""
    threads: int | None = None  # torch threads per worker (set by the executor)


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to train a run, independent of which worker it lands on.

    ``trainer`` names the run's backend (:mod:`runfleet.engine.backend`); ``config`` is
    the run's concrete config, which that backend planned into ``plan``. ``seed`` seeds the
    run's own initialisation (adapter weights, dropout) so it does not depend on
    scheduling. ``warm_start`` is the checkpoint key a warm clone starts from.
    """

    run_id: str
    trainer: str
    config: Any
    plan: StepPlan
    seed: int
    eval_steps: int | None = None
    warm_start: str | None = None


@dataclass(frozen=True)
class ChunkTask:
    """Train ``spec`` on steps ``[start, end)`` (chunk ``chunk``), starting from the state
    stored under ``state_key`` (None: a fresh run)."""

    task_id: int
    spec: RunSpec
    chunk: int
    start: int
    end: int
    state_key: str | None
    attempt: int = 1


@dataclass
class ChunkResult:
    """What a worker reports when a chunk is done (or stopped early at ``end_step``).
    ``state_key`` is where the run's state is now; a task stopped before its first step
    saves nothing and reports the key it started from (None for a fresh run)."""

    task_id: int
    run_id: str
    chunk: int
    end_step: int
    state_key: str | None
    timings: dict[str, float] = field(default_factory=dict)
    stopped: bool = False


@dataclass(frozen=True)
class StopTask:
    """Controller to worker: end task ``task_id`` after the current step and save state."""

    task_id: int


@dataclass(frozen=True)
class DropRun:
    """Controller to worker: forget everything cached for a deleted run."""

    run_id: str
