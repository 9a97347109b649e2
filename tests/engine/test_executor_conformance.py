"""One contract, every executor (see :mod:`runfleet.engine.executor`).

Each case makes an executor with ``n`` workers and knows how to kill one of its workers
the hard way (a lost process, actor or node). The workers train the plain torch loop on a
tiny model, so what is checked is the executor: readiness, task and event transport, stop
messages, death detection and replacement. Tests wait on events; the deadlines are only a
guard against a hang.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from runfleet.engine.backend import backend_class
from runfleet.engine.checkpoint import LocalCheckpointStore
from runfleet.engine.events import ChunkDone, StepMetrics, TaskFailed, WorkerReady
from runfleet.engine.executor import Executor, make_executor
from runfleet.engine.local import LocalExecutor
from runfleet.engine.ray_executor import RayExecutor
from runfleet.engine.spec import ChunkTask, DropRun, RunSpec, StopTask, WorkerSetup
from runfleet.fit import TorchConfig
from tests.engine.models import make_model, regression_data

GUARD_S = 180.0  # only against a hang; every wait below ends on an event


def _kill_local(executor: Executor, worker: int) -> None:
    assert isinstance(executor, LocalExecutor)
    pid = executor.pid(worker)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def _alive_local(executor: Executor, worker: int) -> bool:
    assert isinstance(executor, LocalExecutor)
    pid = executor.pid(worker)
    return pid is not None and psutil.pid_exists(pid) and \
        psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


@dataclass(frozen=True)
class Case:
    """An executor under test: how to make one with ``n`` workers, kill a worker the hard
    way, and tell whether a worker still runs."""

    make: Callable[[int], Executor]
    kill: Callable[[Executor, int], None]
    alive: Callable[[Executor, int], bool]


def _kill_ray(executor: Executor, worker: int) -> None:
    import ray

    assert isinstance(executor, RayExecutor)
    ray.kill(executor.actor(worker), no_restart=True)


def _alive_ray(executor: Executor, worker: int) -> bool:
    import ray

    assert isinstance(executor, RayExecutor)
    if not executor._actors:
        return False
    try:
        ray.get(executor.actor(worker).ready.remote(), timeout=GUARD_S)
    except ray.exceptions.RayActorError:
        return False
    return True


CASES = {
    "local": Case(lambda n: LocalExecutor(workers=n), _kill_local, _alive_local),
    # a third party's executor, found by its registered name (tests/plugins/example_plugin)
    "example-local": Case(lambda n: make_executor("example-local", n), _kill_local,
                          _alive_local),
    # workers as Ray actors on a local Ray instance (started once for this module)
    "ray": Case(lambda n: RayExecutor(num_workers=n, resources_per_worker={"CPU": 1}),
                _kill_ray, _alive_ray),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    if request.param.startswith("example-"):
        request.getfixturevalue("example_plugin")
    if request.param == "ray":
        request.getfixturevalue("ray_local")
    return CASES[request.param]


class Driver:
    """An executor with its events collected as they arrive."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.events: list[Any] = []
        self._task_ids = iter(range(1, 1_000_000))

    def wait_for(self, what: str, found: Callable[[], bool]) -> None:
        deadline = time.monotonic() + GUARD_S
        while not found():
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {GUARD_S} s; events: {self.events[-5:]}")
            self.events += self.executor.poll(0.1)

    def task(self, spec: RunSpec, start: int, end: int, state_key: str | None = None
             ) -> ChunkTask:
        return ChunkTask(next(self._task_ids), spec, 0, start, end, state_key)

    def ended(self, task: ChunkTask) -> Any:
        """Wait for the one ChunkDone or TaskFailed of ``task``."""
        def last() -> list[Any]:
            return [e for e in self.events if isinstance(e, (ChunkDone, TaskFailed))
                    and _task_of(e) == task.task_id]
        self.wait_for(f"end of task {task.task_id}", lambda: bool(last()))
        (event,) = last()
        return event

    def steps(self, task: ChunkTask) -> list[int]:
        return [e.step for e in self.events if isinstance(e, StepMetrics)
                and e.task_id == task.task_id and "loss" in e.values]

    def ready(self, worker: int) -> int:
        return sum(1 for e in self.events if isinstance(e, WorkerReady) and e.worker == worker)


def _task_of(event: Any) -> int:
    return int(event.result.task_id if isinstance(event, ChunkDone) else event.task_id)


def spec(run_id: str, steps: int, delay: float = 0.0) -> RunSpec:
    config = TorchConfig(hidden=8, learning_rate=0.01, per_device_train_batch_size=8,
                         max_steps=steps, delay=delay)
    plan = backend_class("torch").plan(config, 64, 1, 0)
    return RunSpec(run_id, "torch", config, plan.steps, 0)


@pytest.fixture
def driver(case: Case, tmp_path: Path) -> Iterator[Driver]:
    executor = case.make(2)
    setup = WorkerSetup(make_model, regression_data(64), None,
                        LocalCheckpointStore(tmp_path / "checkpoints"), "torch")
    executor.start(setup)
    try:
        yield Driver(executor)
    finally:
        executor.shutdown()


def test_every_worker_reports_ready_and_trains_the_tasks_it_gets(driver: Driver) -> None:
    assert driver.executor.size == 2
    driver.wait_for("two ready workers", lambda: driver.ready(0) > 0 < driver.ready(1))
    first, second = driver.task(spec("a", 6), 0, 6), driver.task(spec("b", 4), 0, 4)
    driver.executor.submit(0, first)
    driver.executor.submit(1, second)
    done_a, done_b = driver.ended(first), driver.ended(second)
    assert isinstance(done_a, ChunkDone) and isinstance(done_b, ChunkDone)
    assert (done_a.worker, done_b.worker) == (0, 1)
    assert driver.steps(first) == [1, 2, 3, 4, 5, 6] and driver.steps(second) == [1, 2, 3, 4]
    assert done_a.result.end_step == 6 and not done_a.result.stopped
    # the next task on a worker continues from the state the last one saved
    spec_a = spec("a", 12)
    again = driver.task(spec_a, 6, 12, done_a.result.state_key)
    driver.executor.submit(1, again)
    assert isinstance(driver.ended(again), ChunkDone)
    assert driver.steps(again) == [7, 8, 9, 10, 11, 12]
    assert driver.ready(0) == driver.ready(1) == 1


def test_a_stop_ends_the_task_after_its_current_step(driver: Driver) -> None:
    driver.wait_for("a ready worker", lambda: bool(driver.ready(0)))
    long = driver.task(spec("long", 10_000, delay=0.005), 0, 10_000)
    driver.executor.submit(0, long)
    driver.wait_for("a first step", lambda: bool(driver.steps(long)))
    driver.executor.send(0, StopTask(long.task_id))
    driver.executor.send(0, DropRun("someone-else"))  # other messages are taken in stride
    ended = driver.ended(long)
    assert isinstance(ended, ChunkDone) and ended.result.stopped
    assert 1 <= ended.result.end_step < 10_000
    assert driver.steps(long) == list(range(1, ended.result.end_step + 1))
    assert str(ended.result.state_key).endswith(f"-step-{ended.result.end_step}")


def test_a_killed_worker_is_reported_once_and_replaced(case: Case, driver: Driver) -> None:
    driver.wait_for("two ready workers", lambda: driver.ready(0) > 0 < driver.ready(1))
    doomed = driver.task(spec("doomed", 10_000, delay=0.005), 0, 10_000)
    driver.executor.submit(1, doomed)
    driver.wait_for("a first step", lambda: bool(driver.steps(doomed)))
    case.kill(driver.executor, 1)
    dead: list[int] = []

    def reported() -> bool:
        dead.extend(driver.executor.dead_workers())
        return bool(dead)

    driver.wait_for("the death report", reported)
    assert dead == [1]
    driver.events += driver.executor.poll(0.2)
    assert driver.executor.dead_workers() == []  # reported exactly once
    assert not [e for e in driver.events if isinstance(e, (ChunkDone, TaskFailed))
                and _task_of(e) == doomed.task_id]
    driver.executor.send(1, StopTask(doomed.task_id))  # to a dead worker: dropped

    driver.executor.restart(1)
    driver.wait_for("the replacement ready", lambda: driver.ready(1) == 2)
    again = driver.task(spec("again", 3), 0, 3)
    driver.executor.submit(1, again)
    assert isinstance(driver.ended(again), ChunkDone)
    assert driver.ready(0) == 1  # the other worker was never touched


def test_shutdown_stops_every_worker_and_can_be_repeated(case: Case, tmp_path: Path) -> None:
    executor = case.make(1)
    executor.start(WorkerSetup(make_model, regression_data(64), None,
                               LocalCheckpointStore(tmp_path / "ck"), "torch"))
    driver = Driver(executor)
    driver.wait_for("a ready worker", lambda: bool(driver.ready(0)))
    assert case.alive(executor, 0)
    executor.shutdown()
    executor.shutdown()
    assert not case.alive(executor, 0)
