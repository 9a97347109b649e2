"""``LocalExecutor``: worker processes on this machine, one per GPU (or N on the CPU).

Workers are ``spawn`` processes with one pipe each way: a worker killed mid-message can
only break its own pipe, never a queue the others share. A worker checks its task pipe
between two steps for control messages (:class:`Inbox`) and exits when its controller dies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
from multiprocessing.connection import Connection, wait
from typing import Any

import cloudpickle

from runfleet.engine import worker
from runfleet.engine.checkpoint import CheckpointStore
from runfleet.engine.events import Event, WorkerReady
from runfleet.engine.executor import Executor
from runfleet.engine.spec import ChunkTask, DropRun, StopTask, WorkerSetup


class LocalExecutor(Executor):
    """Worker processes on this machine (``multiprocessing`` with ``spawn``).

    Args:
        workers: how many; None: one per visible GPU, else one on the CPU. Workers are
            spread over the GPUs round-robin.
        threads: torch threads per CPU worker; None: ``RUNFLEET_WORKER_THREADS``, else the
            cores shared out between the workers.
    """

    def __init__(self, workers: int | None = None, threads: int | None = None) -> None:
        self.devices = devices(workers)
        self.threads = threads
        self._ctx = mp.get_context("spawn")
        self._procs: list[Any] = []
        self._tasks: list[Connection] = []
        self._events: list[Connection] = []
        self._setup_blob = b""
        self._reported_dead: set[int] = set()

    def __repr__(self) -> str:
        return f"LocalExecutor(workers={len(self.devices)})"

    @property
    def size(self) -> int:
        """See :attr:`Executor.size`: one slot per device."""
        return len(self.devices)

    def describe(self) -> str:
        """``"<n> local worker(s) on <device>"``."""
        where = ", ".join(sorted(set(self.devices)))
        return f"{self.size} local worker(s) on {where}"

    def start(self, setup: WorkerSetup) -> None:
        """See :meth:`Executor.start`."""
        threads = self.threads or worker_threads(self.devices)
        self._setup_blob = cloudpickle.dumps(dataclasses.replace(setup, threads=threads))
        for i in range(self.size):
            self._procs.append(None)
            self._tasks.append(None)  # type: ignore[arg-type]
            self._events.append(None)  # type: ignore[arg-type]
            self._launch(i)

    def _launch(self, index: int) -> None:
        task_recv, task_send = self._ctx.Pipe(duplex=False)
        event_recv, event_send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=worker_main, name=f"runfleet-worker-{index}", daemon=True,
            args=(index, self.devices[index], self._setup_blob, task_recv, event_send))
        proc.start()
        task_recv.close()
        event_send.close()
        self._procs[index] = proc
        self._tasks[index] = task_send
        self._events[index] = event_recv
        self._reported_dead.discard(index)

    def submit(self, worker: int, task: ChunkTask) -> None:
        """See :meth:`Executor.submit`."""
        # A worker that just died cannot take it: dead_workers() reports it and the
        # controller retries the task, which it still counts as in flight.
        with contextlib.suppress(OSError, ValueError):
            self._tasks[worker].send_bytes(cloudpickle.dumps(task))

    def send(self, worker: int, message: Any) -> None:
        """See :meth:`Executor.send`."""
        if worker in self._reported_dead or self._procs[worker] is None:
            return
        with contextlib.suppress(OSError, ValueError):  # dead: dead_workers() reports it
            self._tasks[worker].send_bytes(cloudpickle.dumps(message))

    def poll(self, timeout: float) -> list[Event]:
        """See :meth:`Executor.poll`."""
        conns = [c for i, c in enumerate(self._events) if i not in self._reported_dead]
        out: list[Event] = []
        for conn in wait(conns, timeout=timeout):
            assert isinstance(conn, Connection)
            try:
                while conn.poll():
                    out.append(conn.recv())
            except (EOFError, OSError):
                pass  # the worker is gone; dead_workers() reports it
        return out

    def dead_workers(self) -> list[int]:
        """See :meth:`Executor.dead_workers`."""
        dead = []
        for i, proc in enumerate(self._procs):
            if i in self._reported_dead or proc is None or proc.is_alive():
                continue
            self._reported_dead.add(i)
            dead.append(i)
        return dead

    def restart(self, worker: int) -> None:
        """See :meth:`Executor.restart`."""
        for conn in (self._tasks[worker], self._events[worker]):
            conn.close()
        self._launch(worker)

    def pid(self, worker: int) -> int | None:
        """The process id of a worker (for tests and diagnostics)."""
        proc = self._procs[worker]
        return None if proc is None else int(proc.pid)

    def shutdown(self) -> None:
        """See :meth:`Executor.shutdown`: ask each worker to exit, kill the ones that do
        not within 10 s."""
        for i, conn in enumerate(self._tasks):
            try:
                if self._procs[i] is not None and self._procs[i].is_alive():
                    conn.send_bytes(cloudpickle.dumps(None))
            except (OSError, ValueError):
                pass
        for proc in self._procs:
            if proc is not None:
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5)
        for conn in [*self._tasks, *self._events]:
            conn.close()


def devices(workers: int | None) -> list[str]:
    """One device per worker: ``workers`` spread over the visible GPUs, else the CPU."""
    try:
        import torch

        gpus = torch.cuda.device_count()
    except ImportError:
        gpus = 0
    if workers is None:
        return [f"cuda:{i}" for i in range(gpus)] if gpus else ["cpu"]
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if gpus:
        return [f"cuda:{i % gpus}" for i in range(workers)]
    return ["cpu"] * workers


def worker_threads(devices: list[str]) -> int | None:
    """Torch threads per CPU worker: ``RUNFLEET_WORKER_THREADS``, else the cores shared out."""
    if devices[0] != "cpu":
        return None
    configured = os.environ.get("RUNFLEET_WORKER_THREADS")
    if configured:
        return max(1, int(configured))
    return max(1, (os.cpu_count() or 1) // len(devices))


# -- the worker process -------------------------------------------------------------------------
def worker_main(index: int, device: str, setup_blob: bytes, tasks: Connection,
                events: Connection) -> None:
    """Entry point of a local worker process: prepare, report ready, then take tasks from
    the task pipe until told to stop (``None``) or the controller goes away."""
    setup: WorkerSetup = cloudpickle.loads(setup_blob)
    resources = worker.prepare(setup, device)
    events.send(WorkerReady(index, {"pid": os.getpid(), "device": device}))
    inbox = Inbox(tasks, setup.checkpoints)
    while True:
        try:
            message = cloudpickle.loads(tasks.recv_bytes())
        except (EOFError, OSError):
            return  # the controller went away
        if isinstance(message, ChunkTask):
            try:
                worker.run_task(index, message, resources, setup.checkpoints, events.send,
                                inbox.should_stop)
            except worker.ControllerGone:
                return
            if inbox.shutdown:
                return
        else:
            inbox.handle(message)
            if inbox.shutdown:
                return


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
            raise worker.ControllerGone()
        try:
            while self.tasks.poll():
                self.handle(cloudpickle.loads(self.tasks.recv_bytes()))
        except (EOFError, OSError):
            raise worker.ControllerGone() from None
        return self.shutdown or task_id in self.stop_ids
