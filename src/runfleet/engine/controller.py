"""The controller: runs in the caller's process, assigns (run, next piece of work) to free
workers, applies control ops, and is the single writer of engine runs into the tracker.

Each loop turn: apply pending ops (stop, resume, delete, clone) in id order, give every
idle worker the run the scheduling policy picks, wait briefly for events, log metrics
(dropping any step already logged for a key, so a chunk retried after a crash never logs
a step twice), record finished chunks, ask the stopping policy, and replace dead workers,
retrying their chunk once from the last checkpoint.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runfleet.engine.checkpoint import CheckpointStore
from runfleet.engine.events import ChunkDone, StepMetrics, TaskFailed, WorkerReady
from runfleet.engine.executor import Executor
from runfleet.engine.policy import (
    NoStopping,
    RunProgress,
    Schedulable,
    SchedulingPolicy,
    StopDecision,
    StoppingPolicy,
)
from runfleet.engine.progress import ProgressTable
from runfleet.engine.spec import ChunkTask, DropRun, RunSpec, StopTask
from runfleet.store.base import OpKind, OpRecord, OpStatus, RunStatus, Store
from runfleet.tracking.run import Run

MAX_ATTEMPTS = 2  # a chunk whose worker died is retried once, then the run fails
MAX_EARLY_DEATHS = 3  # workers dying before they are ready: the setup itself is broken
OPS_POLL_S = 0.1


class EngineError(RuntimeError):
    """The experiment cannot go on (e.g. workers cannot even start)."""


class OpError(ValueError):
    """An op cannot be applied; the message becomes the op's rejection reason."""


@dataclass
class EngineRun:
    """The controller's view of one run."""

    index: int
    spec: RunSpec
    name: str
    config: dict[str, Any]
    tracker: Run
    status: RunStatus = RunStatus.PENDING
    next_step: int = 0
    state_key: str | None = None
    busy: bool = False
    stepped: bool = False  # a step of the task on its worker has been reported
    worker: int | None = None
    task_id: int | None = None
    deaths: dict[int, int] = field(default_factory=dict)  # worker deaths per chunk
    last_step: dict[str, int] = field(default_factory=dict)
    loss: float | None = None
    timings: list[dict[str, float]] = field(default_factory=list)
    first_eval_time: float | None = None
    metric_at_chunk: dict[int, dict[str, float]] = field(default_factory=dict)
    latest: dict[str, float] = field(default_factory=dict)
    waiting_ops: list[OpRecord] = field(default_factory=list)  # stop/delete of a busy run

    @property
    def plan_chunks(self) -> tuple[tuple[int, int], ...]:
        """The run's chunks as step ranges."""
        return self.spec.plan.chunks

    @property
    def num_chunks(self) -> int:
        """Chunks in the run's plan."""
        return self.spec.plan.num_chunks

    @property
    def chunks_done(self) -> int:
        """Chunks fully trained."""
        return sum(1 for _, end in self.plan_chunks if end <= self.next_step)

    @property
    def current_chunk(self) -> int:
        """The chunk the next step belongs to."""
        for i, (start, end) in enumerate(self.plan_chunks):
            if start <= self.next_step < end:
                return i
        return self.num_chunks

    @property
    def terminal(self) -> bool:
        """True once the run will not train any more (stopped runs may be resumed)."""
        return self.status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.DELETED)

    @property
    def active(self) -> bool:
        """Pending or running: the run still wants to train."""
        return self.status in (RunStatus.PENDING, RunStatus.RUNNING)

    @property
    def idle(self) -> bool:
        """True when nothing is left to do for it unless an op arrives."""
        return self.terminal or (self.status == RunStatus.STOPPED and not self.busy)

    def row(self) -> dict[str, Any]:
        """A progress-table row."""
        return {"name": self.name, "config": self.config, "chunks_done": self.chunks_done,
                "num_chunks": self.num_chunks, "step": self.next_step,
                "total_steps": self.spec.plan.total_steps, "loss": self.loss,
                "status": self.status}

    def engine_state(self) -> dict[str, Any]:
        """What the tracker keeps about the run's progress: the step and checkpoint a new
        controller resumes from, and chunks done (read by ``Experiment.runs``). The plan
        itself (chunks, total steps) lives in the run's spec."""
        return {"chunks_done": self.chunks_done, "state_key": self.state_key,
                "step": self.next_step}


# A factory for clones: (parent, op) -> the new run (raises OpError with a reason).
CloneFactory = Callable[[EngineRun, OpRecord], EngineRun]


class Controller:
    """Drives an experiment's runs to an idle state on an executor's workers."""

    def __init__(self, runs: list[EngineRun], executor: Executor, policy: SchedulingPolicy,
                 progress: ProgressTable | None = None, poll_s: float = 0.05, *,
                 project: str = "", store: Store | None = None,
                 checkpoints: CheckpointStore | None = None,
                 stopping: StoppingPolicy | None = None,
                 clone_factory: CloneFactory | None = None,
                 keep_alive: Callable[[], bool] | None = None,
                 on_complete: Callable[[EngineRun], None] | None = None) -> None:
        self.runs = runs
        self.by_id = {r.spec.run_id: r for r in runs}
        self.executor = executor
        self.policy = policy
        self.progress = progress
        self.poll_s = poll_s
        self.project = project
        self.store = store
        self.checkpoints = checkpoints
        self.stopping = stopping or NoStopping()
        self.clone_factory = clone_factory
        self.keep_alive = keep_alive
        self.on_complete = on_complete  # called for a run that trained its whole plan
        self._task_ids = itertools.count(1)
        self._idle: list[int] = []
        self._inflight: dict[int, tuple[ChunkTask, EngineRun]] = {}
        self._abandoned: set[int] = set()  # tasks whose run was taken off the worker
        self._ready: set[int] = set()
        self._early_deaths = 0
        self._ops_seen = 0
        self._ops_checked = 0.0
        self.first_worker_ready: float | None = None  # when training could first start

    def run(self) -> None:
        """Train until every run is completed, failed, deleted or stopped (and no op is
        pending), or while ``keep_alive()`` says to wait for more ops."""
        if self.progress:
            self.progress.start([r.row() for r in self.runs])
        try:
            while True:
                self._poll_ops()
                if self._finished():
                    break
                self._assign()
                for event in self.executor.poll(self.poll_s):
                    try:
                        self._handle(event)
                    except Exception as exc:  # one bad event must not stop the experiment
                        self._event_failed(event, exc)
                for worker in self.executor.dead_workers():
                    self._worker_died(worker)
                if self.progress:
                    self.progress.update([r.row() for r in self.runs])
        finally:
            if self.progress:
                self.progress.stop([r.row() for r in self.runs])

    def _finished(self) -> bool:
        if not all(r.idle for r in self.runs) or self._inflight:
            return False
        if self.keep_alive is not None and self.keep_alive():
            return False
        return self.store is None or not self.store.ops(self.project, status=OpStatus.PENDING)

    # -- ops ------------------------------------------------------------------------------------
    def _poll_ops(self, force: bool = False) -> None:
        if self.store is None:
            return
        now = time.monotonic()
        if not force and now - self._ops_checked < OPS_POLL_S:
            return
        self._ops_checked = now
        for op in self.store.ops(self.project, status=OpStatus.PENDING, after=self._ops_seen):
            self._ops_seen = op.id
            try:
                self._apply(op)
            except OpError as exc:
                self._finish_op(op, OpStatus.REJECTED, str(exc))
            except Exception as exc:  # one bad op must not stop the experiment
                self._finish_op(op, OpStatus.REJECTED, f"could not apply: {exc!r}")

    def _finish_op(self, op: OpRecord, status: str, reason: str | None = None,
                   result: dict[str, Any] | None = None) -> None:
        assert self.store is not None
        self.store.finish_op(op.id, status, reason, result)

    def _target(self, op: OpRecord) -> EngineRun:
        run = self.by_id.get(op.run or "")
        if run is None:
            raise OpError(f"no run {op.run!r} in experiment {self.project!r}")
        return run

    def _apply(self, op: OpRecord) -> None:
        run = self._target(op)
        if op.kind == OpKind.STOP:
            if run.terminal or run.status == RunStatus.STOPPED:
                raise OpError(f"run {run.name} is already {run.status}")
            if run.busy and run.stepped:
                self._interrupt(run, op)
            else:
                self._abandon(run)
                self._set_status(run, RunStatus.STOPPED)
                self._finish_op(op, OpStatus.APPLIED)
        elif op.kind == OpKind.RESUME:
            if run.waiting_ops:  # a stop is still in flight: resume right after it lands
                run.waiting_ops.append(op)
                return
            if run.status != RunStatus.STOPPED:
                raise OpError(f"run {run.name} is {run.status}, not stopped")
            if run.busy:
                raise OpError(f"run {run.name} is still saving its state; try again")
            self._set_status(run, RunStatus.RUNNING if run.next_step else RunStatus.PENDING)
            self._finish_op(op, OpStatus.APPLIED)
        elif op.kind == OpKind.DELETE:
            if run.status == RunStatus.DELETED:
                raise OpError(f"run {run.name} is already deleted")
            if run.busy and run.stepped:
                self._interrupt(run, op)
            else:
                self._abandon(run)
                self._delete(run, op)
        elif op.kind == OpKind.CLONE:
            if self.clone_factory is None:
                raise OpError("this controller cannot clone runs")
            child = self.clone_factory(run, op)
            child.index = len(self.runs)
            self.runs.append(child)
            self.by_id[child.spec.run_id] = child
            self._finish_op(op, OpStatus.APPLIED, result={"run_id": child.spec.run_id,
                                                    "name": child.name})

    def _abandon(self, run: EngineRun) -> None:
        """Take a run off its worker at once when no step of its task is done yet (the
        worker may still be loading the model or the data): there is nothing to save, so a
        stop never waits for set-up work. The worker drops the task as soon as it can and
        stays busy until it says so; whatever it reports for the task is ignored."""
        if not run.busy or run.worker is None or run.task_id is None:
            return
        self._abandoned.add(run.task_id)
        self.executor.send(run.worker, StopTask(run.task_id))
        run.busy, run.worker, run.task_id = False, None, None

    def _interrupt(self, run: EngineRun, op: OpRecord) -> None:
        """Ask the worker training ``run`` to stop after its current step."""
        run.waiting_ops.append(op)
        if run.worker is not None and run.task_id is not None and len(run.waiting_ops) == 1:
            self.executor.send(run.worker, StopTask(run.task_id))

    def _settle(self, run: EngineRun) -> None:
        """The run just left its worker: apply the stop/delete ops that waited for it."""
        waiting, run.waiting_ops = run.waiting_ops, []
        for op in waiting:
            if op.kind == OpKind.DELETE and run.status != RunStatus.DELETED:
                self._delete(run, op)
            elif run.status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.DELETED):
                self._finish_op(op, OpStatus.REJECTED, f"run {run.name} is already {run.status}")
            elif op.kind == OpKind.RESUME:
                if run.status != RunStatus.STOPPED:
                    self._finish_op(op, OpStatus.REJECTED, f"run {run.name} is {run.status}, "
                                                     f"not stopped")
                else:
                    self._set_status(run, RunStatus.RUNNING if run.next_step else RunStatus.PENDING)
                    self._finish_op(op, OpStatus.APPLIED)
            elif run.status == RunStatus.STOPPED:
                self._finish_op(op, OpStatus.REJECTED, f"run {run.name} is already stopped")
            else:
                self._set_status(run, RunStatus.STOPPED)
                self._finish_op(op, OpStatus.APPLIED)

    def _delete(self, run: EngineRun, op: OpRecord) -> None:
        purge = bool(op.args.get("purge"))
        run.status = RunStatus.DELETED
        if self.checkpoints is not None:
            self.checkpoints.delete_run(run.spec.run_id)
        for worker in range(self.executor.size):
            self.executor.send(worker, DropRun(run.spec.run_id))
        if run.tracker.finished:  # e.g. a completed run: record the new status all the same
            self._set_status(run, RunStatus.DELETED)
        else:
            run.tracker.finish(status=RunStatus.DELETED)
        if purge and self.store is not None:
            run.tracker.flush()
            record = self.store.find_run(self.project, id=run.tracker.id)
            if record is not None:
                self.store.purge_run(record.rid)
        self._finish_op(op, OpStatus.APPLIED, result={"purged": purge})

    def _set_status(self, run: EngineRun, status: RunStatus) -> None:
        run.status = status
        run.tracker.set_status(status)
        # Durable before the op that caused it is marked applied (and visible at once).
        run.tracker.flush()

    # -- scheduling -------------------------------------------------------------------------------
    def _assign(self) -> None:
        # Every idle worker is offered a run: a policy that passes over one worker (it is
        # told which) may still place a run on another.
        for worker in list(self._idle):
            view = [Schedulable(r.index, r.spec.run_id, r.chunks_done, r.num_chunks,
                                r.busy or bool(r.waiting_ops), r.active)
                    for r in self.runs]
            run_id = self.policy.choose(view, worker)
            if run_id is None:
                continue
            self._idle.remove(worker)
            run = self.by_id[run_id]
            chunk = run.current_chunk
            end = run.plan_chunks[chunk][1]
            attempt = run.deaths.get(chunk, 0) + 1  # stops and resumes do not count
            task = ChunkTask(next(self._task_ids), run.spec, chunk, run.next_step, end,
                             run.state_key, attempt)
            run.busy, run.worker, run.task_id, run.stepped = True, worker, task.task_id, False
            if run.status == RunStatus.PENDING:
                self._set_status(run, RunStatus.RUNNING)
            self._inflight[worker] = (task, run)
            self.executor.submit(worker, task)

    # -- events -----------------------------------------------------------------------------------
    def _handle(self, event: Any) -> None:
        task_id = (event.result.task_id if isinstance(event, ChunkDone)
                   else getattr(event, "task_id", None))
        if task_id in self._abandoned:
            if isinstance(event, (ChunkDone, TaskFailed)):  # the worker is free again
                self._abandoned.discard(task_id)
                self._free_worker(event.worker)
            return
        if isinstance(event, WorkerReady):
            if self.first_worker_ready is None:
                self.first_worker_ready = time.time()
            self._ready.add(event.worker)
            self._idle.append(event.worker)
        elif isinstance(event, StepMetrics):
            self._metrics(event)
        elif isinstance(event, ChunkDone):
            self._chunk_done(event)
        elif isinstance(event, TaskFailed):
            self._failed(event)

    def _event_failed(self, event: Any, exc: Exception) -> None:
        import traceback

        run = self.by_id.get(getattr(event, "run_id", "") or
                             getattr(getattr(event, "result", None), "run_id", ""))
        if run is None:
            raise exc
        if run.worker is not None and run.busy and isinstance(event, (ChunkDone, TaskFailed)):
            self._release(run.worker, run)
        self._fail_run(run, f"the controller could not handle {type(event).__name__}: {exc!r}",
                       traceback.format_exc())

    def _metrics(self, event: StepMetrics) -> None:
        run = self.by_id.get(event.run_id)
        if run is None or run.status == RunStatus.DELETED:
            return
        if event.task_id == run.task_id:
            run.stepped = True
        fresh = {k: v for k, v in event.values.items()
                 if event.step > run.last_step.get(k, 0)}
        if not fresh:
            return
        for key in fresh:
            run.last_step[key] = event.step
        run.tracker.log(fresh, step=event.step)
        for key, value in fresh.items():
            if isinstance(value, (int, float)):
                run.latest[key] = float(value)
        if "loss" in fresh:
            run.loss = float(fresh["loss"])
        if run.first_eval_time is None and any(k.startswith("eval_") for k in fresh):
            run.first_eval_time = time.time()

    def _release(self, worker: int, run: EngineRun) -> None:
        run.busy, run.worker, run.task_id = False, None, None
        self._free_worker(worker)

    def _free_worker(self, worker: int) -> None:
        self._inflight.pop(worker, None)
        if worker not in self._idle and worker in self._ready:
            self._idle.append(worker)

    def _chunk_done(self, event: ChunkDone) -> None:
        result = event.result
        run = self.by_id[result.run_id]
        self._release(event.worker, run)
        if run.status == RunStatus.DELETED:
            return
        before = run.chunks_done
        run.next_step = result.end_step
        run.state_key = result.state_key or run.state_key  # None: nothing new was saved
        run.timings.append(result.timings)
        run.tracker.set_metadata("engine", run.engine_state())
        if self.checkpoints is not None:
            # Only once the new checkpoint is recorded durably may the older ones go.
            run.tracker.flush()
            if result.state_key:
                self.checkpoints.prune(result.state_key)
        if run.chunks_done > before:
            run.metric_at_chunk[run.chunks_done] = dict(run.latest)
        if run.next_step >= run.spec.plan.total_steps:
            run.status = RunStatus.COMPLETED
            if self.on_complete is not None:
                self.on_complete(run)
            run.tracker.finish(status=RunStatus.COMPLETED)
        self._settle(run)
        if run.chunks_done > before:
            self._ask_stopping_policy()

    def _ask_stopping_policy(self) -> None:
        if isinstance(self.stopping, NoStopping) or self.store is None:
            return
        metric = self.stopping.metric
        try:
            decisions = self._stopping_decisions(metric)
        except Exception as exc:  # a broken policy is switched off, the runs go on
            import warnings

            warnings.warn(f"stopping policy {self.stopping!r} failed and is off: {exc!r}",
                          RuntimeWarning, stacklevel=2)
            self.stopping = NoStopping()
            return
        policy = type(self.stopping).__name__
        for decision in decisions:
            self.store.add_op(self.project, OpKind.STOP, decision.run_id,
                              {"reason": decision.reason}, f"policy:{policy}", policy)
            self.by_id[decision.run_id].tracker.alert("stopped by policy", decision.reason,
                                                      "info")
        self._poll_ops(force=True)

    def _stopping_decisions(self, metric: str) -> list[StopDecision]:
        progress = [RunProgress(r.index, r.spec.run_id, r.chunks_done, r.num_chunks,
                                r.active and not r.waiting_ops,
                                {c: m[metric] for c, m in r.metric_at_chunk.items()
                                 if metric in m}, r.metric_at_chunk)
                    for r in self.runs]
        return [d for d in self.stopping.decide(progress) if d.run_id in self.by_id]

    def _failed(self, event: TaskFailed) -> None:
        run = self.by_id[event.run_id]
        self._release(event.worker, run)
        self._fail_run(run, event.error, event.traceback)
        self._settle(run)

    def _fail_run(self, run: EngineRun, error: str, trace: str) -> None:
        if run.status == RunStatus.DELETED:
            return
        run.status = RunStatus.FAILED
        run.tracker.alert("run failed", f"{error}\n\n{trace}".strip(), "error")
        run.tracker.finish(status=RunStatus.FAILED)

    def _worker_died(self, worker: int) -> None:
        if worker in self._idle:
            self._idle.remove(worker)
        if worker not in self._ready:
            self._early_deaths += 1
            if self._early_deaths >= MAX_EARLY_DEATHS:
                raise EngineError("workers keep dying before they start; see their stderr")
        self._ready.discard(worker)
        lost = self._inflight.pop(worker, None)
        if lost is not None and lost[0].task_id in self._abandoned:
            self._abandoned.discard(lost[0].task_id)  # its run went on without it
        elif lost is not None:
            task, run = lost
            run.busy, run.worker, run.task_id = False, None, None
            run.deaths[task.chunk] = run.deaths.get(task.chunk, 0) + 1
            if run.deaths[task.chunk] >= MAX_ATTEMPTS:
                self._fail_run(run, f"worker died twice while training chunk {task.chunk}",
                               "the worker process exited unexpectedly (killed or crashed)")
            else:
                run.tracker.alert(
                    "worker died", f"chunk {task.chunk} is retried from the last checkpoint",
                    "warn")
            self._settle(run)
        self.executor.restart(worker)
