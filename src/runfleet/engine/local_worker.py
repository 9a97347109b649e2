"""A local worker process: ``python -m runfleet.engine.local_worker INDEX DEVICE TASK_FD
EVENT_FD``, started by :class:`~runfleet.engine.local.LocalExecutor`.

It reads the caller's ``sys.path`` and its cloudpickled setup from the task pipe, prepares
(:func:`runfleet.engine.worker.prepare`), reports ready, then takes chunk tasks until told
to stop (``None``) or until its controller goes away. While a chunk trains it checks the
task pipe between two steps for control messages (:class:`Inbox`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from runfleet.engine import worker
from runfleet.engine.checkpoint import CheckpointStore
from runfleet.engine.events import WorkerReady
from runfleet.engine.spec import ChunkTask, DropRun, StopTask, WorkerSetup


def main(argv: list[str] | None = None) -> None:
    """Entry point: parse the pipe descriptors and run :func:`worker_main`."""
    index, device, task_fd, event_fd = (argv or sys.argv[1:])[:4]
    # what the user's code prints here goes out line by line (block-buffered into a pipe it
    # would come late, out of order with the progress lines, or never if we are killed)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    tasks = Connection(int(task_fd), writable=False)
    events = Connection(int(event_fd), readable=False)
    try:
        paths: list[str] = pickle.loads(tasks.recv_bytes())
        sys.path[:] = paths + [p for p in sys.path if p not in paths]
        worker_main(int(index), device, tasks.recv_bytes(), tasks, events)
    except (EOFError, OSError):
        return  # the controller went away before or while we started


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


if __name__ == "__main__":
    main()
