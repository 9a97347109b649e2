"""Interactive control from another process: stop, resume, clone (warm and cold), delete,
with the ops' audit trail, on a real experiment (torch backend, real workers)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import runfleet
from runfleet import Experiment, GridSearch, List
from runfleet.engine.ops import OpRejectedError, wait_op
from runfleet.fit import TorchConfig
from runfleet.home import Home
from tests.conftest import ROOT, subprocess_env
from tests.engine.models import make_model, regression_data

# Two runs, each held mid-chunk while its file ``<home>/hold-<n>`` exists (see
# tests/engine/models.py): the test decides when each may go on, so no op races the clock.
EXPERIMENT = textwrap.dedent("""
    import sys
    from runfleet import Experiment, GridSearch, List
    from runfleet.fit import TorchConfig
    from tests.engine.models import make_held_model, regression_data
    home = sys.argv[1]
    space = GridSearch(List([
        TorchConfig(hidden=4, learning_rate=0.01, max_steps=40, per_device_train_batch_size=8,
                    hold=f"{home}/hold-1"),
        TorchConfig(hidden=8, learning_rate=0.01, max_steps=40, per_device_train_batch_size=8,
                    hold=f"{home}/hold-2")]), trainer="torch")
    Experiment("ctl", dir=home).run_fit(space, make_held_model, regression_data(64),
                                        num_chunks=2, workers=1, progress=False)
""")


def hold(home: Path, n: int) -> Path:
    """Create the file that holds run ``n`` mid-chunk; return it."""
    path = home / f"hold-{n}"
    path.touch()
    return path


def held(path: Path) -> bool:
    """Whether a worker is held by ``path`` (its model touched ``<path>.<pid>``)."""
    return any(path.parent.glob(path.name + ".*"))


GUARD_S = 600.0  # only against a hang: every wait below ends on an event


def wait_for(predicate, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``predicate()`` holds; fail if the experiment's process exits first."""
    deadline = time.monotonic() + GUARD_S
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the experiment exited (code {proc.returncode}) first")
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing happened within {GUARD_S:g} s")
        time.sleep(0.05)


def losses(home: Path, project: str, run_id: str) -> list[float]:
    return runfleet.Api(home).run(project, run_id).history(keys=["loss"])["loss"].tolist()


def test_stop_resume_clone_delete_from_another_process(home: Path) -> None:
    env = subprocess_env(PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    hold_1, hold_2 = hold(home, 1), hold(home, 2)
    proc = subprocess.Popen([sys.executable, "-c", EXPERIMENT, str(home)], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: held(hold_1), proc)  # run-1 is mid-chunk, a step logged
        exp = Experiment.attach("ctl", dir=home)
        first, second = exp.runs()["id"].tolist()
        # The step reaches the store when the worker's writer next flushes.
        wait_for(lambda: runfleet.Api(home).run("ctl", first).last_step >= 1, proc)

        pending = exp.stop(first, wait=False)
        hold_1.unlink()  # the step in progress ends; the stop lands after it
        op = wait_op(Home.resolve(home), pending.id, while_alive=lambda: proc.poll() is None)
        assert op.status == "applied" and op.source == "attach"
        assert runfleet.Api(home).run("ctl", first).status == "stopped"
        stopped_at = runfleet.Api(home).run("ctl", first).last_step
        wait_for(lambda: held(hold_2), proc)  # the worker moved on to run-2, held there
        assert runfleet.Api(home).run("ctl", first).last_step == stopped_at
        with pytest.raises(OpRejectedError, match="already stopped"):
            exp.stop(first)

        cold = exp.clone(second, changes={"learning_rate": 0.05})
        with pytest.raises(OpRejectedError, match=r"unknown config key 'bogus'"):
            exp.clone(second, changes={"bogus": 1})
        with pytest.raises(OpRejectedError, match="learning_rate must be > 0"):
            exp.clone(second, changes={"learning_rate": -1.0})
        assert exp.resume(first).status == "applied"
        hold_2.unlink()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    api = runfleet.Api(home)
    runs = {r.id: r for r in api.runs("ctl")}
    assert len(runs) == 3  # the rejected clones created nothing
    assert all(r.status == "completed" for r in runs.values())
    child = runs[str(cold)]
    assert child.parent == second and child.config["learning_rate"] == 0.05
    assert child.parent_step is not None and child.config["warm_start"] is False
    # The stopped and resumed run equals the same config trained without interruption.
    ref = Experiment("ref", dir=home)
    ref.run_fit(TorchConfig(hidden=4, learning_rate=0.01, max_steps=40,
                            per_device_train_batch_size=8), make_model, regression_data(64),
                num_chunks=1, workers=1, progress=False)
    (ref_run,) = api.runs("ref")
    a, b = losses(home, "ctl", first), losses(home, "ref", ref_run.id)
    assert len(a) == len(b) == 40 and np.max(np.abs(np.array(a) - np.array(b))) <= 1e-6
    trail = [(o.kind, o.status, o.source) for o in Experiment.attach("ctl", dir=home).ops()]
    assert trail == [("stop", "applied", "attach"), ("stop", "rejected", "attach"),
                     ("clone", "applied", "attach"), ("clone", "rejected", "attach"),
                     ("clone", "rejected", "attach"), ("resume", "applied", "attach")]


def test_delete_and_warm_clone_in_process(home: Path) -> None:
    """Ops written before the controller starts are applied in order when it runs."""
    exp = Experiment("del", dir=home)
    # Full batches and no dropout: consecutive losses differ only by one optimizer step.
    space = GridSearch(TorchConfig(hidden=List([4, 8]), learning_rate=0.01, max_steps=16,
                                   per_device_train_batch_size=64, dropout=0.0),
                       trainer="torch")
    exp.run_fit(space, make_model, regression_data(64), num_chunks=2, workers=1,
                progress=False)
    first, second = exp.runs()["id"].tolist()
    pending = [exp.delete(first, wait=False), exp.clone(second, warm_start=True, wait=False),
               exp.clone(second, warm_start=False, wait=False)]
    assert all(getattr(op, "status", None) == "pending" for op in pending)
    exp.resume_all(workers=1, progress=False)
    ops = exp.ops()
    assert [(o.kind, o.status) for o in ops] == [("delete", "applied"), ("clone", "applied"),
                                                 ("clone", "applied")]
    # A cold clone (same config) is a fresh run: its losses equal the parent's from step 1.
    cold = runfleet.Api(home).run("del", ops[2].result["run_id"])
    assert losses(home, "del", cold.id) == losses(home, "del", second)
    assert cold.config["warm_start"] is False
    api = runfleet.Api(home)
    assert [r.id for r in api.runs("del")] != [] and first not in [r.id for r in api.runs("del")]
    deleted = api.runs("del", include_deleted=True, filters={"id": first})[0]
    assert deleted.status == "deleted" and len(deleted.history()) == 16  # data kept
    assert not (home / "experiments" / "del" / "checkpoints" / first).exists()
    child_id = ops[1].result["run_id"]
    child = api.run("del", child_id)
    assert child.parent == second and child.status == "completed"
    parent_last = api.run("del", second).history(keys=["loss"])["loss"].iloc[-1]
    child_first = child.history(keys=["loss"])["loss"].iloc[0]
    assert abs(child_first - parent_last) <= 0.05 * abs(parent_last)


def test_cli_controls_a_running_experiment(home: Path) -> None:
    env = subprocess_env(PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    hold_1, hold_2 = hold(home, 1), hold(home, 2)
    proc = subprocess.Popen([sys.executable, "-c", EXPERIMENT, str(home)], env=env)
    alive = lambda: proc.poll() is None  # noqa: E731

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runfleet", *args, "--dir", str(home)],
                              env=env, capture_output=True, text=True, timeout=300)

    def cli_releasing(release: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a CLI op on a held run: let the run go once the op is recorded."""
        ops_before = len(exp.ops())
        started = subprocess.Popen([sys.executable, "-m", "runfleet", *args, "--dir",
                                    str(home)], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        wait_for(lambda: len(exp.ops()) > ops_before or started.poll() is not None, proc)
        release.unlink()
        out, err = started.communicate(timeout=300)
        return subprocess.CompletedProcess(started.args, started.returncode, out, err)

    try:
        wait_for(lambda: held(hold_1), proc)  # run-1 is mid-chunk, a step logged
        exp = Experiment.attach("ctl", dir=home)
        first, second = exp.runs()["id"].tolist()
        out = cli_releasing(hold_1, "stop", first)
        assert out.returncode == 0 and f"stop {first} applied" in out.stdout, out.stderr
        wait_for(lambda: held(hold_2), proc)  # run-2 holds the worker: the controller lives
        bad = cli("clone", second, "--set", "bogus=1")
        assert bad.returncode == 1 and "unknown config key 'bogus'" in bad.stderr
        good = cli("clone", second, "--set", "learning_rate=0.02", "--name", "faster")
        assert good.returncode == 0 and "new run" in good.stdout, good.stderr
        assert cli("resume", first).returncode == 0
        # A resume sent right behind a stop waits for the stop to land, then applies.
        wait_for(lambda: runfleet.Api(home).run("ctl", first).status == "running", proc)
        stop_op = exp.stop(first, wait=False)
        resume_op = exp.resume(first, wait=False)
        assert wait_op(Home.resolve(home), stop_op.id, while_alive=alive).status == "applied"
        assert wait_op(Home.resolve(home), resume_op.id, while_alive=alive).status == "applied"
        assert cli_releasing(hold_2, "delete", second).returncode == 0
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    api = runfleet.Api(home)
    statuses = {r.name: r.status for r in api.runs("ctl", include_deleted=True)}
    assert statuses == {"run-1": "completed", "run-2": "deleted", "faster": "completed"}
    assert [o.source for o in exp.ops()] == ["cli"] * 4 + ["attach"] * 2 + ["cli"]
