"""What a worker does, whatever runs it: prepare once, then train chunk tasks and report.

:func:`prepare` sets a worker up from its :class:`~runfleet.engine.spec.WorkerSetup`
(threads, quiet libraries, the trainer's backend imported before the worker reports
ready). :func:`run_task` trains one chunk of one run: load the run's state (host RAM cache,
else the checkpoint store), put the run on the device (``Backend.open``), run the chunk's
steps, evaluate every ``eval_steps`` steps and at the end of the chunk, save the state and
take the run off the device (``Backend.close``). A failure of the run (bad config, out of
memory, NaN loss) is reported with its traceback and the worker goes on with the next task.

Executors supply the transport: ``report`` sends an event to the controller,
``should_stop(task_id)`` says (between two steps) whether a stop for the task arrived.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

from runfleet.engine.backend import Backend, WorkerResources, backend_class
from runfleet.engine.checkpoint import CheckpointStore, checkpoint_key
from runfleet.engine.events import ChunkDone, Event, StepMetrics, TaskFailed
from runfleet.engine.spec import ChunkResult, ChunkTask, WorkerSetup

Report = Callable[[Event], None]
ShouldStop = Callable[[int], bool]


class ControllerGone(Exception):
    """The controller process died: stop without saving (a new controller resumes)."""


def prepare(setup: WorkerSetup, device: str) -> WorkerResources:
    """Set this process up as a worker on ``device``; return what its runs share."""
    import torch

    if setup.threads:
        torch.set_num_threads(setup.threads)
    quiet_libraries()
    if setup.trainer:
        backend_class(setup.trainer)  # import the backend (and its libraries) before ready
    return WorkerResources(device=device, train_dataset=setup.train_dataset,
                           eval_dataset=setup.eval_dataset,
                           create_model_fn=setup.create_model_fn)


def quiet_libraries() -> None:
    """Progress bars of model loading would interleave with the controller's live table."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def run_task(index: int, task: ChunkTask, resources: WorkerResources,
             checkpoints: CheckpointStore, report: Report,
             should_stop: ShouldStop | None = None) -> None:
    """Train one chunk of one run (until its end, or a stop request between two steps) and
    report what happened: ``StepMetrics`` per step and eval, then one ``ChunkDone`` or
    ``TaskFailed``. ``ControllerGone`` from ``should_stop`` propagates (nothing is saved)."""
    spec = task.spec
    backend: Backend | None = None
    timings = {"swap_in_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "swap_out_s": 0.0,
               "fresh": float(task.state_key is None)}
    end = task.start
    stopped = False
    try:
        if should_stop is not None and should_stop(task.task_id):
            report(_dropped(index, task, timings))  # stopped before it started: no state
            return
        t0 = time.perf_counter()
        state: Any = None
        if task.state_key:
            state = checkpoints.load(task.state_key)
        elif spec.warm_start:
            state = {**checkpoints.load(spec.warm_start), "warm_start": True}
        backend = backend_class(spec.trainer)(spec, resources)
        backend.open(state)
        timings["swap_in_s"] = time.perf_counter() - t0
        if should_stop is not None and should_stop(task.task_id):  # stopped while it opened
            backend.close()
            backend = None
            report(_dropped(index, task, timings))
            return
        evaluated_at = -1
        for step in range(task.start, task.end):
            if step > task.start and should_stop is not None and should_stop(task.task_id):
                stopped = True
                break
            t1 = time.perf_counter()
            values = backend.train_step(step, spec.plan.batch_indices(step))
            timings["train_s"] += time.perf_counter() - t1
            global_step = step + 1
            values.update({"epoch": spec.plan.epoch_of(step), "step": global_step,
                           "chunk": task.chunk})
            report(StepMetrics(index, task.task_id, spec.run_id, global_step, values))
            end = global_step
            if spec.eval_steps and global_step % spec.eval_steps == 0:
                _evaluate(index, task, backend, global_step, report, timings)
                evaluated_at = global_step
        if not stopped and should_stop is not None and should_stop(task.task_id):
            stopped = end < task.end  # a stop that arrives with the last step is a no-op
        if not stopped and resources.eval_dataset is not None and evaluated_at != task.end:
            _evaluate(index, task, backend, task.end, report, timings)
        t2 = time.perf_counter()
        key = checkpoint_key(spec.run_id, task.chunk, end if end < task.end else None)
        checkpoints.save(key, backend.state())
        backend.close()
        backend = None
        timings["swap_out_s"] = time.perf_counter() - t2
        report(ChunkDone(index, ChunkResult(task.task_id, spec.run_id, task.chunk, end, key,
                                            timings, stopped)))
    except ControllerGone:
        raise
    except Exception as exc:  # the run fails; the worker lives on for the other runs
        if backend is not None:
            with contextlib.suppress(Exception):  # already broken: nothing more to release
                backend.close()
        report(TaskFailed(index, task.task_id, spec.run_id, f"{type(exc).__name__}: {exc}",
                          traceback.format_exc()))


def _dropped(index: int, task: ChunkTask, timings: dict[str, float]) -> ChunkDone:
    """The report of a task stopped before its first step: the run stays where it was."""
    return ChunkDone(index, ChunkResult(task.task_id, task.spec.run_id, task.chunk,
                                        task.start, task.state_key, timings, stopped=True))


def _evaluate(index: int, task: ChunkTask, backend: Backend, global_step: int,
              report: Report, timings: dict[str, float]) -> None:
    t = time.perf_counter()
    values = backend.evaluate()
    timings["eval_s"] += time.perf_counter() - t
    if values:
        report(StepMetrics(index, task.task_id, task.spec.run_id, global_step, values))
