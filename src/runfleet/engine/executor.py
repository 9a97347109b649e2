"""Executors run workers and carry tasks to them and events back.

The controller talks to workers only through an executor (no shared files, no direct
store writes by workers), so a Ray executor can replace :class:`LocalExecutor` later.
``LocalExecutor`` starts ``spawn`` processes, one pipe each way per worker: a worker killed
mid-message can only break its own pipe, never a queue the others share.
"""

from __future__ import annotations

import abc
import contextlib
import multiprocessing as mp
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import cloudpickle

from runfleet.engine.events import Event
from runfleet.engine.spec import ChunkTask


@dataclass
class WorkerSetup:
    """What every worker needs once: the model factory, datasets, checkpoint folder."""

    create_model_fn: Any
    train_dataset: Any
    eval_dataset: Any
    checkpoint_root: str
    threads: int | None = None
    trainer: str = ""  # lets workers import the backend before they report ready


class Executor(abc.ABC):
    """Runs workers; ``submit`` a task to an idle worker, ``poll`` for events."""

    @abc.abstractmethod
    def start(self, setup: WorkerSetup, devices: list[str]) -> None:
        """Start one worker per device."""

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

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Number of worker slots."""


class LocalExecutor(Executor):
    """Worker processes on this machine (``multiprocessing`` with ``spawn``)."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._procs: list[Any] = []
        self._tasks: list[Connection] = []
        self._events: list[Connection] = []
        self._devices: list[str] = []
        self._setup_blob = b""
        self._reported_dead: set[int] = set()
        self._closing = False

    @property
    def size(self) -> int:
        return len(self._procs)

    def start(self, setup: WorkerSetup, devices: list[str]) -> None:
        self._setup_blob = cloudpickle.dumps(setup)
        self._devices = list(devices)
        for i in range(len(devices)):
            self._procs.append(None)
            self._tasks.append(None)  # type: ignore[arg-type]
            self._events.append(None)  # type: ignore[arg-type]
            self._launch(i)

    def _launch(self, index: int) -> None:
        from runfleet.engine.worker import worker_main

        task_recv, task_send = self._ctx.Pipe(duplex=False)
        event_recv, event_send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=worker_main, name=f"runfleet-worker-{index}", daemon=True,
            args=(index, self._devices[index], self._setup_blob, task_recv, event_send))
        proc.start()
        task_recv.close()
        event_send.close()
        self._procs[index] = proc
        self._tasks[index] = task_send
        self._events[index] = event_recv
        self._reported_dead.discard(index)

    def submit(self, worker: int, task: ChunkTask) -> None:
        # A worker that just died cannot take it: dead_workers() reports it and the
        # controller retries the task, which it still counts as in flight.
        with contextlib.suppress(OSError, ValueError):
            self._tasks[worker].send_bytes(cloudpickle.dumps(task))

    def send(self, worker: int, message: Any) -> None:
        if worker in self._reported_dead or self._procs[worker] is None:
            return
        with contextlib.suppress(OSError, ValueError):  # dead: dead_workers() reports it
            self._tasks[worker].send_bytes(cloudpickle.dumps(message))

    def poll(self, timeout: float) -> list[Event]:
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
        dead = []
        for i, proc in enumerate(self._procs):
            if i in self._reported_dead or proc is None or proc.is_alive():
                continue
            self._reported_dead.add(i)
            dead.append(i)
        return dead

    def restart(self, worker: int) -> None:
        for conn in (self._tasks[worker], self._events[worker]):
            conn.close()
        self._launch(worker)

    def pid(self, worker: int) -> int | None:
        """The process id of a worker (for tests and diagnostics)."""
        proc = self._procs[worker]
        return None if proc is None else int(proc.pid)

    def shutdown(self) -> None:
        self._closing = True
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
