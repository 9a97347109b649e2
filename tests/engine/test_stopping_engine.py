"""Stopping policies inside a real experiment, and recovery from a killed controller."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import runfleet
from runfleet import Experiment, GridSearch, List
from runfleet.engine.controller import EngineError
from runfleet.engine.stopping import SuccessiveHalving
from runfleet.fit import TorchConfig
from tests.conftest import ROOT, subprocess_env
from tests.engine.models import make_model, regression_data


def test_successive_halving_on_an_8_config_grid_keeps_the_right_survivors(home: Path) -> None:
    space = GridSearch(TorchConfig(hidden=List([4, 8]),
                                   learning_rate=List([1e-3, 3e-3, 1e-2, 3e-2]),
                                   max_steps=8, per_device_train_batch_size=16),
                       trainer="torch")
    exp = Experiment("sha", dir=home)
    exp.run_fit(space, make_model, regression_data(64), regression_data(32, seed=1),
                num_chunks=4, workers=1, progress=False,
                stopping=SuccessiveHalving("eval_loss", mode="min", eta=2))
    runs = runfleet.Api(home).runs("sha")
    assert len(runs) == 8

    def eval_loss_after(run: runfleet.ApiRun, chunk: int) -> float:
        h = run.history(keys=["eval_loss"]).dropna()
        return float(h.loc[h["_step"] == 2 * chunk, "eval_loss"].item())  # 2 steps a chunk

    # The rule, recomputed from the logged metrics: best 4 of 8 after chunk 1, then the
    # best 2 of those 4 after chunk 2 (ties by run order); those 2 finish, 6 are stopped.
    order = sorted(range(8), key=lambda i: (eval_loss_after(runs[i], 1), i))
    rung1 = order[:4]
    rung2 = sorted(rung1, key=lambda i: (eval_loss_after(runs[i], 2), i))[:2]
    assert sorted(i for i, r in enumerate(runs) if r.status == "completed") == sorted(rung2)
    assert sum(r.status == "stopped" for r in runs) == 6
    for i, r in enumerate(runs):
        expected_steps = 8 if i in rung2 else 4 if i in rung1 else 2
        assert r.last_step == expected_steps, (i, r.last_step)
    policy_ops = [o for o in exp.ops() if o.source == "policy:SuccessiveHalving"]
    assert len(policy_ops) == 6 and all(o.status == "applied" for o in policy_ops)
    assert all("successive halving: eval_loss=" in o.args["reason"] for o in policy_ops)
    assert all(not math.isnan(eval_loss_after(r, 1)) for r in runs)


CONTROLLER = textwrap.dedent("""
    import sys
    from runfleet import Experiment, GridSearch, List
    from runfleet.fit import TorchConfig
    from tests.engine.models import make_model, regression_data
    space = GridSearch(TorchConfig(hidden=List([4, 8]), learning_rate=0.01, max_steps=40,
                                   per_device_train_batch_size=8, delay=0.02), trainer="torch")
    Experiment("crash", dir=sys.argv[1]).run_fit(space, make_model, regression_data(64),
                                                 num_chunks=4, workers=1, progress=False)
""")


def test_controller_killed_then_resume_all_finishes_without_gaps_or_duplicates(
        home: Path) -> None:
    env = subprocess_env(PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    proc = subprocess.Popen([sys.executable, "-c", CONTROLLER, str(home)], env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, "the experiment never got going"
            try:
                runs = runfleet.Api(home).runs("crash")
            except ValueError:
                runs = []
            if len(runs) == 2 and sum(r.last_step for r in runs) >= 25:
                break
            time.sleep(0.1)
        with pytest.raises(EngineError, match="already driven by process"):
            Experiment.attach("crash", dir=home).resume_all(workers=1, progress=False)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    exp = Experiment.attach("crash", dir=home)
    assert not exp.controller_alive()
    before = {r.id: r.last_step for r in runfleet.Api(home).runs("crash")}
    assert any(0 < step < 40 for step in before.values())
    first = next(iter(before))
    pending = exp.clone(first, changes={"learning_rate": 0.02})  # no controller: pending
    assert getattr(pending, "status", None) == "pending"
    exp.resume_all(workers=1, progress=False)
    api = runfleet.Api(home)
    runs = api.runs("crash")
    assert len(runs) == 3 and all(r.status == "completed" for r in runs)
    for r in runs:
        steps = r.series("loss").steps.tolist()
        assert steps == list(range(1, 41)), (r.name, steps[:5], len(steps))
    assert [(o.kind, o.status) for o in exp.ops()] == [("clone", "applied")]
