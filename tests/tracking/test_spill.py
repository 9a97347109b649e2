"""A full disk never raises in log(): points spill to a file and are replayed later."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import runfleet
from runfleet.home import Home
from runfleet.store import codec
from runfleet.store.base import SeriesChunk, Store, WriteBatch
from runfleet.tracking import spill
from tests.conftest import subprocess_env

FILL = textwrap.dedent("""
    import sys, random, runfleet
    random.seed(1)
    run = runfleet.init(project="full", dir=sys.argv[1], id="r1")
    for step in range(30000):
        runfleet.log({"a": random.random(), "b": random.random()})
    runfleet.alert(title="done", text="logged everything")
    runfleet.finish()
    print("finished without raising")
""")


def test_full_database_spills_and_replays_on_next_open(home: Path) -> None:
    # 40 pages of 4 KiB: the schema fits, 60,000 random floats do not.
    env = subprocess_env(RUNFLEET_MAX_DB_PAGES="40")
    proc = subprocess.run([sys.executable, "-c", FILL, str(home)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "finished without raising" in proc.stdout
    assert "database or disk is full" in proc.stderr and "spill-" in proc.stderr
    files = spill.pending(Home.resolve(home))
    assert files, "expected spill files"
    assert str(files[0]) in proc.stderr  # the warning says where the points are

    # The next open of the home (here: a new run in this process) replays everything.
    runfleet.init(project="other", dir=home).finish()
    assert spill.pending(Home.resolve(home)) == []
    r = runfleet.Api(home).run("full", "r1")
    h = r.history()
    assert h["_step"].tolist() == list(range(30000))
    import random

    random.seed(1)
    expected = [(random.random(), random.random()) for _ in range(30000)]
    assert list(zip(h["a"], h["b"], strict=True)) == expected
    assert r.status == "completed"
    assert r.alerts()[0]["title"] == "done"


def test_a_file_replayed_again_after_a_crash_adds_nothing(home: Path) -> None:
    run = runfleet.init(project="p", dir=home, id="x")
    runfleet.log({"v": 1.0})
    runfleet.finish()
    h = Home.resolve(home)
    assert isinstance(run, runfleet.Run)
    opened = runfleet.tracking.homes.get(h)
    path = spill.write(h, _one_point_batch(opened.store, run), opened.store.db_id)
    saved = path.read_bytes()
    assert spill.replay(h, opened.store) == 1
    assert not path.exists()
    # A crash between commit and delete leaves the file behind: replaying it again is a no-op.
    path.write_bytes(saved)
    assert spill.replay(h, opened.store) == 0
    assert not path.exists()
    assert runfleet.Api(home).run("p", "x").history()["v"].tolist() == [1.0, 2.0]


def _one_point_batch(store: Store, run: runfleet.Run) -> WriteBatch:
    record = store.find_run(run.project, id=run.id)
    assert record is not None
    return WriteBatch(series=[SeriesChunk(record.rid, "v", codec.FLOAT, np.array([1]),
                                          np.array([1.7e9]), np.array([2.0]))])


def test_unexpected_write_error_spills_and_never_hangs_finish(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = runfleet.init(project="p", dir=home, id="bug")
    assert isinstance(run, runfleet.Run)
    store = runfleet.tracking.homes.get(Home.resolve(home)).store

    def broken(batch: WriteBatch) -> None:
        raise TypeError("simulated bug in the write path")

    monkeypatch.setattr(store, "write", broken)
    for i in range(100):
        runfleet.log({"v": float(i)})
    with pytest.warns(RuntimeWarning, match="simulated bug"):
        assert run.flush(timeout=30)
    assert spill.pending(Home.resolve(home))
    monkeypatch.undo()
    runfleet.finish()  # the next successful write replays the spilled points
    assert spill.pending(Home.resolve(home)) == []
    assert runfleet.Api(home).run("p", "bug").history()["v"].tolist() == [float(i)
                                                                          for i in range(100)]


class _FlakyWrites:
    """Makes the real store's write fail while ``failing`` is set (a full disk, say)."""

    def __init__(self, store: object) -> None:
        self.real = store.write  # type: ignore[attr-defined]
        self.failing = False

    def __call__(self, batch: WriteBatch) -> None:
        if self.failing:
            raise OSError(28, "No space left on device")
        self.real(batch)


def test_two_spill_episodes_and_spilled_run_updates_all_land(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = runfleet.init(project="p", dir=home, id="eps", config={"lr": 1})
    assert isinstance(run, runfleet.Run)
    store = runfleet.tracking.homes.get(Home.resolve(home)).store
    flaky = _FlakyWrites(store)
    monkeypatch.setattr(store, "write", flaky)
    expected: list[float] = []
    for episode in range(2):
        flaky.failing = True
        for _ in range(5):
            runfleet.log({"v": float(len(expected))})
            expected.append(float(len(expected)))
        if episode == 0:
            runfleet.config.update({"lr": 2, "bs": 64})
            run.tags = ["important"]
        with pytest.warns(RuntimeWarning, match="No space left"):
            run.flush(timeout=30)
        flaky.failing = False
        for _ in range(5):
            runfleet.log({"v": float(len(expected))})
            expected.append(float(len(expected)))
        run.flush(timeout=30)
    runfleet.finish()
    assert spill.pending(Home.resolve(home)) == []
    r = runfleet.Api(home).run("p", "eps")
    assert r.history()["v"].tolist() == expected
    assert r.config == {"lr": 2, "bs": 64} and r.tags == ["important"]
    assert r.status == "completed"


def test_spill_lines_of_another_database_are_set_aside(home: Path) -> None:
    run = runfleet.init(project="p", dir=home, id="x")
    runfleet.log({"v": 1.0})
    runfleet.finish()
    assert isinstance(run, runfleet.Run)
    h = Home.resolve(home)
    opened = runfleet.tracking.homes.get(h)  # already open: the run above opened it
    path = spill.write(h, _one_point_batch(opened.store, run), "some-other-database")
    assert spill.replay(h, opened.store) == 0
    assert not path.exists()
    assert any(p.name.endswith(".foreign") for p in path.parent.iterdir())
    assert spill.pending(h) == []
    assert runfleet.Api(home).run("p", "x").history()["v"].tolist() == [1.0]
