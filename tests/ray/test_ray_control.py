"""Live control and crash recovery of experiments on a real 2-node Ray cluster: stop,
resume, clone (warm and cold) and delete from Python, the CLI and the dashboard's HTTP API
while the experiment runs; the controller killed with SIGKILL, then ``resume_all`` on the
same cluster finishes every run with each step logged once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from runfleet import Experiment, GridSearch, List
from runfleet.engine.controller import EngineError
from runfleet.fit import TorchConfig
from tests.conftest import RAY_ENV, ROOT, subprocess_env
from tests.engine.models import make_held_model, regression_data
from tests.ray.helpers import (
    DOORS,
    GUARD_S,
    TwoNodes,
    assert_logged_once,
    history,
    run_info,
    wait_for,
)

# Two runs that would train for minutes (they are deleted long before), one on each worker
# (the experiment ends when no run is left to train, so one keeps it going while the other
# is stopped); full batches and no dropout: consecutive losses differ by one optimizer step.
SPACE = GridSearch(TorchConfig(hidden=List([8, 16]), learning_rate=0.01, max_steps=100_000,
                               per_device_train_batch_size=64, dropout=0.0, delay=0.01),
                   trainer="torch")


@pytest.mark.parametrize("door_name", list(DOORS))
def test_stop_resume_clone_and_delete_while_a_ray_experiment_runs(
        nodes: TwoNodes, home: Path, door_name: str) -> None:
    project = f"ctl-{door_name}"
    exp = Experiment(project, dir=home)
    executor = nodes.executor()
    failures: list[BaseException] = []

    def drive() -> None:
        try:
            exp.run_fit(SPACE, make_held_model, regression_data(64), num_chunks=4,
                        executor=executor, progress=False)
        except BaseException as exc:  # reported by the test
            failures.append(exc)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    door = DOORS[door_name](home, project)
    try:
        wait_for(lambda: exp.controller_alive() and len(exp.runs()) == 2, "the runs",
                 thread.is_alive)
        parent, other = (str(i) for i in exp.runs()["id"])
        wait_for(lambda: run_info(home, project, parent).last_step >= 5, "5 steps",
                 thread.is_alive)

        door.stop(parent)
        stopped = run_info(home, project, parent)
        assert stopped.status == "stopped"
        # Its state was saved where it stopped: at the last step it logged.
        assert stopped.metadata["engine"]["step"] == stopped.last_step >= 5
        door.resume(parent)
        wait_for(lambda: run_info(home, project, parent).last_step > stopped.last_step,
                 "training after the resume", thread.is_alive)
        warm = door.clone(parent, {"max_steps": 8}, warm=True)
        cold = door.clone(parent, {"max_steps": 8, "learning_rate": 0.02}, warm=False)
        door.delete(parent)  # its worker goes to the clones
        wait_for(lambda: all(run_info(home, project, c).status == "completed"
                             for c in (warm, cold)), "the clones to complete",
                 thread.is_alive)
        door.delete(other)  # no run left to train: the experiment ends
        thread.join(GUARD_S)
    finally:
        door.close()
        if thread.is_alive():  # a failed test: end the experiment rather than leave it
            control = Experiment.attach(project, dir=home)
            for run_id in control.runs()["id"]:
                control.delete(str(run_id), wait=False)
            thread.join(GUARD_S)
    assert not thread.is_alive() and not failures, failures

    assert run_info(home, project, parent).status == "deleted"
    assert run_info(home, project, other).status == "deleted"
    assert not (exp.dir / "checkpoints" / parent).exists()  # the keeper deleted its states
    parent_steps, parent_loss = history(home, project, parent)
    assert parent_steps == list(range(1, len(parent_steps) + 1))  # stop/resume: no repeat
    for child, warm_start in ((warm, True), (cold, False)):
        info = run_info(home, project, child)
        assert info.status == "completed" and info.parent == parent
        assert info.config["warm_start"] is warm_start and info.config["max_steps"] == 8
        assert_logged_once(home, project, child, 8)
    assert run_info(home, project, cold).config["learning_rate"] == 0.02
    # The warm clone starts from the parent's state where the stop saved it (copied by
    # the keeper, loaded by a worker on any node): its first loss is the parent's at the
    # next step. The cold clone starts from scratch: its first loss is the parent's first.
    at = run_info(home, project, warm).parent_step
    assert at == stopped.last_step
    warm_first = history(home, project, warm)[1][0]
    cold_first = history(home, project, cold)[1][0]
    assert abs(warm_first - parent_loss[at]) <= 1e-5 * abs(parent_loss[at])
    assert abs(cold_first - parent_loss[0]) <= 1e-6
    assert warm_first < cold_first
    # The parent and its clones trained side by side, on both nodes.
    assert {node for _, _, node in executor.steps} == {nodes.head_id, nodes.worker_id}
    assert [(o.kind, o.status, o.source) for o in exp.ops()] == [
        (kind, "applied", door.source)
        for kind in ("stop", "resume", "clone", "clone", "delete", "delete")]


CONTROLLER = textwrap.dedent("""
    import json, sys
    from runfleet import Experiment, GridSearch, List
    from runfleet.engine import RayExecutor
    from runfleet.fit import TorchConfig
    from tests.engine.models import regression_data
    from tests.engine.models import make_held_model
    home, address, hold, env = sys.argv[1:5]
    space = GridSearch(TorchConfig(hidden=List([4, 8]), learning_rate=0.01, max_steps=12,
                                   per_device_train_batch_size=8, hold=hold, hold_after=1),
                       trainer="torch")
    executor = RayExecutor(address=address, num_workers=2, resources_per_worker={"CPU": 1},
                           runtime_env={"env_vars": json.loads(env)}, log_to_driver=False)
    Experiment("crash", dir=home).run_fit(space, make_held_model, regression_data(64),
                                          num_chunks=3, executor=executor, progress=False)
""")


def test_controller_killed_then_resume_all_on_the_same_cluster(
        nodes: TwoNodes, home: Path, tmp_path: Path) -> None:
    # Each worker trains its first chunk, then is held in its next one (after a step)
    # until the controller is dead.
    hold = tmp_path / "hold"
    hold.touch()
    log = (tmp_path / "controller.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER, str(home), nodes.address, str(hold),
         json.dumps(RAY_ENV)], stdout=log, stderr=subprocess.STDOUT,
        env=subprocess_env(PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}"))
    alive = lambda: proc.poll() is None  # noqa: E731
    try:
        wait_for(lambda: (home / "experiments" / "crash" / "controller.json").exists(),
                 "the controller", alive)
        exp = Experiment.attach("crash", dir=home)
        wait_for(lambda: len(exp.runs()) == 2 and exp.runs()["chunks_done"].sum() >= 1,
                 "a chunk done", alive)

        def ahead_of_checkpoint() -> bool:  # a step logged that a resume trains again
            return any(r.last_step > r.metadata.get("engine", {}).get("step", 0)
                       for r in map(lambda i: run_info(home, "crash", i), exp.runs()["id"]))

        wait_for(lambda: any(tmp_path.glob("hold.*")) and ahead_of_checkpoint(),
                 "a worker held mid-chunk, past its run's checkpoint", alive)
        with pytest.raises(EngineError, match="already driven by process"):
            Experiment.attach("crash", dir=home).resume_all(progress=False,
                                                            executor=nodes.executor())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        hold.unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert not exp.controller_alive()
    before = {str(i): run_info(home, "crash", str(i)) for i in exp.runs()["id"]}
    assert any(0 < r.last_step < 12 for r in before.values())

    executor = nodes.executor()
    results = Experiment.attach("crash", dir=home).resume_all(progress=False,
                                                              executor=executor)
    assert list(results["status"]) == ["completed", "completed"]
    for run_id in before:
        assert_logged_once(home, "crash", run_id, 12)
    # The resumed controller drove new workers on the same cluster, both nodes.
    assert set(executor.slot_node.values()) == {nodes.head_id, nodes.worker_id}
    assert len(executor.chunks) == sum(3 - r.metadata.get("engine", {}).get("chunks_done", 0)
                                       for r in before.values())
