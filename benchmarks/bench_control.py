"""Stop latency: from a ``stop`` op written to the run's status ``stopped`` in the store.

Run: ``.venv/bin/python benchmarks/bench_control.py`` (about a minute on 2 CPU cores).
A controller process trains 2 SFT LoRA configs on the CPU demo model (long runs); this
process, like a user in another terminal, stops a running run, measures until the store
shows it ``stopped``, resumes it, and repeats (``--stops``, default 10). Target
(issue 5): median <= 1 s. The stop takes effect between two training steps: the
controller sees the op (it polls every 0.1 s), tells the worker, the worker saves the
run's state after its current step, and the controller records the status.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

CONTROLLER = textwrap.dedent("""
    import sys
    from runfleet import Experiment, GridSearch, List
    from runfleet.demo.sft_demo import prepare
    from runfleet.demo.tiny import load_model
    from runfleet.fit import LoraConfig, ModelConfig, SFTConfig
    from runfleet.home import Home
    model, train, evaluation = prepare(Home.resolve(sys.argv[1]))
    space = GridSearch(ModelConfig(
        model_name=model, peft_config=LoraConfig(r=8, target_modules="all-linear"),
        training_args=SFTConfig(learning_rate=List([1e-3, 3e-4]), max_steps=4000,
                                per_device_train_batch_size=8, max_length=48)), trainer="sft")
    Experiment("stop-latency", dir=sys.argv[1]).run_fit(space, load_model, train,
                                                        num_chunks=4, progress=False)
""")


def status_of(api: Any, run_id: str) -> str:
    """The run's status as the store has it now."""
    return str(api.run("stop-latency", run_id).status)


def wait(predicate: Any, timeout: float, poll: float = 0.005) -> float:
    """Wait for ``predicate()``; return when it became true (time.time())."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(poll)
    return time.time()


def main() -> int:
    """Run the benchmark; exit 0 when the median latency meets the target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stops", type=int, default=10)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    import runfleet
    from runfleet import Experiment

    with tempfile.TemporaryDirectory(prefix="rf-bench-control-") as tmp:
        home = Path(tmp)
        proc = subprocess.Popen([sys.executable, "-c", CONTROLLER, str(home)],
                                env={**os.environ, "RUNFLEET_SYSTEM_METRICS": "0"})
        try:
            lease = home / "experiments" / "stop-latency" / "controller.json"
            wait(lease.exists, 300, 0.1)
            exp = Experiment.attach("stop-latency", dir=home)
            wait(lambda: len(exp.runs()) == 2, 60, 0.1)
            ids = exp.runs()["id"].tolist()
            api = runfleet.Api(home)
            latencies = []
            for i in range(args.stops):
                run_id = ids[i % 2]
                wait(lambda r=run_id: status_of(api, r) == "running"
                     and api.run("stop-latency", r).last_step > 0, 120, 0.02)
                time.sleep(0.3)  # let it train a little: a stop lands mid-chunk
                op = exp.stop(run_id, wait=False)
                stopped = wait(lambda r=run_id: status_of(api, r) == "stopped", 30)
                latencies.append(stopped - op.created)
                print(f"stop {i + 1}: {1e3 * latencies[-1]:.0f} ms", flush=True)
                exp.resume(run_id, wait=True)
            for run_id in ids:
                exp.delete(run_id, wait=True)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    median = statistics.median(latencies)
    print(f"\nstop latency over {len(latencies)} stops on the CPU demo model: median "
          f"{1e3 * median:.0f} ms, max {1e3 * max(latencies):.0f} ms (target: median <= 1 s)"
          f"  {'PASS' if median <= 1.0 else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"latencies_s": latencies, "median_s": median}))
    return 0 if median <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
