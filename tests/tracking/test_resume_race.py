"""init(id=X, resume="allow") from many processes at once: one creates the run, the others
resume it, none fails."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import runfleet
from tests.conftest import subprocess_env

N = 8

CHILD = textwrap.dedent("""
    import pathlib, sys, time
    import runfleet
    from runfleet.home import Home
    from runfleet.tracking import homes

    home, signals, i = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
    homes.get(Home.resolve(home))  # open the home first: the race is init() itself
    (signals / f"ready-{i}").touch()
    while not (signals / "go").exists():  # released together by the parent
        time.sleep(0.001)
    runfleet.init(project="race", id="shared", resume="allow", dir=home)
    runfleet.log({f"k{i}": float(i)})
    runfleet.finish()
    print("done", i)
""")


def test_processes_starting_the_same_id_at_once_share_one_run(home: Path,
                                                              tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    runfleet.init(project="warmup", dir=home).finish()  # the database exists before the race
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(home), str(signals), str(i)],
                              env=subprocess_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(N)]
    try:
        ready = [signals / f"ready-{i}" for i in range(N)]
        while not all(r.exists() for r in ready):  # every child waits at the barrier
            dead = [p for p in procs if p.poll() is not None]
            assert not dead, dead[0].communicate()
            time.sleep(0.01)
        (signals / "go").touch()
        outcomes = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, (p, (out, err)) in enumerate(zip(procs, outcomes, strict=True)):
        assert p.returncode == 0, f"process {i} failed:\n{err}"
        assert f"done {i}" in out
    with runfleet.Api(home) as api:
        runs = api.runs("race")
        assert [r.id for r in runs] == ["shared"]
        history = runs[0].history()
        assert {f"k{i}" for i in range(N)} <= set(history.columns)
        for i in range(N):
            assert history[f"k{i}"].dropna().tolist() == [float(i)]
