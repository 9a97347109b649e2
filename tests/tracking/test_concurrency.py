"""Many processes write one home at once while a reader polls it: every row lands."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import runfleet
from tests.conftest import subprocess_env

WRITER = textwrap.dedent("""
    import sys, runfleet
    home, index, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    run = runfleet.init(project="conc", name=f"w{index}", dir=home, config={"i": index})
    for step in range(steps):
        runfleet.log({"a": step * 0.5, "b": float(index), "c": step, "d": -1.0, "e": 1e-9})
    runfleet.finish()
""")

READER = textwrap.dedent("""
    import sys, time, runfleet
    home, stop_file = sys.argv[1], sys.argv[2]
    import os
    while not os.path.exists(stop_file):
        try:
            api = runfleet.Api(home)
            for r in api.runs("conc"):
                r.downsample("a", buckets=100)
            api.close()
        except ValueError:  # the project may not exist yet
            pass
        time.sleep(0.25)
""")


def test_32_processes_x_5000_steps_lose_nothing(home: Path, tmp_path: Path) -> None:
    procs, steps = 32, 5000
    stop = tmp_path / "stop"
    env = subprocess_env()
    reader = subprocess.Popen([sys.executable, "-c", READER, str(home), str(stop)], env=env)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(home), str(i), str(steps)],
                                env=env, stderr=subprocess.PIPE, text=True)
               for i in range(procs)]
    errors = []
    for w in writers:
        _, err = w.communicate(timeout=300)
        if w.returncode != 0 or "locked" in err or "Warning" in err:
            errors.append(err)
    stop.touch()
    reader.wait(timeout=30)
    assert not errors, errors[:2]
    assert reader.returncode == 0
    runs = runfleet.Api(home).runs("conc")
    assert len(runs) == procs
    for r in runs:
        h = r.history()
        assert len(h) == steps, (r.name, len(h))
        assert h["_step"].tolist() == list(range(steps))
        assert h["c"].tolist() == list(range(steps))
        assert (h["b"] == float(r.config["i"])).all()
        assert r.status == "completed"


KILLED = textwrap.dedent("""
    import sys, time, runfleet
    run = runfleet.init(project="kill", dir=sys.argv[1], id="victim")
    for step in range(1000):
        runfleet.log({"x": float(step)})
    run.flush()  # the first 1000 steps are durable now
    print("flushed", flush=True)
    step = 1000
    while True:
        runfleet.log({"x": float(step)})
        step += 1
        time.sleep(0.001)
""")


def test_kill_9_loses_at_most_the_last_flush_interval(home: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(home)], env=subprocess_env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "flushed"
    time.sleep(1.5)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    r = runfleet.Api(home).run("kill", "victim")
    steps = r.history()["_step"].to_numpy()
    assert steps[:1000].tolist() == list(range(1000))
    assert steps.tolist() == list(range(len(steps)))  # no gaps, no duplicates
    times = r.series("x").times
    # Points are written every 0.5 s: what is missing was logged in the last interval.
    assert killed_at - times[-1] < 1.0
    assert r.status == "running"  # heartbeat is recent; reported "crashed" once it is stale
    # Once the heartbeat is stale and the process is gone, readers see the run as crashed.
    conn = sqlite3.connect(home / "runfleet.db")
    conn.execute("UPDATE runs SET heartbeat = heartbeat - 3600, updated = updated - 3600")
    conn.commit()
    conn.close()
    assert runfleet.Api(home).run("kill", "victim").status == "crashed"
