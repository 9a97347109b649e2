"""What the real-Ray tests share on the driver's side: a two-node cluster on this machine,
a Ray executor that records which node each event came from, the three front doors of
control, history checks and waits.

Everything runs for real: the cluster is ``ray.cluster_utils.Cluster`` (a head node and a
worker node, each its own raylet, as Ray's own test suite runs clusters); the executor is
:class:`~runfleet.engine.ray_executor.RayExecutor` itself, its events looked at on their way
to the controller. Tests wait on events (a store row, an event, a file a worker writes);
deadlines are only a guard against a hang.
"""

from __future__ import annotations

import abc
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import runfleet
from runfleet import Experiment
from runfleet.engine.events import ChunkDone, Event, StepMetrics, TaskFailed, WorkerReady
from runfleet.engine.policy import Schedulable, SchedulingPolicy
from runfleet.engine.ray_executor import RayExecutor
from runfleet.engine.spec import ChunkTask
from tests.conftest import RAY_ENV, ROOT, subprocess_env

GUARD_S = 300.0  # only against a hang: every wait ends on an event
NODE: dict[str, Any] = {"num_cpus": 2, "object_store_memory": 100 * 2**20}
# A lost node is noticed within ~2 s instead of Ray's default ~15 s (as Ray's tests do).
FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                      "health_check_failure_threshold": 3}
RAY_VARS = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}


def wait_for(predicate: Callable[[], bool], what: str,
             alive: Callable[[], bool] | None = None) -> None:
    """Wait until ``predicate()`` holds; fail if ``alive()`` turns false first (the
    experiment ended) or after :data:`GUARD_S`."""
    deadline = time.monotonic() + GUARD_S
    while not predicate():
        if alive is not None and not alive() and not predicate():
            raise AssertionError(f"the experiment ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {GUARD_S:g} s")
        time.sleep(0.05)


# -- the cluster --------------------------------------------------------------------------------
@dataclass
class TwoNodes:
    """A head node (where the driver, hence the controller and the keeper of run states,
    lives) and one worker node, both on this machine."""

    cluster: Any  # ray.cluster_utils.Cluster
    head_id: str

    @property
    def address(self) -> str:
        """The cluster's address, for ``ray.init`` and ``RayExecutor(address=...)``."""
        return str(self.cluster.address)

    @property
    def worker_node(self) -> Any:
        """The non-head node (a ``ray._private.node.Node``)."""
        (node,) = self.cluster.worker_nodes
        return node

    @property
    def worker_id(self) -> str:
        """The worker node's id."""
        return str(self.worker_node.node_id)

    def ensure_two_nodes(self) -> None:
        """Add a worker node again if a test removed it."""
        if not self.cluster.worker_nodes:
            self.cluster.add_node(**NODE)
            self.cluster.wait_for_nodes()

    def executor(self) -> RecordingRayExecutor:
        """A Ray executor on this cluster: two one-CPU workers, spread over the nodes."""
        return RecordingRayExecutor(address=self.address, num_workers=2,
                                    resources_per_worker={"CPU": 1})


def two_node_cluster() -> Iterator[TwoNodes]:
    """Start a head node and a worker node (2 CPUs, a 100 MiB object store each, no
    dashboard), connect this process as the driver; shut all down afterwards."""
    import ray
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in RAY_VARS}
    os.environ.update(RAY_VARS)
    if ray.is_initialized():
        ray.shutdown()
    cluster: Any = Cluster(initialize_head=True, head_node_args={
        **NODE, "include_dashboard": False, "_system_config": FAST_HEALTH_CHECKS})
    try:
        cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, runtime_env={"env_vars": RAY_ENV},
                 log_to_driver=False)
        head = str(cluster.head_node.node_id)
        assert ray.get_runtime_context().get_node_id() == head  # the driver is on the head
        yield TwoNodes(cluster, head)
    finally:
        ray.shutdown()
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class RecordingRayExecutor(RayExecutor):
    """:class:`RayExecutor`, recording where its events came from: each worker slot's node
    and pid (from its own ``WorkerReady``: the actor asks Ray which node it runs on), and
    for every finished chunk and logged step the node of the actor that reported it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.slot_node: dict[int, str] = {}
        self.slot_pid: dict[int, int] = {}
        self.readies: list[tuple[int, str]] = []  # (slot, node) per WorkerReady
        self.chunks: list[tuple[str, int, str]] = []  # (run, chunk, node) per ChunkDone
        self.steps: list[tuple[str, int, str]] = []  # (run, step, node) per StepMetrics
        self.failures: list[str] = []
        self.inflight: dict[int, ChunkTask] = {}

    def submit(self, worker: int, task: ChunkTask) -> None:
        with self.lock:
            self.inflight[worker] = task
        super().submit(worker, task)

    def poll(self, timeout: float) -> list[Event]:
        events = super().poll(timeout)
        with self.lock:
            for event in events:
                self._record(event)
        return events

    def _record(self, event: Event) -> None:
        if isinstance(event, WorkerReady):
            self.slot_node[event.worker] = str(event.info["node"])
            self.slot_pid[event.worker] = int(event.info["pid"])
            self.readies.append((event.worker, self.slot_node[event.worker]))
            return
        node = self.slot_node[event.worker]
        if isinstance(event, ChunkDone):
            self.chunks.append((event.result.run_id, event.result.chunk, node))
            self.inflight.pop(event.worker, None)
        elif isinstance(event, StepMetrics):
            self.steps.append((event.run_id, event.step, node))
        elif isinstance(event, TaskFailed):
            self.failures.append(event.error)
            self.inflight.pop(event.worker, None)

    def chunks_on(self, node: str) -> int:
        """Chunks finished by workers on ``node``."""
        with self.lock:
            return sum(1 for _, _, n in self.chunks if n == node)

    def slot_on(self, node: str) -> int | None:
        """The worker slot whose (latest) actor runs on ``node``."""
        with self.lock:
            return next((s for s, n in self.slot_node.items() if n == node), None)


class HopNodes(SchedulingPolicy):
    """Chunk ``c`` of run ``i`` goes only to worker ``(i + c) % 2``: with the two workers on
    two nodes, every run changes node at every chunk boundary (its state saved by a worker
    on one node, loaded by a worker on the other)."""

    def choose(self, runs: Sequence[Schedulable], worker: int) -> str | None:
        for r in runs:
            if (not r.busy and r.runnable and r.chunks_done < r.num_chunks
                    and (r.index + r.chunks_done) % 2 == worker):
                return r.run_id
        return None


# -- histories ---------------------------------------------------------------------------------
def history(home: Path, project: str, run_id: str) -> tuple[list[int], np.ndarray]:
    """A run's logged loss: its steps and values."""
    with runfleet.Api(home) as api:
        series = api.run(project, run_id).series("loss")
        return [int(s) for s in series.steps], np.asarray(series.values, dtype=float)


def assert_logged_once(home: Path, project: str, run_id: str, total: int) -> None:
    """Each step 1..total of the run logged exactly once (no gap, no duplicate)."""
    steps, _ = history(home, project, run_id)
    assert steps == list(range(1, total + 1)), (run_id, steps[:8], len(steps))


def alert_titles(home: Path, project: str, run_id: str) -> list[str]:
    """The titles of a run's alerts."""
    with runfleet.Api(home) as api:
        return [a["title"] for a in api.run(project, run_id).alerts()]


def run_info(home: Path, project: str, run_id: str) -> Any:
    """The run as the store has it now (status, last step, metadata...)."""
    with runfleet.Api(home) as api:
        return api.run(project, run_id)


# -- the front doors of control ----------------------------------------------------------------
class Door(abc.ABC):
    """One front door of control (Python, the CLI, the dashboard's HTTP API): each op is
    sent the way a user sends it there and waited for until the controller applied it."""

    source = ""

    def __init__(self, home: Path, project: str) -> None:
        self.home, self.project = home, project

    @abc.abstractmethod
    def apply(self, kind: str, run: str, args: dict[str, Any]) -> dict[str, Any]:
        """Send an op, wait until it is applied (fail otherwise), return its result."""

    def stop(self, run: str) -> None:
        self.apply("stop", run, {})

    def resume(self, run: str) -> None:
        self.apply("resume", run, {})

    def delete(self, run: str) -> None:
        self.apply("delete", run, {"purge": False})

    def clone(self, run: str, changes: dict[str, Any], warm: bool) -> str:
        """The new run's id."""
        return str(self.apply("clone", run, {"changes": changes, "warm_start": warm})["run_id"])

    def close(self) -> None:  # noqa: B027 (most doors hold nothing)
        """Release what the door holds."""


class PythonDoor(Door):
    """``Experiment.attach(name)`` in the caller's process."""

    source = "attach"

    def apply(self, kind: str, run: str, args: dict[str, Any]) -> dict[str, Any]:
        exp = Experiment.attach(self.project, dir=self.home)
        if kind == "clone":
            return {"run_id": exp.clone(run, changes=args["changes"],
                                        warm_start=args["warm_start"])}
        op = getattr(exp, kind)(run, **args)
        assert op.status == "applied", op
        return dict(op.result or {})


class CliDoor(Door):
    """The ``runfleet`` command in a child process."""

    source = "cli"

    def apply(self, kind: str, run: str, args: dict[str, Any]) -> dict[str, Any]:
        import json

        cmd = [sys.executable, "-m", "runfleet", kind, run, "--dir", str(self.home)]
        for key, value in args.get("changes", {}).items():
            cmd += ["--set", f"{key}={json.dumps(value)}"]
        if args.get("warm_start"):
            cmd.append("--warm")
        env = subprocess_env(PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=GUARD_S)
        assert out.returncode == 0 and f"{kind} {run} applied" in out.stdout, \
            (out.stdout, out.stderr)
        found = re.search(r"new run (\S+)", out.stdout)
        return {"run_id": found.group(1)} if found else {}


class DashboardDoor(Door):
    """The dashboard's HTTP API (``POST /api/ops``, then ``GET /api/ops`` until the op is
    no longer pending), as its buttons use it, with the app's token."""

    source = "dashboard"

    def __init__(self, home: Path, project: str) -> None:
        from starlette.testclient import TestClient

        from runfleet.dashboard.app import create_app
        from tests.dashboard.helpers import auth

        super().__init__(home, project)
        app = create_app(home)
        self.client = TestClient(app, base_url="http://127.0.0.1:7760", headers=auth(app))
        self.client.__enter__()

    def apply(self, kind: str, run: str, args: dict[str, Any]) -> dict[str, Any]:
        res = self.client.post("/api/ops", json={"project": self.project, "run": run,
                                                 "kind": kind, "args": args})
        assert res.status_code == 200, res.text
        op_id = res.json()["id"]
        seen: dict[str, Any] = {}

        def read() -> bool:
            listing = self.client.get("/api/ops", params={"project": self.project,
                                                          "run": run}).json()
            seen.update(next(o for o in listing["ops"] if o["id"] == op_id))
            return bool(listing["controller_alive"])

        def settled() -> bool:
            if not read() and seen["status"] == "pending":
                read()  # the controller may have applied it just before it ended
                assert seen["status"] != "pending", f"no controller is left to apply {seen}"
            return seen["status"] != "pending"

        wait_for(settled, f"the controller to apply {kind} {run}")
        assert seen["status"] == "applied", seen
        return dict(seen.get("result") or {})

    def close(self) -> None:
        self.client.__exit__(None, None, None)


DOORS: dict[str, type[Door]] = {"python": PythonDoor, "cli": CliDoor,
                                "dashboard": DashboardDoor}
