"""What the controller sends to workers: a run's spec and one chunk of work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runfleet.engine.chunking import StepPlan


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to train a run, independent of which worker it lands on.

    ``config`` is the run's concrete config (a :class:`runfleet.fit.ModelConfig`, or a
    :class:`runfleet.fit.TorchConfig` for the plain torch loop). ``seed`` seeds the run's
    own initialisation (adapter weights, dropout) so it does not depend on scheduling.
    """

    run_id: str
    trainer: str
    config: Any
    plan: StepPlan
    seed: int
    eval_steps: int | None = None
    warm_start: str | None = None  # a checkpoint key to start from (clones, later issues)


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
    """What a worker reports when a chunk is done (or stopped early at ``end_step``)."""

    task_id: int
    run_id: str
    chunk: int
    end_step: int
    state_key: str
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
