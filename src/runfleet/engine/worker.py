"""A worker process: takes chunk tasks, trains them with the run's backend, reports events.

For each task the worker loads the run's state (host RAM cache, else the checkpoint on
disk), puts the run on its device (``Backend.open``), runs the chunk's steps, evaluates
every ``eval_steps`` steps and at the end of the chunk, saves the state (``Backend.state``
to the checkpoint store) and takes the run off the device (``Backend.close``). A failure
of the run (bad config, out of memory, NaN loss) is reported with its traceback and the
worker goes on with the next task.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import cloudpickle

from runfleet.backends.base import Backend, WorkerResources, backend_for
from runfleet.engine.checkpoint import CheckpointStore, checkpoint_key
from runfleet.engine.events import ChunkDone, StepMetrics, TaskFailed, WorkerReady
from runfleet.engine.executor import WorkerSetup
from runfleet.engine.spec import ChunkResult, ChunkTask, DropRun, StopTask


def worker_main(index: int, device: str, setup_blob: bytes, tasks: Connection,
                events: Connection) -> None:
    """Entry point of a worker process (see the module docstring)."""
    setup: WorkerSetup = cloudpickle.loads(setup_blob)
    import torch

    if setup.threads:
        torch.set_num_threads(setup.threads)
    _quiet_libraries()
    if setup.trainer:
        backend_for(setup.trainer)  # import the backend (and its libraries) before ready
    resources = WorkerResources(device=device, train_dataset=setup.train_dataset,
                                eval_dataset=setup.eval_dataset,
                                create_model_fn=setup.create_model_fn)
    checkpoints = CheckpointStore(Path(setup.checkpoint_root))
    events.send(WorkerReady(index, {"pid": os.getpid(), "device": device}))
    inbox = Inbox(tasks, checkpoints)
    while True:
        try:
            message = cloudpickle.loads(tasks.recv_bytes())
        except (EOFError, OSError):
            return  # the controller went away
        if message is None:
            return
        if isinstance(message, ChunkTask):
            run_task(index, message, resources, checkpoints, events, inbox)
            if inbox.shutdown:
                return
        else:
            inbox.handle(message)


class ControllerGone(Exception):
    """The controller process died: stop without saving (a new controller resumes)."""


class Inbox:
    """Messages that arrive while a chunk trains: stop requests, deleted runs, shutdown."""

    def __init__(self, tasks: Connection, checkpoints: CheckpointStore) -> None:
        self.tasks = tasks
        self.checkpoints = checkpoints
        self.parent = os.getppid()
        self.stop_ids: set[int] = set()
        self.shutdown = False

    def handle(self, message: Any) -> None:
        """Act on one control message."""
        if message is None:
            self.shutdown = True
        elif isinstance(message, StopTask):
            self.stop_ids.add(message.task_id)
        elif isinstance(message, DropRun):
            self.checkpoints.forget(message.run_id)

    def should_stop(self, task_id: int) -> bool:
        """Checked between steps: a stop for this task (or a shutdown) has arrived."""
        if os.getppid() != self.parent:
            raise ControllerGone()
        try:
            while self.tasks.poll():
                self.handle(cloudpickle.loads(self.tasks.recv_bytes()))
        except (EOFError, OSError):
            raise ControllerGone() from None
        return self.shutdown or task_id in self.stop_ids


def _quiet_libraries() -> None:
    """Progress bars of model loading would interleave with the controller's live table."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def run_task(index: int, task: ChunkTask, resources: WorkerResources,
             checkpoints: CheckpointStore, events: Connection, inbox: Inbox | None = None
             ) -> None:
    """Train one chunk of one run (until its end, or a stop request between two steps) and
    report what happened."""
    spec = task.spec
    backend: Backend | None = None
    timings = {"swap_in_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "swap_out_s": 0.0,
               "fresh": float(task.state_key is None)}
    end = task.start
    stopped = False
    try:
        t0 = time.perf_counter()
        state: Any = None
        if task.state_key:
            state = checkpoints.load(task.state_key)
        elif spec.warm_start:
            state = {**checkpoints.load(spec.warm_start), "warm_start": True}
        backend = backend_for(spec.trainer)(spec, resources)
        backend.open(state)
        timings["swap_in_s"] = time.perf_counter() - t0
        evaluated_at = -1
        for step in range(task.start, task.end):
            if step > task.start and inbox is not None and inbox.should_stop(task.task_id):
                stopped = True
                break
            t1 = time.perf_counter()
            values = backend.train_step(step, spec.plan.batch_indices(step))
            timings["train_s"] += time.perf_counter() - t1
            global_step = step + 1
            values.update({"epoch": spec.plan.epoch_of(step), "step": global_step,
                           "chunk": task.chunk})
            events.send(StepMetrics(index, task.task_id, spec.run_id, global_step, values))
            end = global_step
            if spec.eval_steps and global_step % spec.eval_steps == 0:
                _evaluate(index, task, backend, global_step, events, timings)
                evaluated_at = global_step
        if not stopped and inbox is not None and inbox.should_stop(task.task_id):
            stopped = end < task.end  # a stop that arrives with the last step is a no-op
        if not stopped and resources.eval_dataset is not None and evaluated_at != task.end:
            _evaluate(index, task, backend, task.end, events, timings)
        t2 = time.perf_counter()
        key = checkpoint_key(spec.run_id, task.chunk, end if end < task.end else None)
        checkpoints.save(key, backend.state())
        backend.close()
        backend = None
        timings["swap_out_s"] = time.perf_counter() - t2
        events.send(ChunkDone(index, ChunkResult(task.task_id, spec.run_id, task.chunk,
                                                 end, key, timings, stopped)))
    except ControllerGone:
        raise SystemExit(0) from None
    except Exception as exc:  # the run fails; the worker lives on for the other runs
        if backend is not None:
            with contextlib.suppress(Exception):  # already broken: nothing more to release
                backend.close()
        events.send(TaskFailed(index, task.task_id, spec.run_id,
                               f"{type(exc).__name__}: {exc}", traceback.format_exc()))


def _evaluate(index: int, task: ChunkTask, backend: Backend, global_step: int,
              events: Connection, timings: dict[str, float]) -> None:
    t = time.perf_counter()
    values = backend.evaluate()
    timings["eval_s"] += time.perf_counter() - t
    if values:
        events.send(StepMetrics(index, task.task_id, task.spec.run_id, global_step, values))
