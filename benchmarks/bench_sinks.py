#!/usr/bin/env python
"""Fan-out benchmark: logging to trackio through runfleet versus logging to trackio directly.

Workload: one run x ``--steps`` steps (default 20,000) x 5 floats, the yardstick of
``bench_logging.py`` (a). Two ways, each in a fresh process with its own ``TRACKIO_DIR``:

* ``direct``: ``trackio.init(...)``, ``trackio.log(row)`` per step, ``trackio.finish()``;
* ``fanout``: ``runfleet.init(..., sinks=["trackio"])``, ``run.log(row)`` per step,
  ``run.finish()``, which returns once trackio has taken every row (runfleet's own store is
  written too).

Timed inside the process from just before ``init`` until ``finish`` returned (imports of
both libraries and data generation are done before the clock starts). Also timed: the log
loop alone, i.e. how long the training loop was held up. After each run the rows in
trackio's SQLite file are counted, so a fan-out that dropped rows cannot pass. Runs
alternate which way goes first; ratio of medians (fanout / direct), target <= 1.1.

Usage::

    python benchmarks/bench_sinks.py                   # 20,000 steps, 5 repeats
    python benchmarks/bench_sinks.py --steps 2000 --repeats 2   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEYS = ("loss", "accuracy", "lr", "grad_norm", "tokens_per_s")
PROJECT = "bench-sinks"
MARK = "BENCH_RESULT "
TARGET = 1.1


def worker(way: str, steps: int, home: str) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import trackio  # noqa: F401  (imported before the clock, in both ways)

    import runfleet

    rng = random.Random(0)
    rows = [{k: rng.random() for k in KEYS} for _ in range(steps)]
    t0 = time.perf_counter()
    if way == "direct":
        import trackio as tr

        tr.init(project=PROJECT, name="r", config={"lr": 0.1})
        t1 = time.perf_counter()
        for row in rows:
            tr.log(row)
        t2 = time.perf_counter()
        tr.finish()
    else:
        run = runfleet.init(project=PROJECT, name="r", config={"lr": 0.1},
                            dir=os.path.join(home, "runfleet"), sinks=["trackio"])
        t1 = time.perf_counter()
        for row in rows:
            run.log(row)
        t2 = time.perf_counter()
        run.finish()
    t3 = time.perf_counter()
    db = Path(os.environ["TRACKIO_DIR"]) / f"{PROJECT}.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    return {"way": way, "wall_s": t3 - t0, "loop_s": t2 - t1, "init_s": t1 - t0,
            "stored": stored, "steps": steps}


def measure(way: str, steps: int, root: Path) -> dict[str, Any]:
    """Run one measurement in a child process; return its result."""
    home = Path(tempfile.mkdtemp(prefix=f"{way}-", dir=root))
    env = {**os.environ, "TRACKIO_DIR": str(home / "trackio"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--worker", way, "--steps", str(steps),
                           "--home", str(home)], env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{way} worker failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith(MARK))
    shutil.rmtree(home, ignore_errors=True)
    result: dict[str, Any] = json.loads(line[len(MARK):])
    return result


def main() -> int:
    """Parse arguments; run the workers (or be one)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--worker", choices=("direct", "fanout"), help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(MARK + json.dumps(worker(args.worker, args.steps, args.home)), flush=True)
        return 0
    root = Path(tempfile.mkdtemp(prefix="bench-sinks-"))
    results: dict[str, list[dict[str, Any]]] = {"direct": [], "fanout": []}
    try:
        for i in range(args.repeats):
            order = ("direct", "fanout") if i % 2 == 0 else ("fanout", "direct")
            for way in order:
                r = measure(way, args.steps, root)
                results[way].append(r)
                print(f"  {way:7s} wall {r['wall_s']:.3f} s  log loop {r['loop_s']:.3f} s  "
                      f"rows in trackio {r['stored']}/{r['steps']}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {w: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "loop_s")}
           for w, rs in results.items()}
    lost = sum(r["steps"] - r["stored"] for r in results["fanout"])
    ratio = med["fanout"]["wall_s"] / med["direct"]["wall_s"]
    loop_ratio = med["fanout"]["loop_s"] / med["direct"]["loop_s"]
    ok = ratio <= TARGET and lost == 0
    print(f"\n1 run x {args.steps} steps x {len(KEYS)} floats, init -> finish, "
          f"median of {args.repeats}:")
    print(f"  trackio directly:            {med['direct']['wall_s']:.3f} s "
          f"(log loop {med['direct']['loop_s']:.3f} s)")
    print(f"  runfleet fanning out to it:  {med['fanout']['wall_s']:.3f} s "
          f"(log loop {med['fanout']['loop_s']:.3f} s)")
    print(f"  ratio {ratio:.3f}x (target <= {TARGET}x), log loop {loop_ratio:.3f}x, "
          f"rows lost by the fan-out: {lost}  {'PASS' if ok else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": dt.datetime.now(dt.timezone.utc).isoformat(), "machine": platform.node(),
            "python": platform.python_version(), "steps": args.steps, "medians": med,
            "ratio": ratio, "loop_ratio": loop_ratio, "lost": lost, "runs": results},
            indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
