"""A stop must not wait for the set-up work of the run it stops: a run whose worker is
still loading its model (no step done) is stopped at once, and resumes exactly later."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import runfleet
from runfleet import Experiment, GridSearch
from runfleet.engine.ops import wait_op
from runfleet.fit import TorchConfig
from runfleet.home import Home
from runfleet.store.base import OpStatus, RunStatus
from tests.engine.models import make_model_after_gate, regression_data

GUARD_S = 600.0  # only against a hang


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {GUARD_S:g} s"
        time.sleep(0.05)


def test_a_run_still_loading_its_model_stops_at_once_and_resumes_exactly(home: Path) -> None:
    gate = home / "model-loaded"
    space = GridSearch(TorchConfig(hidden=8, learning_rate=0.01, max_steps=6,
                                   per_device_train_batch_size=8, gate=str(gate)))
    exp = Experiment("setup", dir=home)
    failures: list[BaseException] = []

    def drive() -> None:
        try:
            exp.run_fit(space, make_model_after_gate, regression_data(64), num_chunks=2,
                        workers=1, progress=False)
        except BaseException as exc:  # reported by the test
            failures.append(exc)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    api = runfleet.Api(home)
    wait_for(lambda: exp.controller_alive() and len(exp.runs()) == 1
             and exp.runs()["status"].iloc[0] == RunStatus.RUNNING, "run on its worker")
    run_id = exp.runs()["id"].iloc[0]

    control = Experiment.attach("setup", dir=home)
    op = control.stop(run_id, wait=False)
    # The worker is blocked loading the model until the gate opens; the stop lands anyway.
    applied = wait_op(Home.resolve(home), op.id, while_alive=thread.is_alive)
    assert not gate.exists()
    assert applied.status == OpStatus.APPLIED
    assert api.run("setup", run_id).status == RunStatus.STOPPED
    assert api.run("setup", run_id).last_step <= 0  # nothing was trained or saved

    resume = control.resume(run_id, wait=False)
    assert wait_op(Home.resolve(home), resume.id, while_alive=thread.is_alive).status == \
        OpStatus.APPLIED
    gate.touch()  # the model loads; the worker drops the stopped task, then trains the run
    thread.join(GUARD_S)
    assert not thread.is_alive() and not failures
    run = api.run("setup", run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.history(keys=["loss"])["_step"].tolist() == [1, 2, 3, 4, 5, 6]
