"""``RayExecutor``: the engine's workers as Ray actors, on every node of a Ray cluster.

One long-lived actor per worker slot keeps its base models loaded across the runs it
swaps, exactly as a local worker process does; it runs :func:`runfleet.engine.worker.
run_task` for each chunk. The controller (in the caller's process) talks to actors only
through Ray: tasks and control messages are actor calls, events come back through a Ray
queue. Nothing is shared through files between nodes:

- run states go through a :class:`RayCheckpointStore`: a small actor pinned to the
  controller's node (the *keeper*) writes them into the experiment's checkpoint folder
  there, the same files the controller reads, so a worker on any node continues a run
  whose last chunk ran on another; an fsspec URL (a shared folder, ``s3://`` ...) may be
  given instead (:class:`FsspecCheckpointStore`);
- a lost actor or node is noticed (each actor holds a call open that only ends when it
  dies), reported once, and its slot is started again when the cluster has room; the
  controller retries its chunk on another worker from the last checkpoint.

Example:
    >>> exe = RayExecutor(address="auto", num_workers=8, resources_per_worker={"GPU": 1})
    >>> exp.run_fit(space, create_model_fn, train, evals, executor=exe)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cloudpickle

from runfleet.engine.checkpoint import CheckpointStore, LocalCheckpointStore
from runfleet.engine.events import ChunkDone, Event, TaskFailed, WorkerReady
from runfleet.engine.executor import Executor
from runfleet.engine.ray_storage import (
    FsspecCheckpointStore,
    RayCheckpointStore,
    keeper_for,
    ray_module,
    this_node,
    with_shared_folders,
)
from runfleet.engine.spec import ChunkTask, DropRun, StopTask, WorkerSetup

_FLUSH_S = 0.05  # how often a worker sends the events it has gathered



def connect(address: str | None = None, **init_args: Any) -> None:
    """Connect this process to Ray once: to the cluster at ``address`` (``"auto"``: the
    one started on this machine with ``ray start``), or, for None, the cluster named by
    ``RAY_ADDRESS`` if set, else a new local instance (no dashboard)."""
    ray = ray_module()
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    args: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": True}
    if address is None:
        # a new local instance (plain ray.init() would join any cluster already running on
        # this machine), unless RAY_ADDRESS names one, as Ray's own tools read it
        address = os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        args.update(include_dashboard=False)
    args.update(init_args)
    ray.init(address=address, **args)


# -- the worker actor ---------------------------------------------------------------------------
class _Worker:
    """The body of a worker actor (made remote by :class:`RayExecutor`)."""

    def __init__(self, index: int, setup_blob: bytes, device: str, paths: list[str],
                 events: Any) -> None:
        from runfleet.engine import worker

        sys.path[:] = paths + [p for p in sys.path if p not in paths]
        self.index, self.events = index, events
        self.setup: WorkerSetup = cloudpickle.loads(setup_blob)
        self.resources = worker.prepare(self.setup, device)
        self.stop_ids: set[int] = set()
        self.pending: list[Event] = []
        self.lock = threading.Lock()
        self.flushed = threading.Event()
        self._worker = worker
        threading.Thread(target=self._flusher, daemon=True).start()
        ray = ray_module()
        self._report(WorkerReady(index, {"pid": os.getpid(), "device": device,
                                         "node": ray.get_runtime_context().get_node_id()}),
                     now=True)

    def ready(self) -> bool:
        """Answers once the worker is set up (its constructor has run)."""
        return True

    def node(self) -> str:
        """The id of the Ray node the worker runs on."""
        return str(ray_module().get_runtime_context().get_node_id())

    def run(self, task_blob: bytes) -> None:
        """Train one chunk task; its events go to the controller's queue."""
        task: ChunkTask = cloudpickle.loads(task_blob)
        self._worker.run_task(self.index, task, self.resources, self.setup.checkpoints,
                              self._report, self._should_stop)

    def send(self, message_blob: bytes) -> None:
        """A control message: stop a task, or forget a deleted run's cached states."""
        message = cloudpickle.loads(message_blob)
        if isinstance(message, StopTask):
            with self.lock:
                self.stop_ids.add(message.task_id)
        elif isinstance(message, DropRun):
            self.setup.checkpoints.forget(message.run_id)

    def watch(self) -> None:
        """Never returns while the worker lives: the controller learns of its death when
        this call fails."""
        threading.Event().wait()

    def _should_stop(self, task_id: int) -> bool:
        with self.lock:
            return task_id in self.stop_ids

    def _report(self, event: Event, now: bool = False) -> None:
        with self.lock:
            self.pending.append(event)
        if now or isinstance(event, (ChunkDone, TaskFailed)):
            self._flush()

    def _flusher(self) -> None:
        while True:
            time.sleep(_FLUSH_S)
            self._flush()

    def _flush(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
            if batch:  # under the lock: batches reach the queue in order
                self.events.put_nowait_batch(batch)


class RayExecutor(Executor):
    """Workers as Ray actors (see the module docstring).

    Args:
        address: a running cluster (``"auto"`` finds the one started on this machine with
            ``ray start --head``; or ``"ray://host:10001"``), or None for a local instance
            started by this process (or the cluster ``RAY_ADDRESS`` names, when set).
        num_workers: worker slots (None: one per GPU of the cluster when workers ask for
            GPUs, else one per ``resources_per_worker`` CPUs of the cluster).
        resources_per_worker: what each worker reserves, e.g. ``{"GPU": 1}`` (the default
            when the cluster has GPUs) or ``{"CPU": 1}`` (the default otherwise). Several
            GPUs are placed on one node together (a placement group per worker).
        checkpoints: None to keep run states in the experiment folder on the controller's
            node (they travel through Ray; no shared filesystem needed), or an fsspec URL
            or shared folder every node can reach.
        spread: place workers on as many nodes as possible (Ray's ``SPREAD``).
        init_args: more arguments for ``ray.init`` (e.g. ``num_cpus``,
            ``object_store_memory``) when this process starts a local instance.
    """

    def __init__(self, address: str | None = None, num_workers: int | None = None,
                 resources_per_worker: Mapping[str, float] | None = None,
                 checkpoints: str | os.PathLike[str] | None = None, spread: bool = True,
                 workers: int | None = None, **init_args: Any) -> None:
        if workers is not None:  # run_fit(..., workers=N, executor="ray")
            if num_workers is not None and num_workers != workers:
                raise ValueError(f"workers={workers} and num_workers={num_workers} disagree")
            num_workers = workers
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.address, self.init_args = address, init_args
        self.num_workers = num_workers
        self.resources = dict(resources_per_worker) if resources_per_worker else None
        self.checkpoint_url = os.fspath(checkpoints) if checkpoints is not None else None
        self.spread = spread
        self._actors: list[Any] = []
        self._watches: list[Any] = []
        self._groups: list[Any] = []
        self._running: dict[int, Any] = {}  # worker -> the ObjectRef of its current task
        self._reported_dead: set[int] = set()
        self._task_of: dict[int, int] = {}  # worker -> the id of the last task it was given
        self._abandoned: set[int] = set()  # tasks of workers reported dead
        self._queue: Any = None
        self._keeper: Any = None
        self._held: list[Any] = []  # keeper actors of shared folders, alive while held
        self._setup_blob = b""
        self._device = "cpu"

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, num_workers={self.num_workers})"

    # -- the seam's side of it ----------------------------------------------------------------
    @property
    def size(self) -> int:
        """See :attr:`Executor.size`."""
        return len(self._actors) if self._actors else (self.num_workers or 0)

    def describe(self) -> str:
        """``"<n> Ray worker(s) (<resources> each) on <m> node(s)"``."""
        self._resolve()
        nodes = len({n["NodeID"] for n in ray_module().nodes() if n.get("Alive")})
        each = ", ".join(f"{v:g} {k}" for k, v in (self.resources or {}).items())
        return f"{self.size} Ray worker(s) ({each} each) on {nodes} node(s)"

    def _resolve(self) -> None:
        """Connect, then fill in the defaults that depend on the cluster: one GPU per worker
        where there are GPUs, else one CPU; as many workers as that allows."""
        connect(self.address, **self.init_args)
        cluster = ray_module().cluster_resources()
        gpus = int(cluster.get("GPU", 0))
        if self.resources is None:
            self.resources = {"GPU": 1.0} if gpus else {"CPU": 1.0}
        per = self.resources
        if self.num_workers is None:
            self.num_workers = max(1, int(gpus // per["GPU"]) if per.get("GPU") else
                                   int(cluster.get("CPU", 1) // (per.get("CPU") or 1)))

    def checkpoint_store(self, local: CheckpointStore) -> CheckpointStore:
        """The store workers use for run states, given the experiment's local one."""
        connect(self.address, **self.init_args)
        if self.checkpoint_url is not None:
            return FsspecCheckpointStore(self.checkpoint_url, Path(
                getattr(local, "root", "checkpoints")).parent.name)
        assert isinstance(local, LocalCheckpointStore)
        if self._keeper is None:
            self._keeper = keeper_for(local.root)
        return RayCheckpointStore(self._keeper, str(local.root))

    def start(self, setup: WorkerSetup) -> None:
        """See :meth:`Executor.start`: connect, size the workers, start one actor per slot."""
        import dataclasses

        from ray.util.queue import Queue

        self._resolve()
        per = self.resources or {}
        assert self.num_workers is not None
        self._device = "cuda" if per.get("GPU") else "cpu"
        threads = None if per.get("GPU") else max(1, int(per.get("CPU", 1)))
        if not isinstance(setup.checkpoints, (RayCheckpointStore, FsspecCheckpointStore)):
            setup = dataclasses.replace(setup, checkpoints=self.checkpoint_store(
                setup.checkpoints))
        setup = with_shared_folders(setup, self._held)
        self._setup_blob = cloudpickle.dumps(dataclasses.replace(setup, threads=threads))
        self._queue = Queue(actor_options={"num_cpus": 0,
                                           "scheduling_strategy": this_node()})
        for i in range(self.num_workers):
            self._actors.append(None)
            self._watches.append(None)
            self._groups.append(None)
            self._launch(i)

    def _launch(self, index: int) -> None:
        ray = ray_module()
        per = dict(self.resources or {})
        options: dict[str, Any] = {
            "num_cpus": per.pop("CPU", 1 if "GPU" not in per else 0),
            "num_gpus": per.pop("GPU", 0), "resources": per or None,
            "max_restarts": 0, "name": None}
        if float(options["num_gpus"]) > 1:  # a whole config on one node: a placement group
            from ray.util.placement_group import placement_group
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            group = placement_group([{"GPU": options["num_gpus"],
                                      "CPU": max(options["num_cpus"], 1)}],
                                    strategy="STRICT_PACK")
            self._groups[index] = group
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(group)
        elif self.spread:
            options["scheduling_strategy"] = "SPREAD"
        actor = ray.remote(concurrency_groups={"task": 1, "control": 4})(_Worker).options(
            **{k: v for k, v in options.items() if v is not None}).remote(
            index, self._setup_blob, self._device, list(sys.path), self._queue)
        self._actors[index] = actor
        self._watches[index] = actor.watch.options(concurrency_group="control").remote()
        self._reported_dead.discard(index)
        self._running.pop(index, None)

    def submit(self, worker: int, task: ChunkTask) -> None:
        """See :meth:`Executor.submit`."""
        if worker in self._reported_dead:
            return
        self._task_of[worker] = task.task_id
        self._running[worker] = self._actors[worker].run.options(
            concurrency_group="task").remote(cloudpickle.dumps(task))

    def send(self, worker: int, message: Any) -> None:
        """See :meth:`Executor.send`."""
        if worker in self._reported_dead or not self._actors:
            return
        self._actors[worker].send.options(concurrency_group="control").remote(
            cloudpickle.dumps(message))

    def poll(self, timeout: float) -> list[Event]:
        """See :meth:`Executor.poll`. Events of a task whose worker was reported dead are
        dropped: one sent just before the death can reach the queue after the report, and
        the controller has given that chunk to another worker by then."""
        from ray.util.queue import Empty

        out: list[Event] = []
        try:
            out.append(self._queue.get(block=True, timeout=timeout))
        except Empty:
            return out
        waiting = self._queue.qsize()
        if waiting:
            with contextlib.suppress(Empty):
                out.extend(self._queue.get_nowait_batch(waiting))
        if self._abandoned:
            out = [e for e in out if _task_id(e) not in self._abandoned]
        return out

    def dead_workers(self) -> list[int]:
        """See :meth:`Executor.dead_workers`: a worker whose watch call ended (it can only
        end by the actor dying: killed, crashed, or its node lost)."""
        ray = ray_module()
        live = {i: ref for i, ref in enumerate(self._watches)
                if i not in self._reported_dead and ref is not None}
        if not live:
            return []
        ready, _ = ray.wait(list(live.values()), num_returns=len(live), timeout=0)
        done = set(ready)
        dead = [i for i, ref in live.items() if ref in done]
        for i in dead:
            self._reported_dead.add(i)
            self._running.pop(i, None)
            if i in self._task_of:
                self._abandoned.add(self._task_of.pop(i))
        return dead

    def restart(self, worker: int) -> None:
        """See :meth:`Executor.restart`: a new actor in the slot (Ray places it where there
        is room; it reports ready once it runs)."""
        with contextlib.suppress(Exception):
            ray_module().kill(self._actors[worker], no_restart=True)
        self._launch(worker)

    def node_of(self, worker: int) -> str | None:
        """The Ray node id a worker runs on (for tests and diagnostics)."""
        with contextlib.suppress(Exception):
            return str(ray_module().get(self._actors[worker].node.remote(), timeout=30))
        return None

    def actor(self, worker: int) -> Any:
        """A worker's actor handle (for tests and diagnostics)."""
        return self._actors[worker]

    def shutdown(self) -> None:
        """See :meth:`Executor.shutdown`: kill the actors (and their placement groups)."""
        ray = ray_module()
        if not ray.is_initialized():
            return
        for actor in self._actors:
            if actor is not None:
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
        for group in self._groups:
            if group is not None:
                from ray.util.placement_group import remove_placement_group

                with contextlib.suppress(Exception):
                    remove_placement_group(group)
        self._actors, self._watches, self._groups = [], [], []
        if self._queue is not None:
            with contextlib.suppress(Exception):
                self._queue.shutdown()
            self._queue = None
        self._held = []  # every worker is gone: the folder keepers may go too


def _task_id(event: Event) -> int | None:
    """The task an event belongs to (None for a worker's ready report)."""
    if isinstance(event, ChunkDone):
        return int(event.result.task_id)
    if isinstance(event, WorkerReady):
        return None
    return int(event.task_id)



