"""The executor interface: runs workers, carries tasks to them and events back.

The controller talks to workers only through an executor (no shared files, no store writes
by workers), so where workers run is the executor's business: :class:`~runfleet.engine.
local.LocalExecutor` starts processes on this machine; other executors register in the
``runfleet.executors`` entry-point group (:mod:`runfleet.plugins`) and are chosen with
``run_fit(..., executor=NAME or object)``.

Contract every executor keeps (checked by ``tests/engine/test_executor_conformance.py``):

* after :meth:`~Executor.start`, each worker reports :class:`~runfleet.engine.events.
  WorkerReady` once it can take tasks (and again after :meth:`~Executor.restart`);
* a task submitted to a ready, idle worker produces :class:`~runfleet.engine.events.
  StepMetrics` events, then exactly one :class:`~runfleet.engine.events.ChunkDone` or
  :class:`~runfleet.engine.events.TaskFailed`, unless the worker dies;
* :class:`~runfleet.engine.spec.StopTask` ends that task after its current step with a
  ``ChunkDone`` whose result is ``stopped``; messages to a dead worker are dropped;
* a worker that dies (killed, crashed, its node lost) is reported by
  :meth:`~Executor.dead_workers` exactly once, and its task produces no further events;
* :meth:`~Executor.shutdown` stops every worker and may be called more than once.
"""

from __future__ import annotations

import abc
from typing import Any

from runfleet import plugins
from runfleet.engine.checkpoint import CheckpointStore
from runfleet.engine.events import Event
from runfleet.engine.spec import ChunkTask, WorkerSetup


class Executor(abc.ABC):
    """Runs workers; ``submit`` a task to an idle worker, ``poll`` for events."""

    @abc.abstractmethod
    def start(self, setup: WorkerSetup) -> None:
        """Start the workers; each gets ``setup`` once."""

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Number of worker slots (known once started)."""

    @abc.abstractmethod
    def submit(self, worker: int, task: ChunkTask) -> None:
        """Send a task to a worker."""

    @abc.abstractmethod
    def send(self, worker: int, message: Any) -> None:
        """Send a control message (``StopTask``, ``DropRun``) to a worker."""

    @abc.abstractmethod
    def poll(self, timeout: float) -> list[Event]:
        """Events that arrived, waiting at most ``timeout`` seconds for the first."""

    @abc.abstractmethod
    def dead_workers(self) -> list[int]:
        """Workers that died since the last call (each reported once)."""

    @abc.abstractmethod
    def restart(self, worker: int) -> None:
        """Start a fresh worker in the slot of a dead one."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop every worker."""

    def describe(self) -> str:
        """A few words for the progress table (``"2 local workers"``)."""
        return f"{self.size} worker(s)"

    def checkpoint_store(self, local: CheckpointStore) -> CheckpointStore:
        """The checkpoint store the controller and the workers share, given the
        experiment's local one (its folder on the controller's machine). Executors whose
        workers cannot reach that folder return one they can; the default is ``local``."""
        return local


def make_executor(executor: Executor | str | None, workers: int | None) -> Executor:
    """The executor to run an experiment on: ``executor`` itself, or the one registered
    under that name (default ``"local"``) built with ``workers``."""
    if isinstance(executor, Executor):
        if workers is not None:
            raise ValueError("workers= is for the default executor; give the number of "
                             "workers to the executor object instead")
        return executor
    if executor is not None and not isinstance(executor, str):
        raise TypeError(f"executor must be an Executor or a registered name, got "
                        f"{type(executor).__name__}")
    cls = plugins.load(plugins.EXECUTORS, executor or "local", what="executor")
    made = cls(workers=workers)
    if not isinstance(made, Executor):
        raise TypeError(f"executor {executor!r} is registered as {cls!r}, which does not "
                        f"make a runfleet.engine.executor.Executor")
    return made
