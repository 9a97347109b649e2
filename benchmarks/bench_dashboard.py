#!/usr/bin/env python
"""Dashboard benchmark: chart data and page load, runfleet and trackio in one invocation.

Workloads (the dashboard yardstick of DESIGN.md section 6):

* Generate one home with 100 runs x 100,000 steps x 3 keys (``loss``, ``acc``, ``lr``),
  written through ``SQLiteStore.write`` directly (seconds, not the minutes of logging), and a
  trackio project with the same values (``SQLiteStorage.bulk_log`` for each run's first row,
  so trackio creates its tables and run records, then the other rows inserted in its own
  layout: one row per step, metrics as JSON).
* (a) **chart data**: the time for ``runfleet show`` to answer one chart's data, i.e.
  ``GET /api/series`` for one key and the 100 runs at 1,000 buckets (min, max, mean and
  count per bucket: the page's request, ``encoding=base64``). *Cold*: the first such
  request to a freshly started server process (after the run list it loads first), median
  over ``--repeats`` servers; *warm*: median of 5 more requests to the same server. The JSON
  encoding is timed too, for API users.
* (b) **trackio's own query for the same data**: ``SQLiteStorage.get_logs_batch(project,
  runs, max_points=3000, scalar_only=True)``, the call trackio's dashboard makes for its
  metric charts (its default of 3,000 sampled rows per run; it cannot select one key, so it
  returns all three), in a fresh process: cold (first call) and warm (median of 3 more).
  Ratios: runfleet / trackio, for one chart and for all three charts.
* (c) **page load to first chart drawn** in headless Chromium (Debian's, driven by
  Playwright): ``performance.now()`` when the first chart has been drawn, measured by the
  page itself from navigation start. Cold: the first load after the server started; warm:
  median of 3 reloads.

Every figure comes from fresh subprocesses of this file (``--worker``), so imports and page
caches of one measurement never help another. The OS file cache is warm for both libraries
(both files were just written); "cold" means a fresh process.

Usage::

    python benchmarks/bench_dashboard.py                      # full sizes (a few minutes)
    python benchmarks/bench_dashboard.py --quick              # smoke run, small sizes
    python benchmarks/bench_dashboard.py --runs 100 --steps 100000 --json out.json --keep
"""

from __future__ import annotations

import argparse
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
from pathlib import Path
from typing import Any

KEYS = ("loss", "acc", "lr")
PROJECT = "bench"
BUCKETS = 1000
RESULT_MARK = "BENCH_RESULT "
TARGET_CHART_COLD_S = 0.300
TARGET_PAGE_S = 1.5
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


# -- data ---------------------------------------------------------------------------------------
def _values(run: int, steps: int) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(run)
    s = np.arange(steps, dtype=np.float64)
    return {
        "loss": np.exp(-s / (steps / 3)) * (1 + run / 100) + rng.normal(0, 0.01, steps),
        "acc": 1 - np.exp(-s / (steps / 4)) + rng.normal(0, 0.005, steps),
        "lr": 1e-3 * 0.5 * (1 + np.cos(np.pi * s / steps)),
    }


def generate_runfleet(home: Path, runs: int, steps: int) -> float:
    """Write the runs straight through the store; return seconds taken."""
    import numpy as np

    from runfleet.store import codec
    from runfleet.store.base import SeriesChunk, WriteBatch
    from runfleet.store.sqlite import SQLiteStore

    started = time.perf_counter()
    store = SQLiteStore.open(home / "runfleet.db")
    step_arr = np.arange(steps, dtype=np.int64)
    for r in range(runs):
        rec = store.create_run(PROJECT, f"run{r:03d}", f"run-{r}", status="completed",
                               config={"lr": [1e-3, 3e-4, 1e-4, 3e-5][r % 4], "seed": r})
        times = (1.79e9 + r * 3600 + step_arr * 0.01).astype(np.float64)
        store.write(WriteBatch(series=[
            SeriesChunk(rec.rid, key, codec.FLOAT, step_arr, times, vals)
            for key, vals in _values(r, steps).items()]))
    store.close()
    return time.perf_counter() - started


def generate_trackio(trackio_dir: Path, runs: int, steps: int) -> float:
    """Write the same values into a trackio project; return seconds taken."""
    os.environ["TRACKIO_DIR"] = str(trackio_dir)
    import numpy as np
    import orjson
    from trackio.sqlite_storage import SQLiteStorage

    started = time.perf_counter()
    db = None
    for r in range(runs):
        name = f"run-{r}"
        vals = _values(r, steps)
        base = np.datetime64(int((1.79e9 + r * 3600) * 1e6), "us")
        stamps = base + (np.arange(steps) * 10_000).astype("timedelta64[us]")
        iso = [s + "+00:00" for s in np.datetime_as_string(stamps, unit="us").tolist()]
        columns = [vals[k].tolist() for k in KEYS]
        SQLiteStorage.bulk_log(PROJECT, run=name, metrics_list=[
            {k: columns[i][0] for i, k in enumerate(KEYS)}], steps=[0], timestamps=[iso[0]],
            run_id=name, config={"lr": [1e-3, 3e-4, 1e-4, 3e-5][r % 4], "seed": r})
        db = db or SQLiteStorage.get_project_db_path(PROJECT)
        rows = [(iso[i], name, name, i, orjson.dumps(dict(zip(KEYS, (c[i] for c in columns)))),
                 None, None) for i in range(1, steps)]
        conn = sqlite3.connect(db)
        with conn:
            conn.executemany("INSERT INTO metrics (timestamp, run_id, run_name, step, metrics,"
                             " log_id, space_id) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.close()
    return time.perf_counter() - started


# -- workers (each in a fresh process) ------------------------------------------------------------
def worker_trackio(trackio_dir: str, repeats: int) -> dict[str, Any]:
    os.environ["TRACKIO_DIR"] = trackio_dir
    from trackio.sqlite_storage import SQLiteStorage

    names = SQLiteStorage.get_runs(PROJECT)
    runs = [{"run": n, "run_id": n} for n in names]
    times = []
    points = 0
    for _ in range(1 + repeats):
        t0 = time.perf_counter()
        batch = SQLiteStorage.get_logs_batch(PROJECT, runs, max_points=3000, scalar_only=True)
        times.append(time.perf_counter() - t0)
        points = sum(len(b["logs"]) for b in batch)
    return {"cold": times[0], "warm": statistics.median(times[1:]), "runs": len(runs),
            "rows": points}


def worker_page(url: str, reloads: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        loads = []
        for _ in range(1 + reloads):
            page.goto(f"{url}/?project={PROJECT}")
            page.wait_for_selector(".chart[data-drawn='1']", timeout=60_000)
            loads.append(float(page.evaluate("document.documentElement.dataset.firstChart"))
                         / 1000)
        series = page.evaluate("() => [...document.querySelectorAll('.chart')]"
                               ".map(c => c.dataset.runs)")
        browser.close()
    return {"cold": loads[0], "warm": statistics.median(loads[1:]), "charts_runs": series}


def _emit(result: dict[str, Any]) -> None:
    print(RESULT_MARK + json.dumps(result), flush=True)


def _run_worker(args: list[str], timeout: float = 900) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True,
                          text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return dict(json.loads(line[len(RESULT_MARK):]))
    raise RuntimeError(f"worker {args[0]} failed:\n{proc.stdout}\n{proc.stderr}")


# -- the runfleet server --------------------------------------------------------------------------
class Server:
    """``python -m runfleet show`` in a fresh process, on a free port."""

    def __init__(self, home: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runfleet", "show", "--dir", str(home), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        self.url = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            found = re.search(r"(http://[^/\s]+)", line)
            if found:
                self.url = found.group(1)
            if "Ctrl+C" in line or not line:
                break
        if not self.url:
            self.stop()
            raise RuntimeError("runfleet show did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure_charts(home: Path, repeats: int) -> dict[str, Any]:
    import httpx

    cold, warm, cold_json, warm_json, cold_all = [], [], [], [], []
    sizes: dict[str, int] = {}
    modes: set[str] = set()
    for _ in range(repeats):
        server = Server(home)
        try:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                runs = c.get("/api/runs", params={"project": PROJECT}).json()["runs"]
                ids = ",".join(r["id"] for r in runs)

                def chart(key: str, encoding: str, client: httpx.Client = c,
                          ids: str = ids, expected: int = len(runs)) -> float:
                    t0 = time.perf_counter()
                    res = client.get("/api/series", params={
                        "project": PROJECT, "key": key, "runs": ids, "buckets": BUCKETS,
                        "encoding": encoding})
                    elapsed = time.perf_counter() - t0
                    res.raise_for_status()
                    body = res.json()
                    sizes[encoding] = len(res.content)
                    modes.update(s["mode"] for s in body["series"])
                    assert len(body["series"]) == expected
                    return elapsed

                cold.append(chart("loss", "base64"))
                warm.append(statistics.median(chart("loss", "base64") for _ in range(5)))
                cold_all.append(cold[-1] + chart("acc", "base64") + chart("lr", "base64"))
                cold_json.append(chart("lr", "json"))  # lr not yet asked in JSON: first time
                warm_json.append(statistics.median(chart("loss", "json") for _ in range(3)))
        finally:
            server.stop()
    return {"cold": statistics.median(cold), "warm": statistics.median(warm),
            "cold_each": cold, "three_charts_cold": statistics.median(cold_all),
            "json_cold": statistics.median(cold_json), "json_warm": statistics.median(warm_json),
            "bytes": sizes, "modes": sorted(modes)}


def measure_page(home: Path, reloads: int) -> dict[str, Any]:
    server = Server(home)
    try:
        return _run_worker(["page", server.url, str(reloads)])
    finally:
        server.stop()


# -- report -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    import numpy

    try:
        from importlib.metadata import version
        trackio_version = version("trackio")
    except Exception:  # only for the report
        trackio_version = "?"
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory": mem,
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "numpy": numpy.__version__, "trackio": trackio_version,
            "platform": platform.platform()}


def _ms(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 10 else f"{s:.1f} s"


def report(res: dict[str, Any]) -> None:
    a, b, c = res["charts"], res["trackio"], res["page"]
    print(f"\nmachine: {res['machine']['cpus']} CPUs, {res['machine']['cpu']}, "
          f"{res['machine']['memory']}; Python {res['machine']['python']}, SQLite "
          f"{res['machine']['sqlite']}; trackio {res['machine']['trackio']}")
    print(f"data: {res['runs']} runs x {res['steps']:,} steps x {len(KEYS)} keys; generated "
          f"in {res['gen_runfleet_s']:.1f} s (runfleet, {res['db_mb_runfleet']:.0f} MB) and "
          f"{res['gen_trackio_s']:.1f} s (trackio, {res['db_mb_trackio']:.0f} MB)\n")
    rows = [
        (f"(a) one chart ({res['runs']} series x {BUCKETS:,} buckets), cold", a["cold"],
         TARGET_CHART_COLD_S),
        ("(a) one chart, warm (median of 5)", a["warm"], None),
        ("(a) one chart as JSON numbers, cold / warm", a["json_cold"], None),
        ("(a) three charts (all keys), cold", a["three_charts_cold"], None),
        ("(b) trackio get_logs_batch (dashboard call), cold", b["cold"], None),
        ("(b) trackio get_logs_batch, warm (median of 3)", b["warm"], None),
        ("(c) page load to first chart drawn, cold", c["cold"], TARGET_PAGE_S),
        ("(c) page load to first chart drawn, warm (median of 3)", c["warm"], TARGET_PAGE_S),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value, target in rows:
        verdict = "" if target is None else ("PASS" if value <= target else "FAIL")
        extra = f"  target <= {_ms(target)}  {verdict}" if target else ""
        if "JSON" in label:
            print(f"{label:<{width}}  {_ms(value)} / {_ms(a['json_warm'])}")
        else:
            print(f"{label:<{width}}  {_ms(value)}{extra}")
    print("\nratios (runfleet / trackio):")
    print(f"  one chart cold / trackio cold        {a['cold'] / b['cold']:.4f}x  "
          f"({b['cold'] / a['cold']:.0f} times faster)")
    print(f"  one chart warm / trackio warm        {a['warm'] / b['warm']:.4f}x  "
          f"({b['warm'] / a['warm']:.0f} times faster)")
    print(f"  three charts cold / trackio cold     {a['three_charts_cold'] / b['cold']:.4f}x")
    print(f"\nrunfleet answered in modes {a['modes']}, {a['bytes'].get('base64', 0) / 1e6:.1f} MB "
          f"(base64) / {a['bytes'].get('json', 0) / 1e6:.1f} MB (JSON); trackio returned "
          f"{b['rows']:,} rows for {b['runs']} runs; charts drawn with runs: {c['charts_runs']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="fresh servers for (a)")
    parser.add_argument("--quick", action="store_true", help="10 runs x 10,000 steps")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the generated homes")
    parser.add_argument("--tmp", metavar="DIR", help="where to generate (default: system tmp)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        if kind == "trackio":
            _emit(worker_trackio(rest[0], int(rest[1])))
        elif kind == "page":
            _emit(worker_page(rest[0], int(rest[1])))
        return 0
    if args.quick:
        args.runs, args.steps, args.repeats = 10, 10_000, 1
    root = Path(tempfile.mkdtemp(prefix="rf-bench-dash-", dir=args.tmp))
    try:
        home, tdir = root / "runfleet-home", root / "trackio"
        home.mkdir()
        tdir.mkdir()
        print(f"generating {args.runs} runs x {args.steps:,} steps x {len(KEYS)} keys in "
              f"{root} ...", flush=True)
        res: dict[str, Any] = {"runs": args.runs, "steps": args.steps, "machine": machine(),
                               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        res["gen_runfleet_s"] = generate_runfleet(home, args.runs, args.steps)
        res["gen_trackio_s"] = _run_worker_gen(tdir, args.runs, args.steps)
        res["db_mb_runfleet"] = sum(f.stat().st_size for f in home.iterdir()) / 1e6
        res["db_mb_trackio"] = sum(f.stat().st_size for f in tdir.iterdir()
                                   if f.is_file()) / 1e6
        print("measuring (a) chart data ...", flush=True)
        res["charts"] = measure_charts(home, args.repeats)
        print("measuring (b) trackio ...", flush=True)
        res["trackio"] = _run_worker(["trackio", str(tdir), "3"])
        print("measuring (c) page load ...", flush=True)
        res["page"] = measure_page(home, 3)
        report(res)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _run_worker_gen(tdir: Path, runs: int, steps: int) -> float:
    """trackio's generation runs in its own process (its storage reads TRACKIO_DIR once)."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import bench_dashboard as b; print(b.RESULT_MARK + "
            f"str(b.generate_trackio(b.Path({str(tdir)!r}), {runs}, {steps})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return float(line[len(RESULT_MARK):])
    raise RuntimeError(f"trackio generation failed:\n{proc.stdout}\n{proc.stderr}")


if __name__ == "__main__":
    raise SystemExit(main())
