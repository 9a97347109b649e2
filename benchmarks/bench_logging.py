#!/usr/bin/env python
"""Logging benchmark: runfleet and trackio side by side, in one invocation.

Workloads (the yardsticks of DESIGN.md section 6):

* (a) one run x 20,000 steps x 5 floats: wall time from ``init()`` to ``finish()`` returning,
  measured inside a fresh process (interpreter start, imports and data generation excluded);
  repeated, alternating which library goes first; ratio of medians.
* (b) 8 writer processes x 50,000 steps (one run each, same project, same home) plus a
  dashboard-like reader polling every 0.25 s; wall from spawning the writers until all have
  exited; rows actually stored versus rows logged; warnings the writers printed.
* (c) bytes on disk per logged step after the writer exited (noisy, smooth and
  float32-derived values).
* (d) reading back all of one 20,000-step run (5 keys): cold (first call in a fresh
  process, imports excluded) and warm (median of the following calls).

Each measurement runs in a fresh subprocess of this same file (``--worker NAME``) under
``sys.executable``, each library in its own temporary home (runfleet: ``dir=`` and
``RUNFLEET_DIR``; trackio: ``TRACKIO_DIR``). Both libraries run with their defaults (system
metrics on where psutil is present). The parent process uses the standard library only and
kills every worker it started if anything goes wrong.

Usage::

    python benchmarks/bench_logging.py                  # full run (about a minute on 2 cores)
    python benchmarks/bench_logging.py --quick          # smoke run with small sizes
    python benchmarks/bench_logging.py --only a,d --repeats 7 --json results.json
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LIBS = ("runfleet", "trackio")
KEYS = ("loss", "accuracy", "lr", "grad_norm", "tokens_per_s")
PROJECT = "bench"
READ_KEY = "loss"  # the series the dashboard-like reader charts
RESULT_MARK = "BENCH_RESULT "
WORKLOADS = ("a", "b", "c", "d")

# Targets (DESIGN.md section 6 and the acceptance criteria).
TARGET_A_RATIO = 0.1
TARGET_B_RATIO = 0.5
TARGET_C_BYTES = 150.0
TARGET_D_RATIO = 0.2
TARGET_D_ABS_S = 0.010  # DESIGN.md gives an absolute 10 ms too; reported, not gated

# Lines a writer prints on stderr that are worth counting in workload (b).
WARNING_PATTERNS = {
    "db_lock": re.compile(r"Could not acquire database lock"),
    "trackio_flush_failed": re.compile(r"trackio failed to flush"),
    "trackio_flush_timeout": re.compile(r"Could not flush all logs"),
    "runfleet_write_warning": re.compile(r"RunfleetWriteWarning"),
    "any_warning": re.compile(r"Warning\b"),
    "traceback": re.compile(r"^Traceback"),
}


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of the four workloads."""

    steps_a: int = 20_000
    procs_b: int = 8
    steps_b: int = 50_000
    steps_c: int = 20_000
    steps_d: int = 20_000
    reader_interval_s: float = 0.25


FULL = Sizes()
QUICK = Sizes(steps_a=2_000, procs_b=2, steps_b=5_000, steps_c=2_000, steps_d=2_000)


# =============================================================================================
# Worker side: each function runs in a fresh subprocess and returns a JSON-able dict.
# =============================================================================================

def make_rows(steps: int, variant: str, seed: int) -> list[dict[str, float]]:
    """Per-step metric dicts of 5 Python floats, as a training loop would log them.

    ``noisy``: a decaying loss, rising accuracy, cosine learning rate, gradient norm and
    throughput with Gaussian noise (float64: the noise makes values nearly incompressible).
    ``smooth``: the same curves without noise. ``noisy-f32``: ``noisy`` rounded to float32,
    like ``tensor.item()`` of a float32 tensor.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(steps, dtype=np.float64)
    frac = t / max(steps - 1, 1)
    span = max(steps, 1)
    cols = {
        "loss": 0.3 + 2.2 * np.exp(-4.0 * t / span),
        "accuracy": 0.95 * (1.0 - np.exp(-5.0 * t / span)),
        "lr": 1e-3 * 0.5 * (1.0 + np.cos(np.pi * frac)),
        "grad_norm": 0.5 + 2.0 * np.exp(-8.0 * t / span),
        "tokens_per_s": 5200.0 + 100.0 * np.sin(t / 50.0),
    }
    if variant in ("noisy", "noisy-f32"):
        cols["loss"] = cols["loss"] * np.exp(0.05 * rng.standard_normal(steps))
        cols["accuracy"] = np.clip(cols["accuracy"] + 0.01 * rng.standard_normal(steps), 0, 1)
        cols["grad_norm"] = np.abs(cols["grad_norm"] * (1 + 0.3 * rng.standard_normal(steps)))
        cols["tokens_per_s"] = cols["tokens_per_s"] + 150.0 * rng.standard_normal(steps)
        if variant == "noisy-f32":
            cols = {k: v.astype(np.float32).astype(np.float64) for k, v in cols.items()}
    elif variant != "smooth":
        raise ValueError(f"unknown variant {variant!r}")
    lists = [cols[k].tolist() for k in KEYS]
    return [dict(zip(KEYS, values, strict=True)) for values in zip(*lists, strict=True)]


def library_defaults(lib: str) -> dict[str, Any]:
    """What the library does by default in this environment (system metrics etc.)."""
    if lib == "runfleet":
        from runfleet.tracking import session, system, writer

        return {
            "system_metrics": session._system_metrics_enabled(None),
            "system_interval_s": system.DEFAULT_INTERVAL_S,
            "flush_interval_s": writer.DEFAULT_INTERVAL_S,
        }
    from trackio import run as trackio_run
    from trackio.cpu import cpu_available
    from trackio.gpu import gpu_available

    return {
        "system_metrics_cpu": bool(cpu_available()),
        "system_metrics_gpu": bool(gpu_available()),
        "system_interval_s": 10.0,
        "flush_interval_s": trackio_run.BATCH_SEND_INTERVAL,
        "storage_mode": os.environ.get("TRACKIO_STORAGE_MODE", "auto"),
    }


def _wait_for_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.002)


def worker_log(p: dict[str, Any]) -> dict[str, Any]:
    """Log ``steps`` rows into one run and time ``init()`` .. ``finish()``.

    With ``ready``/``go`` paths, touch ``ready`` after imports and data generation and wait
    for ``go`` before ``init()`` (used to start all writers of workload (b) together).
    """
    t_start = time.perf_counter()
    lib, home = p["lib"], p["home"]
    mod: Any = importlib.import_module(lib)
    # runfleet gets its home as dir= (and RUNFLEET_DIR); trackio only reads TRACKIO_DIR.
    kwargs = {"dir": home} if lib == "runfleet" else {}

    def init() -> Any:
        return mod.init(project=p["project"], name=p["name"], **kwargs)
    import_s = time.perf_counter() - t_start
    rows = make_rows(p["steps"], p["variant"], p["seed"])
    log = mod.log
    if p.get("ready"):
        Path(p["ready"]).touch()
        _wait_for_file(Path(p["go"]), timeout=600)
    t0 = time.perf_counter()
    init()
    t1 = time.perf_counter()
    for row in rows:
        log(row)
    t2 = time.perf_counter()
    mod.finish()
    t3 = time.perf_counter()
    result = {"import_s": import_s, "init_s": t1 - t0, "log_s": t2 - t1, "finish_s": t3 - t2,
              "total_s": t3 - t0, "steps": p["steps"], "defaults": library_defaults(lib)}
    if p.get("verify", True):  # after the clock stopped: were the rows really stored?
        result["stored_rows"] = _stored_rows(lib, home, p["project"], p["name"])
    return result


def _stored_rows(lib: str, home: str, project: str, name: str) -> int:
    """Rows of run ``name`` as the library itself reads them back."""
    if lib == "runfleet":
        import runfleet

        with runfleet.Api(home) as api:
            return sum(len(r.history()) for r in api.runs(project) if r.name == name)
    from trackio.sqlite_storage import SQLiteStorage

    return int(SQLiteStorage.get_log_count(project, name))


def _poller(lib: str, home: str, project: str) -> Callable[[], int]:
    """A function doing one dashboard refresh; returns the number of points it got."""
    if lib == "runfleet":
        import runfleet

        api: Any = None

        def poll_runfleet() -> int:
            nonlocal api
            if api is None:
                api = runfleet.Api(home)
            try:
                runs = api.runs(project)
            except ValueError:  # the project does not exist yet
                return 0
            # Chart data of one key for every run: min/max buckets over the whole range.
            return sum(len(r.downsample(READ_KEY, buckets=1000)) for r in runs)

        return poll_runfleet

    from trackio.sqlite_storage import SQLiteStorage

    def poll_trackio() -> int:
        # What trackio's dashboard calls: /get_runs_for_project then /get_logs_batch
        # (server default max_points=3000).
        records = SQLiteStorage.get_run_records(project)
        batch = SQLiteStorage.get_logs_batch(
            project, [{"run": r["name"], "run_id": r["id"]} for r in records],
            max_points=3000)
        return sum(len(b["logs"]) for b in batch)

    return poll_trackio


def worker_reader(p: dict[str, Any]) -> dict[str, Any]:
    """Poll like a dashboard every ``interval`` seconds until the ``stop`` file appears."""
    import numpy as np
    import pandas  # noqa: F401  (a dashboard server has it loaded before the first refresh)

    poll = _poller(p["lib"], p["home"], p["project"])
    stop = Path(p["stop"])
    Path(p["ready"]).touch()
    polls = 0
    latencies: list[float] = []  # of the polls that got data (the project existed)
    errors: list[str] = []
    points = 0
    while not stop.exists():
        t0 = time.perf_counter()
        got = 0
        try:
            got = poll()
        except Exception as exc:  # a dashboard shows an error and tries again
            errors.append(repr(exc)[:200])
        elapsed = time.perf_counter() - t0
        polls += 1
        if got:
            points = got
            latencies.append(elapsed)
        time.sleep(max(0.0, p["interval"] - elapsed))
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {"polls": polls, "polls_with_data": len(latencies), "errors": len(errors),
            "error_samples": errors[:5], "latency_median_s": float(np.median(lat)),
            "latency_p95_s": float(np.percentile(lat, 95)),
            "latency_max_s": float(lat.max()), "points_last_poll": points}


def worker_read(p: dict[str, Any]) -> dict[str, Any]:
    """Read back all of the first run of the project: one cold call, then warm calls."""
    import numpy as np
    import pandas as pd  # noqa: F401  (imported before timing: imports are not measured)

    lib, home, project = p["lib"], p["home"], p["project"]
    if lib == "runfleet":
        import runfleet

        api: Any = None

        def read() -> int:
            nonlocal api
            if api is None:  # opening the home is part of the cold read
                api = runfleet.Api(home)
            frame = api.runs(project)[0].history()
            missing = [k for k in KEYS if k not in frame.columns]
            if missing:
                raise RuntimeError(f"history() lacks {missing}")
            return len(frame)
    else:
        from trackio.sqlite_storage import SQLiteStorage

        def read() -> int:
            name = SQLiteStorage.get_runs(project)[0]
            logs = SQLiteStorage.get_logs(project, name)
            missing = [k for k in KEYS if logs and k not in logs[-1]]
            if missing:
                raise RuntimeError(f"get_logs() lacks {missing}")
            return len(logs)

    t0 = time.perf_counter()
    rows = read()
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(p["warm_calls"]):
        t0 = time.perf_counter()
        read()
        warm.append(time.perf_counter() - t0)
    return {"cold_s": cold, "warm_s": warm, "warm_median_s": float(np.median(warm)),
            "rows": rows}


def worker_count(p: dict[str, Any]) -> dict[str, Any]:
    """runfleet: rows stored per run (``len(history())``) and rows with all 5 keys."""
    import runfleet

    with runfleet.Api(p["home"]) as api:
        try:
            runs = api.runs(p["project"])
        except ValueError:
            return {"runs": 0, "rows": 0, "complete_rows": 0, "per_run": {}}
        per_run: dict[str, int] = {}
        rows = complete = 0
        for run in runs:
            frame = run.history()
            present = [k for k in KEYS if k in frame.columns]
            per_run[run.name] = len(frame)
            rows += len(frame)
            if len(present) == len(KEYS):
                complete += int(frame[list(KEYS)].notna().all(axis=1).sum())
    return {"runs": len(runs), "rows": rows, "complete_rows": complete, "per_run": per_run}


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "log": worker_log, "reader": worker_reader, "read": worker_read, "count": worker_count,
}


def run_worker_main(name: str, params_json: str) -> int:
    """Entry point of ``--worker NAME PARAMS``: print the result after :data:`RESULT_MARK`."""
    result = WORKERS[name](json.loads(params_json))
    sys.stdout.flush()
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# =============================================================================================
# Parent side: spawning, timing, reporting. Standard library only.
# =============================================================================================

class BenchError(RuntimeError):
    """A worker failed or timed out."""


_LIVE: list[subprocess.Popen[bytes]] = []


def kill_all() -> None:
    """Kill every worker this process started that is still running."""
    for proc in _LIVE:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
    _LIVE.clear()


class Lab:
    """Temporary directories and worker processes of one benchmark invocation."""

    def __init__(self, root: Path, verbose: bool) -> None:
        self.root = root
        self.verbose = verbose
        self._count = 0

    def fresh_dir(self, label: str) -> Path:
        """A new empty directory under the lab root."""
        self._count += 1
        path = self.root / f"{self._count:03d}-{label}"
        path.mkdir(parents=True)
        return path

    def spawn(self, worker: str, params: dict[str, Any], lib: str, home: Path,
              logs: Path, label: str) -> subprocess.Popen[bytes]:
        """Start ``--worker worker`` for ``lib`` with ``home`` as its data directory."""
        env = os.environ.copy()
        env.pop("RUNFLEET_DIR" if lib == "trackio" else "TRACKIO_DIR", None)
        env["RUNFLEET_DIR" if lib == "runfleet" else "TRACKIO_DIR"] = str(home)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", worker,
               json.dumps({**params, "lib": lib, "home": str(home)})]
        with (logs / f"{label}.out").open("wb") as out, \
                (logs / f"{label}.err").open("wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    cwd=str(logs), env=env)
        _LIVE.append(proc)
        return proc

    @staticmethod
    def collect(proc: subprocess.Popen[bytes], logs: Path, label: str,
                timeout: float) -> dict[str, Any]:
        """Wait for a worker and return its result; kill it and raise on timeout or error."""
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BenchError(f"worker {label} timed out after {timeout:.0f} s "
                             f"(logs in {logs})") from None
        out = (logs / f"{label}.out").read_text(errors="replace")
        marked = [ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)]
        if code != 0 or not marked:
            tail = (logs / f"{label}.err").read_text(errors="replace")[-2000:]
            raise BenchError(f"worker {label} failed (exit {code}):\n{tail}")
        result: dict[str, Any] = json.loads(marked[-1][len(RESULT_MARK):])
        result["stderr"] = count_patterns([logs / f"{label}.err"])
        if "stored_rows" in result and result["stored_rows"] != result["steps"]:
            raise BenchError(f"worker {label} logged {result['steps']} rows but "
                             f"{result['stored_rows']} were stored (logs in {logs})")
        return result

    def run(self, worker: str, params: dict[str, Any], lib: str, home: Path, label: str,
            timeout: float) -> dict[str, Any]:
        """Spawn a worker and wait for its result."""
        logs = home.parent / f"{home.name}-logs"
        logs.mkdir(exist_ok=True)
        proc = self.spawn(worker, params, lib, home, logs, label)
        return self.collect(proc, logs, label, timeout)

    def say(self, text: str) -> None:
        """Progress output (with --verbose only)."""
        if self.verbose:
            print(f"    .. {text}", flush=True)


def disk_bytes(home: Path, lib: str, project: str = PROJECT) -> dict[str, int]:
    """Bytes on disk: runfleet counts every file in its home; trackio its project database
    (``.db`` plus ``-wal``/``-shm`` if present). ``home_total`` is every file in the home."""
    total = sum(f.stat().st_size for f in home.rglob("*") if f.is_file())
    if lib == "runfleet":
        return {"bytes": total, "home_total": total}
    db = home / f"{project}.db"
    parts = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    return {"bytes": sum(f.stat().st_size for f in parts if f.exists()), "home_total": total}


def trackio_rows(home: Path, project: str = PROJECT) -> dict[str, Any]:
    """Rows in trackio's ``metrics`` table, in total and per run name."""
    db = home / f"{project}.db"
    if not db.exists():
        return {"rows": 0, "per_run": {}}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        per_run = dict(conn.execute(
            "SELECT run_name, COUNT(*) FROM metrics GROUP BY run_name").fetchall())
    finally:
        conn.close()
    return {"rows": sum(per_run.values()), "per_run": per_run}


def count_patterns(paths: list[Path]) -> dict[str, int]:
    """Count lines matching each of :data:`WARNING_PATTERNS` over ``paths``."""
    counts = dict.fromkeys(WARNING_PATTERNS, 0)
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            for name, pattern in WARNING_PATTERNS.items():
                if pattern.search(line):
                    counts[name] += 1
    return counts


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _ratio(ours: float, peer: float) -> float:
    return ours / peer if peer > 0 else float("inf")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _s(seconds: float) -> str:
    return f"{seconds:.3f} s"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass
class Row:
    """One line of the summary table."""

    workload: str
    runfleet: str
    trackio: str
    ratio: str
    target: str
    verdict: str


# ------------------------------------------------------------------------------ workload (a)
def bench_a(lab: Lab, sizes: Sizes, repeats: int) -> tuple[dict[str, Any], list[Row]]:
    """(a) one run, init() -> finish() wall time, median of ``repeats`` alternating runs."""
    print(f"\n(a) 1 run x {sizes.steps_a:,} steps x {len(KEYS)} floats, init() -> finish() "
          f"wall (in-process perf_counter), {repeats} repeats alternating order")
    runs: dict[str, list[dict[str, Any]]] = {lib: [] for lib in LIBS}
    for i in range(repeats):
        order = LIBS if i % 2 == 0 else LIBS[::-1]
        for lib in order:
            home = lab.fresh_dir(f"a{i}-{lib}")
            res = lab.run("log", {"project": PROJECT, "name": "a", "steps": sizes.steps_a,
                                  "variant": "noisy", "seed": i}, lib, home, "log",
                          timeout=600)
            runs[lib].append(res)
            lab.say(f"repeat {i} {lib}: {_s(res['total_s'])}")
    med = {lib: _median([r["total_s"] for r in runs[lib]]) for lib in LIBS}
    ratio = _ratio(med["runfleet"], med["trackio"])
    ok = ratio <= TARGET_A_RATIO
    for lib in LIBS:
        totals = ", ".join(f"{r['total_s']:.3f}" for r in runs[lib])
        parts = {k: _median([r[k] for r in runs[lib]]) for k in ("init_s", "log_s", "finish_s")}
        print(f"    {lib:9s} median {_s(med[lib])}  (runs: {totals} s)  "
              f"median init {_ms(parts['init_s'])}, log loop {_ms(parts['log_s'])}, "
              f"finish {_ms(parts['finish_s'])}; "
              f"{sizes.steps_a / med[lib]:,.0f} steps/s")
        print(f"    {'':9s} defaults: {runs[lib][0]['defaults']}; all {sizes.steps_a:,} "
              f"rows read back after each run; warning lines on stderr: "
              f"{sum(r['stderr']['any_warning'] for r in runs[lib])}")
    print(f"    ratio runfleet/trackio = {ratio:.4f}x   target <= {TARGET_A_RATIO}x   "
          f"{_verdict(ok)}")
    result = {"steps": sizes.steps_a, "repeats": repeats, "runs": runs, "median_s": med,
              "ratio": ratio, "target_ratio": TARGET_A_RATIO, "pass": ok}
    row = Row(f"(a) 1 run x {sizes.steps_a:,} steps, init->finish (median)",
              _s(med["runfleet"]), _s(med["trackio"]), f"{ratio:.4f}x",
              f"<= {TARGET_A_RATIO}x", _verdict(ok))
    return result, [row]


# ------------------------------------------------------------------------------ workload (b)
def _concurrent(lab: Lab, lib: str, sizes: Sizes) -> dict[str, Any]:
    """Writers plus a reader for one library; returns timings, stored rows and warnings."""
    home = lab.fresh_dir(f"b-{lib}")
    ctl = home.parent / f"{home.name}-ctl"
    ctl.mkdir()
    reader_params = {"project": PROJECT, "interval": sizes.reader_interval_s,
                     "stop": str(ctl / "stop"), "ready": str(ctl / "reader.ready")}
    reader = lab.spawn("reader", reader_params, lib, home, ctl, "reader")
    writers: list[subprocess.Popen[bytes]] = []
    try:
        _wait_ready([ctl / "reader.ready"], [reader], timeout=120)
        t_spawn = time.perf_counter()
        for w in range(sizes.procs_b):
            params = {"project": PROJECT, "name": f"w{w}", "steps": sizes.steps_b,
                      "variant": "noisy", "seed": 100 + w, "ready": str(ctl / f"w{w}.ready"),
                      "go": str(ctl / "go"), "verify": False}
            writers.append(lab.spawn("log", params, lib, home, ctl, f"w{w}"))
        _wait_ready([ctl / f"w{w}.ready" for w in range(sizes.procs_b)], writers, timeout=300)
        t_go = time.perf_counter()
        (ctl / "go").touch()
        deadline = time.monotonic() + 1800
        results = [lab.collect(p, ctl, f"w{w}", max(1.0, deadline - time.monotonic()))
                   for w, p in enumerate(writers)]
        t_end = time.perf_counter()
        (ctl / "stop").touch()
        reader_result = lab.collect(reader, ctl, "reader", timeout=120)
    finally:
        (ctl / "stop").touch()
        for proc in [*writers, reader]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if lib == "runfleet":
        stored = lab.run("count", {"project": PROJECT}, lib, home, "count", timeout=600)
    else:
        stored = trackio_rows(home)
    expected = sizes.procs_b * sizes.steps_b
    warnings = count_patterns([ctl / f"w{w}.err" for w in range(sizes.procs_b)])
    return {
        "wall_spawn_to_exit_s": t_end - t_spawn, "wall_go_to_exit_s": t_end - t_go,
        "expected_rows": expected, "stored_rows": stored["rows"],
        "lost_rows": max(0, expected - stored["rows"]),
        "extra_rows": max(0, stored["rows"] - expected), "stored": stored,
        "writer_total_s": [r["total_s"] for r in results],
        "writer_finish_s": [r["finish_s"] for r in results],
        "writer_import_s": [r["import_s"] for r in results],
        "warnings": warnings, "reader": reader_result, "defaults": results[0]["defaults"],
    }


def _wait_ready(files: list[Path], procs: list[subprocess.Popen[bytes]],
                timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(f.exists() for f in files):
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise BenchError(f"a worker exited before it was ready: {dead[0]!r}")
        if time.monotonic() > deadline:
            raise BenchError(f"workers not ready after {timeout} s")
        time.sleep(0.01)


def bench_b(lab: Lab, sizes: Sizes) -> tuple[dict[str, Any], list[Row]]:
    """(b) concurrent writers plus a dashboard-like reader."""
    n = sizes.procs_b
    print(f"\n(b) {n} processes x {sizes.steps_b:,} steps x {len(KEYS)} floats (one run each, "
          f"one project, one home) + a reader polling every {sizes.reader_interval_s} s")
    print("    reader: runfleet Api(dir).runs(project) + run.downsample('loss', 1000) per run; "
          "trackio SQLiteStorage.get_run_records + get_logs_batch(max_points=3000), "
          "as its dashboard does")
    res = {}
    for lib in LIBS:
        lab.say(f"{lib}: starting {n} writers")
        res[lib] = _concurrent(lab, lib, sizes)
    for lib in LIBS:
        r = res[lib]
        rd = r["reader"]
        print(f"    {lib:9s} wall {_s(r['wall_spawn_to_exit_s'])} spawn->all exited "
              f"({_s(r['wall_go_to_exit_s'])} from the start signal); stored "
              f"{r['stored_rows']:,} of {r['expected_rows']:,} rows, lost {r['lost_rows']:,}"
              + (f", extra {r['extra_rows']:,}" if r["extra_rows"] else ""))
        print(f"    {'':9s} per writer init->finish median "
              f"{_s(_median(r['writer_total_s']))}, max {_s(max(r['writer_total_s']))}; "
              f"finish() max {_s(max(r['writer_finish_s']))}")
        print(f"    {'':9s} reader: {rd['polls']} polls, {rd['polls_with_data']} with data, "
              f"{rd['errors']} errors; latency of polls with data: "
              f"median {_ms(rd['latency_median_s'])}, p95 {_ms(rd['latency_p95_s'])}, "
              f"max {_ms(rd['latency_max_s'])}"
              + (f"; first error: {rd['error_samples'][0]}" if rd["error_samples"] else ""))
        w = r["warnings"]
        print(f"    {'':9s} writer stderr: {w['db_lock']} 'Could not acquire database lock', "
              f"{w['trackio_flush_failed']} 'trackio failed to flush', "
              f"{w['trackio_flush_timeout']} 'Could not flush all logs', "
              f"{w['runfleet_write_warning']} RunfleetWriteWarning, "
              f"{w['any_warning']} warning lines, {w['traceback']} tracebacks")
    rf, tr = res["runfleet"], res["trackio"]
    ratio = _ratio(rf["wall_spawn_to_exit_s"], tr["wall_spawn_to_exit_s"])
    ok_lost = rf["lost_rows"] == 0 and rf["extra_rows"] == 0
    ok_wall = ratio <= TARGET_B_RATIO
    print(f"    lost rows: runfleet {rf['lost_rows']:,}, trackio {tr['lost_rows']:,}   "
          f"target runfleet 0   {_verdict(ok_lost)}")
    print(f"    wall ratio runfleet/trackio = {ratio:.4f}x   target <= {TARGET_B_RATIO}x   "
          f"{_verdict(ok_wall)}")
    result = {"procs": n, "steps": sizes.steps_b, **res, "wall_ratio": ratio,
              "pass_lost": ok_lost, "pass_wall": ok_wall}
    label = f"(b) {n} x {sizes.steps_b:,} steps + reader"
    rows = [
        Row(f"{label}: rows lost", f"{rf['lost_rows']:,}", f"{tr['lost_rows']:,}", "-",
            "runfleet 0", _verdict(ok_lost)),
        Row(f"{label}: wall", _s(rf["wall_spawn_to_exit_s"]), _s(tr["wall_spawn_to_exit_s"]),
            f"{ratio:.4f}x", f"<= {TARGET_B_RATIO}x", _verdict(ok_wall)),
    ]
    return result, rows


# ------------------------------------------------------------------------------ workload (c)
def bench_c(lab: Lab, sizes: Sizes) -> tuple[dict[str, Any], list[Row]]:
    """(c) bytes on disk per logged step after the writing process exited."""
    steps = sizes.steps_c
    print(f"\n(c) bytes on disk per logged step, 1 run x {steps:,} steps x {len(KEYS)} floats "
          f"(runfleet: all files in its home; trackio: project .db + -wal/-shm)")
    res: dict[str, Any] = {}
    rows = []
    for variant in ("noisy", "smooth", "noisy-f32"):
        per: dict[str, Any] = {}
        for lib in LIBS:
            home = lab.fresh_dir(f"c-{variant}-{lib}")
            lab.run("log", {"project": PROJECT, "name": "c", "steps": steps,
                            "variant": variant, "seed": 7}, lib, home, "log", timeout=600)
            size = disk_bytes(home, lib)
            per[lib] = {**size, "bytes_per_step": size["bytes"] / steps}
        ratio = _ratio(per["runfleet"]["bytes_per_step"], per["trackio"]["bytes_per_step"])
        gated = variant in ("noisy", "smooth")
        ok = per["runfleet"]["bytes_per_step"] <= TARGET_C_BYTES
        res[variant] = {**per, "ratio": ratio, "pass": ok if gated else None}
        print(f"    {variant:9s} runfleet {per['runfleet']['bytes_per_step']:7.1f} B/step "
              f"({per['runfleet']['bytes']:,} B)   trackio "
              f"{per['trackio']['bytes_per_step']:7.1f} B/step ({per['trackio']['bytes']:,} B)"
              f"   ratio {ratio:.4f}x   target runfleet <= {TARGET_C_BYTES:.0f} B   "
              + (_verdict(ok) if gated else "(informational)"))
        rows.append(Row(f"(c) bytes per step, {variant} values",
                        f"{per['runfleet']['bytes_per_step']:.1f} B",
                        f"{per['trackio']['bytes_per_step']:.1f} B", f"{ratio:.4f}x",
                        f"<= {TARGET_C_BYTES:.0f} B" if gated else "info",
                        _verdict(ok) if gated else "-"))
    return {"steps": steps, **res}, rows


# ------------------------------------------------------------------------------ workload (d)
def bench_d(lab: Lab, sizes: Sizes, repeats: int) -> tuple[dict[str, Any], list[Row]]:
    """(d) read back one run: cold (fresh process) and warm (subsequent calls)."""
    steps = sizes.steps_d
    warm_calls = 5
    print(f"\n(d) read back all of one {steps:,}-step run ({len(KEYS)} keys): runfleet "
          f"Api(dir).runs(p)[0].history() vs trackio SQLiteStorage.get_logs(p, "
          f"get_runs(p)[0]); cold = first call in a fresh process (imports excluded, page "
          f"cache warm), warm = median of {warm_calls} further calls; {repeats} processes each")
    homes = {}
    for lib in LIBS:
        homes[lib] = lab.fresh_dir(f"d-{lib}")
        lab.run("log", {"project": PROJECT, "name": "d", "steps": steps, "variant": "noisy",
                        "seed": 11}, lib, homes[lib], "log", timeout=600)
    reads: dict[str, list[dict[str, Any]]] = {lib: [] for lib in LIBS}
    for i in range(repeats):
        for lib in (LIBS if i % 2 == 0 else LIBS[::-1]):
            res = lab.run("read", {"project": PROJECT, "warm_calls": warm_calls}, lib,
                          homes[lib], f"read{i}", timeout=600)
            if res["rows"] != steps:
                raise BenchError(f"{lib} read back {res['rows']} rows, expected {steps}")
            reads[lib].append(res)
    cold = {lib: _median([r["cold_s"] for r in reads[lib]]) for lib in LIBS}
    warm = {lib: _median([r["warm_median_s"] for r in reads[lib]]) for lib in LIBS}
    r_cold = _ratio(cold["runfleet"], cold["trackio"])
    r_warm = _ratio(warm["runfleet"], warm["trackio"])
    ok_cold, ok_warm = r_cold <= TARGET_D_RATIO, r_warm <= TARGET_D_RATIO
    for lib in LIBS:
        colds = ", ".join(f"{r['cold_s'] * 1000:.1f}" for r in reads[lib])
        print(f"    {lib:9s} cold {_ms(cold[lib])} (runs: {colds} ms)   warm {_ms(warm[lib])}")
    print(f"    ratio cold {r_cold:.4f}x  {_verdict(ok_cold)};  ratio warm {r_warm:.4f}x  "
          f"{_verdict(ok_warm)}   target <= {TARGET_D_RATIO}x   (DESIGN.md absolute target "
          f"<= {_ms(TARGET_D_ABS_S)}: runfleet cold {_ms(cold['runfleet'])}, warm "
          f"{_ms(warm['runfleet'])})")
    result = {"steps": steps, "reads": reads, "cold_s": cold, "warm_s": warm,
              "ratio_cold": r_cold, "ratio_warm": r_warm, "pass_cold": ok_cold,
              "pass_warm": ok_warm}
    rows = [
        Row(f"(d) read one {steps:,}-step run, cold", _ms(cold["runfleet"]),
            _ms(cold["trackio"]), f"{r_cold:.4f}x", f"<= {TARGET_D_RATIO}x",
            _verdict(ok_cold)),
        Row(f"(d) read one {steps:,}-step run, warm", _ms(warm["runfleet"]),
            _ms(warm["trackio"]), f"{r_warm:.4f}x", f"<= {TARGET_D_RATIO}x",
            _verdict(ok_warm)),
    ]
    return result, rows


# ------------------------------------------------------------------------------ reporting
def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def runfleet_source() -> str | None:
    """``<commit>[+dirty]`` of the git checkout runfleet is imported from, if any."""
    spec = importlib.util.find_spec("runfleet")
    if spec is None or spec.origin is None:
        return None
    src = Path(spec.origin).parent
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine_info() -> dict[str, Any]:
    """CPU count, memory, Python and library versions, date."""
    mem_gib = None
    cpu_model = None
    with contextlib.suppress(OSError):
        meminfo = Path("/proc/meminfo").read_text()
        kib = re.search(r"MemTotal:\s+(\d+)", meminfo)
        mem_gib = round(int(kib.group(1)) / 2**20, 1) if kib else None
    with contextlib.suppress(OSError):
        model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu_model = model.group(1).strip() if model else None
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus_usable": len(affinity(0)) if affinity else os.cpu_count(),
        "cpu_count": os.cpu_count(), "cpu_model": cpu_model, "ram_gib": mem_gib,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "python_executable": sys.executable, "sqlite": sqlite3.sqlite_version,
        "runfleet": _version("runfleet"), "runfleet_git": runfleet_source(),
        "trackio": _version("trackio"),
        "numpy": _version("numpy"), "pandas": _version("pandas"),
    }


def print_table(rows: list[Row]) -> None:
    """The summary as a Markdown table (pasteable into docs/benchmarks.md)."""
    head = Row("workload", "runfleet", "trackio", "ratio", "target", "result")
    cells = [list(asdict(r).values()) for r in [head, *rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head.__dict__))]
    for n, line in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


@contextlib.contextmanager
def lab_root(keep: bool, base: str | None) -> Iterator[Path]:
    """A temporary root for all homes and logs, removed afterwards unless ``keep``."""
    root = Path(tempfile.mkdtemp(prefix="bench-logging-", dir=base))
    try:
        yield root
    finally:
        kill_all()
        if keep:
            print(f"\nkept data and worker logs in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes for a smoke run (2,000 steps; 2 x 5,000 for (b))")
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help="comma-separated workloads to run, of a,b,c,d (default: all)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="repeats of (a) and fresh reader processes of (d) "
                         "(default 5, 3 with --quick)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the data and worker logs")
    ap.add_argument("--tmp", metavar="DIR", default=None,
                    help="where to create the temporary homes (default: system temp)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print progress")
    args = ap.parse_args(argv)
    only = [w.strip().lower() for w in args.only.split(",") if w.strip()]
    bad = [w for w in only if w not in WORKLOADS]
    if bad or not only:
        ap.error(f"--only takes a comma-separated subset of {','.join(WORKLOADS)}; got "
                 f"{args.only!r}")
    args.only = only
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    return args


def main(argv: list[str]) -> int:
    """Run the selected workloads and print figures, ratios and PASS/FAIL."""
    if len(argv) >= 1 and argv[0] == "--worker":
        if len(argv) != 3 or argv[1] not in WORKERS:
            print(f"usage: --worker {{{','.join(WORKERS)}}} PARAMS_JSON", file=sys.stderr)
            return 2
        return run_worker_main(argv[1], argv[2])
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    atexit.register(kill_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    info = machine_info()
    print("runfleet vs trackio logging benchmark (bench_logging.py)"
          + (" [--quick]" if args.quick else ""))
    print(f"  date {info['date']}; {info['cpus_usable']} usable CPUs ({info['cpu_model']}), "
          f"{info['ram_gib']} GiB RAM, load average {info['loadavg']}")
    print(f"  {info['platform']}; Python {info['python']} ({info['python_executable']}); "
          f"SQLite {info['sqlite']}")
    print(f"  runfleet {info['runfleet']} (git {info['runfleet_git']}), trackio "
          f"{info['trackio']}, numpy {info['numpy']}, pandas {info['pandas']}")
    print("  both libraries run with their defaults: runfleet samples system metrics every "
          "15 s (first after 1 s) and flushes every 0.5 s; trackio logs CPU/system metrics "
          "every 10 s when psutil is importable and flushes every 0.5 s. Each measurement "
          "runs in a fresh subprocess with its own home.")

    results: dict[str, Any] = {"machine": info, "sizes": asdict(sizes), "quick": args.quick,
                               "repeats": args.repeats, "command": " ".join(sys.argv)}
    rows: list[Row] = []
    status = 0
    with lab_root(args.keep, args.tmp) as root:
        lab = Lab(root, args.verbose)
        steps: list[tuple[str, Callable[[], tuple[dict[str, Any], list[Row]]]]] = [
            ("a", lambda: bench_a(lab, sizes, args.repeats)),
            ("b", lambda: bench_b(lab, sizes)),
            ("c", lambda: bench_c(lab, sizes)),
            ("d", lambda: bench_d(lab, sizes, args.repeats)),
        ]
        for name, fn in steps:
            if name not in args.only:
                continue
            t0 = time.perf_counter()
            try:
                results[name], new_rows = fn()
                rows.extend(new_rows)
            except BenchError as exc:
                kill_all()
                print(f"    ERROR in workload ({name}): {exc}")
                results[name] = {"error": str(exc)}
                status = 1
            print(f"    [({name}) took {time.perf_counter() - t0:.0f} s]")

    print("\nSummary (ratio = runfleet / trackio, measured side by side in this invocation)")
    if args.quick:
        print("NOTE: --quick uses smoke-test sizes; the targets are defined for the full sizes, "
              "where fixed costs (init, finish, process start) matter far less.")
    print_table(rows)
    failed = [r.workload for r in rows if r.verdict == "FAIL"]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} checks passed"
          + (f"; FAILED: {'; '.join(failed)}" if failed else ""))
    results["summary"] = [asdict(r) for r in rows]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
        print(f"results written to {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
