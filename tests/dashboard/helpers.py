"""Shared helpers of the dashboard tests: homes logged by real runfleet processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

from starlette.applications import Starlette

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


def auth(app: Starlette) -> dict[str, str]:
    """Headers carrying the app's token (``create_app`` makes one unless ``no_token``)."""
    token = app.state.token
    return {"Authorization": f"Bearer {token}"} if token else {}


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


def start_show(home: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``runfleet show --dir home ARGS`` in a process; return it and the lines it
    printed up to "Ctrl+C" (the URL line among them)."""
    proc = subprocess.Popen([PYTHON, "-m", "runfleet", "show", "--dir", str(home), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=subprocess_env())
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if "Ctrl+C" in line:
            return proc, lines
    proc.kill()
    raise AssertionError(f"runfleet show did not start: {lines}")


def stop_show(proc: subprocess.Popen[str]) -> int:
    """Stop a ``runfleet show`` process with Ctrl+C; return its exit code."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


class ShardGate:
    """A reranker that keeps the retrieval order and, once ``after`` queries were reranked
    in all processes together (one byte per call appended to the file ``counter``), waits
    until the file ``gate`` exists: an eval experiment finishes its first shards, then
    holds until the test lets it go on (importable by the engine's worker processes)."""

    def __init__(self, gate: str, counter: str, after: int) -> None:
        self.gate, self.counter, self.after = gate, counter, after

    def __repr__(self) -> str:
        return f"ShardGate(after={self.after})"

    def __call__(self, query: str, texts: list[str]) -> list[float]:
        """Scores that keep the order of ``texts``; blocks past ``after`` calls until the
        gate opens."""
        with open(self.counter, "ab") as fh:
            fh.write(b".")
        calls = os.path.getsize(self.counter)
        while calls > self.after and not os.path.exists(self.gate):
            time.sleep(0.01)
        return [-float(i) for i in range(len(texts))]
