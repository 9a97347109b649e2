"""The controller: runs in the caller's process, assigns (run, next chunk) to free
workers, and is the single writer of engine runs into the tracker.

Each loop turn: give every idle worker the run the scheduling policy picks, wait briefly
for events, log metrics (dropping any step already logged for that key, so a chunk
retried after a worker crash never logs a step twice), record finished chunks and
failures, and replace dead workers, retrying their chunk once from the last checkpoint.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from runfleet.engine.events import ChunkDone, StepMetrics, TaskFailed, WorkerReady
from runfleet.engine.executor import Executor
from runfleet.engine.policy import Schedulable, SchedulingPolicy
from runfleet.engine.progress import ProgressTable
from runfleet.engine.spec import ChunkTask, RunSpec
from runfleet.store.base import COMPLETED, FAILED, PENDING, RUNNING
from runfleet.tracking.run import Run

MAX_ATTEMPTS = 2  # a chunk whose worker died is retried once, then the run fails
MAX_EARLY_DEATHS = 3  # workers dying before they are ready: the setup itself is broken


class EngineError(RuntimeError):
    """The experiment cannot go on (e.g. workers cannot even start)."""


@dataclass
class EngineRun:
    """The controller's view of one run."""

    index: int
    spec: RunSpec
    name: str
    config: dict[str, Any]
    tracker: Run
    status: str = PENDING
    chunks_done: int = 0
    state_key: str | None = None
    busy: bool = False
    attempts: dict[int, int] = field(default_factory=dict)
    last_step: dict[str, int] = field(default_factory=dict)
    loss: float | None = None
    step: int = 0
    timings: list[dict[str, float]] = field(default_factory=list)
    first_eval_time: float | None = None

    @property
    def num_chunks(self) -> int:
        """Chunks in the run's plan."""
        return self.spec.plan.num_chunks

    @property
    def terminal(self) -> bool:
        """True once the run will not train any more."""
        return self.status in (COMPLETED, FAILED, "stopped", "deleted")

    def row(self) -> dict[str, Any]:
        """A progress-table row."""
        return {"name": self.name, "config": self.config, "chunks_done": self.chunks_done,
                "num_chunks": self.num_chunks, "step": self.step,
                "total_steps": self.spec.plan.total_steps, "loss": self.loss,
                "status": self.status}


class Controller:
    """Drives an experiment's runs to completion on an executor's workers."""

    def __init__(self, runs: list[EngineRun], executor: Executor, policy: SchedulingPolicy,
                 progress: ProgressTable | None = None, poll_s: float = 0.05) -> None:
        self.runs = runs
        self.by_id = {r.spec.run_id: r for r in runs}
        self.executor = executor
        self.policy = policy
        self.progress = progress
        self.poll_s = poll_s
        self._task_ids = itertools.count(1)
        self._idle: list[int] = []
        self._inflight: dict[int, tuple[ChunkTask, EngineRun]] = {}
        self._ready: set[int] = set()
        self._early_deaths = 0
        self.started: float | None = None
        self.first_worker_ready: float | None = None  # when training could first start

    def run(self) -> None:
        """Train every run to a terminal status."""
        import time

        self.started = time.time()
        rows = [r.row() for r in self.runs]
        if self.progress:
            self.progress.start(rows)
        try:
            while not all(r.terminal for r in self.runs):
                self._assign()
                for event in self.executor.poll(self.poll_s):
                    self._handle(event)
                for worker in self.executor.dead_workers():
                    self._worker_died(worker)
                if self.progress:
                    self.progress.update([r.row() for r in self.runs])
        finally:
            if self.progress:
                self.progress.stop([r.row() for r in self.runs])

    # -- scheduling ---------------------------------------------------------------------------
    def _assign(self) -> None:
        while self._idle:
            worker = self._idle[0]
            view = [Schedulable(r.index, r.spec.run_id, r.chunks_done, r.num_chunks, r.busy,
                                r.status in (PENDING, RUNNING)) for r in self.runs]
            run_id = self.policy.choose(view, worker)
            if run_id is None:
                return
            self._idle.pop(0)
            run = self.by_id[run_id]
            chunk = run.chunks_done
            start, end = run.spec.plan.chunks[chunk]
            attempt = run.attempts.get(chunk, 0) + 1
            run.attempts[chunk] = attempt
            task = ChunkTask(next(self._task_ids), run.spec, chunk, start, end, run.state_key,
                             attempt)
            run.busy = True
            if run.status == PENDING:
                run.status = RUNNING
                run.tracker.set_status(RUNNING)
            self._inflight[worker] = (task, run)
            self.executor.submit(worker, task)

    # -- events ---------------------------------------------------------------------------------
    def _handle(self, event: Any) -> None:
        if isinstance(event, WorkerReady):
            if self.first_worker_ready is None:
                import time

                self.first_worker_ready = time.time()
            self._ready.add(event.worker)
            self._idle.append(event.worker)
        elif isinstance(event, StepMetrics):
            self._metrics(event)
        elif isinstance(event, ChunkDone):
            self._chunk_done(event)
        elif isinstance(event, TaskFailed):
            self._failed(event)

    def _metrics(self, event: StepMetrics) -> None:
        import time

        run = self.by_id.get(event.run_id)
        if run is None or run.terminal:
            return
        fresh = {k: v for k, v in event.values.items()
                 if event.step > run.last_step.get(k, 0)}
        if not fresh:
            return
        for key in fresh:
            run.last_step[key] = event.step
        run.tracker.log(fresh, step=event.step)
        if "loss" in fresh:
            run.loss = float(fresh["loss"])
            run.step = event.step
        if run.first_eval_time is None and any(k.startswith("eval_") for k in fresh):
            run.first_eval_time = time.time()

    def _chunk_done(self, event: ChunkDone) -> None:
        result = event.result
        self._release(event.worker)
        run = self.by_id[result.run_id]
        run.busy = False
        run.chunks_done = result.chunk + 1
        run.state_key = result.state_key
        run.step = result.end_step
        run.timings.append(result.timings)
        run.tracker.set_metadata("engine", {
            "chunks_done": run.chunks_done, "num_chunks": run.num_chunks,
            "state_key": run.state_key, "step": run.step,
            "total_steps": run.spec.plan.total_steps})
        if run.chunks_done >= run.num_chunks:
            run.status = COMPLETED
            run.tracker.finish(status=COMPLETED)

    def _failed(self, event: TaskFailed) -> None:
        self._release(event.worker)
        run = self.by_id[event.run_id]
        run.busy = False
        self._fail_run(run, event.error, event.traceback)

    def _fail_run(self, run: EngineRun, error: str, trace: str) -> None:
        run.status = FAILED
        run.tracker.alert("run failed", f"{error}\n\n{trace}".strip(), "error")
        run.tracker.finish(status=FAILED)

    def _release(self, worker: int) -> None:
        self._inflight.pop(worker, None)
        if worker not in self._idle:
            self._idle.append(worker)

    def _worker_died(self, worker: int) -> None:
        if worker in self._idle:
            self._idle.remove(worker)
        if worker not in self._ready:
            self._early_deaths += 1
            if self._early_deaths >= MAX_EARLY_DEATHS:
                raise EngineError("workers keep dying before they start; see their stderr")
        self._ready.discard(worker)
        lost = self._inflight.pop(worker, None)
        if lost is not None:
            task, run = lost
            run.busy = False
            if task.attempt >= MAX_ATTEMPTS:
                self._fail_run(run, f"worker died twice while training chunk {task.chunk}",
                               "the worker process exited unexpectedly (killed or crashed)")
            else:
                run.tracker.alert(
                    "worker died", f"chunk {task.chunk} is retried from the last checkpoint",
                    "warn")
        self.executor.restart(worker)
