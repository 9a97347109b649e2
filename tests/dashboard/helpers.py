"""Shared helpers of the dashboard tests: homes logged by real runfleet processes."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from tests.conftest import PYTHON, subprocess_env

# Four runs of project "demo", written by a real runfleet.init/log process: keys loss, acc,
# epoch over 2,000 steps; config lr (differs), opt (adam/sgd), layers; media and an alert.
DEMO_RUNS = [("run-0", 0.1, "adam"), ("run-1", 0.01, "sgd"), ("run-2", 0.001, "adam"),
             ("run-3", 0.03, "sgd")]

_DEMO_SCRIPT = """
import math, sys, numpy as np, runfleet
home = sys.argv[1]
for i, (name, lr, opt) in enumerate({runs}):
    runfleet.init(project="demo", name=name, dir=home, system_metrics=False,
                  config={{"lr": lr, "opt": opt, "layers": 2 + i}}, tags=["t" + str(i % 2)])
    for s in range({steps}):
        runfleet.log({{"loss": math.exp(-s * lr / 50) + 0.01 * (s % 7),
                       "acc": 1 - math.exp(-s / 500) * (1 - lr), "epoch": s / 1000}})
    if i == 1:
        runfleet.log({{"sample": runfleet.Image(np.full((8, 8, 3), 200, dtype=np.uint8)),
                       "preds": runfleet.Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]]),
                       "weights": runfleet.Histogram(np.arange(100.0), num_bins=10)}})
        runfleet.alert(title="slow start", text="loss is flat", level="warn")
    runfleet.summary["best"] = 1 - lr
    runfleet.finish()
"""


def run_script(home: Path, script: str, *args: str, timeout: float = 120) -> str:
    """Run a Python script in a fresh process (this checkout's runfleet); return stdout."""
    proc = subprocess.run([PYTHON, "-c", textwrap.dedent(script), str(home), *args],
                          capture_output=True, text=True, env=subprocess_env(),
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def log_demo(home: Path, steps: int = 2000) -> None:
    """Log :data:`DEMO_RUNS` into ``home`` from a separate process."""
    run_script(home, _DEMO_SCRIPT.format(runs=json.dumps(DEMO_RUNS), steps=steps))


SPIKE_SCRIPT = """
import sys, numpy as np, runfleet
runfleet.init(project="spike", name="spiky", dir=sys.argv[1], system_metrics=False)
values = 1.0 + np.random.default_rng(0).normal(0.0, 0.01, 100_000)
values[73_421] = 50.0
for v in values.tolist():
    runfleet.log({"loss": v})
runfleet.finish()
"""
