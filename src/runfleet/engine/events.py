"""Messages from workers to the controller (the executor's event channel).

Workers never write to the store: they report, and the controller (the single writer of
engine runs) logs. Every event names the task it belongs to, so events of a task that was
abandoned (its worker died and the chunk was retried) can be recognised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runfleet.engine.spec import ChunkResult


@dataclass
class WorkerReady:
    """A worker started and can take tasks."""

    worker: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepMetrics:
    """Metrics of one step of a run (training or evaluation)."""

    worker: int
    task_id: int
    run_id: str
    step: int
    values: dict[str, Any]


@dataclass
class ChunkDone:
    """A chunk finished and the run's state is persisted."""

    worker: int
    result: ChunkResult


@dataclass
class TaskFailed:
    """The run failed on this task (bad config, OOM, NaN loss...): not retried."""

    worker: int
    task_id: int
    run_id: str
    error: str
    traceback: str


Event = WorkerReady | StepMetrics | ChunkDone | TaskFailed
