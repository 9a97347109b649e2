"""``LocalExecutor``: worker processes on this machine, one per GPU (or N on the CPU).

Each worker is a fresh interpreter started as ``python -m runfleet.engine.local_worker``
(never a fork, and never an import of the caller's ``__main__``: a script without an
``if __name__ == "__main__":`` guard, a notebook or ``python -c`` work alike). It gets the
caller's ``sys.path`` and then the cloudpickled :class:`~runfleet.engine.spec.WorkerSetup`
over its task pipe; functions defined in the caller's ``__main__`` travel by value. There
is one pipe each way per worker: a worker killed mid-message can only break its own pipe,
never a queue the others share. A worker checks its task pipe between two steps for
control messages and exits when its controller dies (see
:mod:`runfleet.engine.local_worker`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import subprocess
import sys
import threading
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import cloudpickle

from runfleet.engine.events import Event
from runfleet.engine.executor import Executor
from runfleet.engine.spec import ChunkTask, WorkerSetup

# the folder that holds the runfleet package (the worker's ``-m`` must find it there)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


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
        self._procs: list[subprocess.Popen[bytes] | None] = []
        self._tasks: list[Connection] = []
        self._events: list[Connection] = []
        self._locks: list[threading.Lock] = []
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
            self._locks.append(threading.Lock())
            self._launch(i)

    def _launch(self, index: int) -> None:
        task_recv, task_send = os.pipe()
        event_recv, event_send = os.pipe()
        env = dict(os.environ)  # the worker imports runfleet from where this process does
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH"))
                                            if p)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "runfleet.engine.local_worker", str(index),
                 self.devices[index], str(task_recv), str(event_send)],
                pass_fds=(task_recv, event_send), stdin=subprocess.DEVNULL, env=env)
        finally:
            os.close(task_recv)
            os.close(event_send)
        self._procs[index] = proc
        self._tasks[index] = Connection(task_send, readable=False)
        self._events[index] = Connection(event_recv, writable=False)
        self._locks[index] = lock = threading.Lock()
        self._reported_dead.discard(index)
        # The setup (datasets included) may be large: hand it over while the worker starts
        # up, beside the other workers; tasks and messages for it wait on the lock.
        lock.acquire()
        threading.Thread(target=self._hand_over, args=(index, lock), daemon=True,
                         name=f"runfleet-setup-{index}").start()

    def _hand_over(self, index: int, lock: threading.Lock) -> None:
        try:
            with contextlib.suppress(OSError, ValueError):  # died: dead_workers() says so
                self._tasks[index].send_bytes(pickle.dumps(list(sys.path)))
                self._tasks[index].send_bytes(self._setup_blob)
        finally:
            lock.release()

    def _send(self, worker: int, blob: bytes) -> None:
        with self._locks[worker], contextlib.suppress(OSError, ValueError):
            self._tasks[worker].send_bytes(blob)

    def submit(self, worker: int, task: ChunkTask) -> None:
        """See :meth:`Executor.submit`."""
        # A worker that just died cannot take it: dead_workers() reports it and the
        # controller retries the task, which it still counts as in flight.
        self._send(worker, cloudpickle.dumps(task))

    def send(self, worker: int, message: Any) -> None:
        """See :meth:`Executor.send`."""
        if worker in self._reported_dead or self._procs[worker] is None:
            return
        self._send(worker, cloudpickle.dumps(message))  # dead: dead_workers() reports it

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
            if i in self._reported_dead or proc is None or proc.poll() is None:
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
        for i, proc in enumerate(self._procs):
            if proc is not None and proc.poll() is None:
                self._send(i, cloudpickle.dumps(None))
        for proc in self._procs:
            if proc is not None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
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
