"""Fan-out to sinks: order, background delivery, failing and stuck sinks, validation."""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import runfleet
from runfleet import Experiment, GridSearch, List
from runfleet.engine.policy import RunProgress, StopDecision, StoppingPolicy
from runfleet.fit import TorchConfig
from runfleet.sinks import Sink, resolve_sinks
from runfleet.sinks.base import Row, RunInfo
from runfleet.sinks.fanout import RunfleetSinkWarning, SinkChannel, flush_all
from runfleet.sinks.mlflow import MLflowSink
from runfleet.sinks.trackio import TrackioSink
from tests.engine.models import make_model, regression_data


class RecordingSink(Sink):
    """Keeps every call, in order."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.threads: set[str] = set()

    def _note(self, *call: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append(call)

    def start_run(self, run: RunInfo) -> None:
        self._note("start", run)

    def log(self, run_id: str, rows: Sequence[Row]) -> None:
        self._note("log", run_id, list(rows))

    def set_status(self, run_id: str, status: str) -> None:
        self._note("status", run_id, status)

    def update_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        self._note("config", run_id, dict(config))

    def finish_run(self, run_id: str, status: str) -> None:
        self._note("finish", run_id, status)

    def close(self) -> None:
        self._note("close")

    def rows(self, run_id: str) -> list[tuple[int, dict[str, Any]]]:
        return [(step, dict(values)) for call in self.calls if call[0] == "log"
                and call[1] == run_id for step, _, values in call[2]]


class RaisingSink(Sink):
    """Raises on every call."""

    name = "raising"

    def __init__(self) -> None:
        self.calls = 0

    def _boom(self, *args: Any) -> None:
        self.calls += 1
        raise RuntimeError("sink is down")

    start_run = log = set_status = finish_run = _boom  # type: ignore[assignment]

    def close(self) -> None:
        raise RuntimeError("sink is down")


class StuckSink(RecordingSink):
    """Every call blocks until ``release`` is set: a sink that cannot keep up at all."""

    name = "stuck"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def _note(self, *call: Any) -> None:
        self.release.wait(120)
        super()._note(*call)


def test_init_forwards_every_row_status_and_config_in_order(home: Path) -> None:
    sink = RecordingSink()
    run = runfleet.init(project="fan", dir=home, config={"lr": 0.1}, sinks=[sink, "runfleet"])
    assert isinstance(run, runfleet.Run) and run.sinks == (sink,)
    expected = []
    for i in range(500):
        values = {"loss": 1.0 / (i + 1), "ok": i % 2 == 0, "note": f"s{i}"}
        run.log(values, step=2 * i)
        expected.append((2 * i, values))
    run.log({"nan": math.nan}, step=1000)
    run.config.update({"batch": 8})
    run.set_status("stopped")
    run.set_status("running")
    run.finish()  # waits for the sink
    kinds = [c[0] for c in sink.calls]
    assert kinds[0] == "start" and kinds[-1] == "finish"
    info = sink.calls[0][1]
    assert (info.project, info.run_id, info.name, dict(info.config)) == (
        "fan", run.id, run.name, {"lr": 0.1})
    rows = sink.rows(run.id)
    assert rows[:500] == expected
    assert rows[500][0] == 1000 and math.isnan(rows[500][1]["nan"])
    tail = [c for c in sink.calls if c[0] in ("config", "status", "finish")]
    assert tail == [("status", run.id, "running"),  # the status the run starts with
                    ("config", run.id, {"lr": 0.1, "batch": 8}),
                    ("status", run.id, "stopped"), ("status", run.id, "running"),
                    ("finish", run.id, "completed")]
    assert sink.threads == {"runfleet-sink-recording"}  # never the training thread


def test_rows_are_copies_so_reusing_the_dict_is_safe(home: Path) -> None:
    sink = RecordingSink()
    run = runfleet.init(project="fan", dir=home, sinks=[sink])
    values: dict[str, Any] = {}
    for i in range(3):
        values["x"] = i
        run.log(values)
    run.finish()
    assert sink.rows(run.id) == [(0, {"x": 0}), (1, {"x": 1}), (2, {"x": 2})]


def test_a_raising_sink_is_recorded_on_the_run_and_loses_nothing(home: Path) -> None:
    bad, good = RaisingSink(), RecordingSink()
    with pytest.warns(RunfleetSinkWarning, match="raising sink failed"):
        run = runfleet.init(project="fan", dir=home, sinks=[bad, good])
        for i in range(200):
            run.log({"loss": float(i)})
        run.finish()
    assert bad.calls >= 3
    assert [s for s, _ in good.rows(run.id)] == list(range(200))  # the other sink got all
    (read,) = runfleet.Api(home).runs("fan")
    assert read.status == "completed"
    assert read.history()["loss"].tolist() == [float(i) for i in range(200)]
    texts = [a["text"] for a in read.alerts() if a["title"] == "tracking sink failed"]
    assert texts[0].startswith("the raising sink failed in start_run: RuntimeError('sink is "
                               "down')")
    assert any(t.startswith(f"{bad.calls} calls to the raising sink failed") for t in texts)
    assert {a["level"] for a in read.alerts()} == {"warn"}


def test_engine_with_raising_and_stuck_sinks_finishes_with_everything(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither a sink that raises on every call nor one that never returns (until released
    after the experiment) holds training up; the store has every point."""
    monkeypatch.setenv("RUNFLEET_SINK_TIMEOUT", "1")
    bad, stuck = RaisingSink(), StuckSink()
    space = GridSearch(TorchConfig(hidden=List([4, 8]), learning_rate=0.01, max_steps=12,
                                   per_device_train_batch_size=8), trainer="torch")
    exp = Experiment("fan-engine", dir=home, trackers=("runfleet", bad, stuck))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunfleetSinkWarning)
        results = exp.run_fit(space, make_model, regression_data(64), num_chunks=3,
                              workers=1, progress=False)
    assert stuck.calls == []  # still blocked in its first call: training never waited
    stuck.release.set()
    assert list(results["status"]) == ["completed", "completed"]
    api = runfleet.Api(home)
    for r in api.runs("fan-engine"):
        assert r.history(keys=["loss"])["loss"].size == 12
        assert any(a["title"] == "tracking sink failed" for a in r.alerts())
    assert bad.calls > 0


def test_a_full_queue_drops_for_that_sink_only_and_says_so(home: Path) -> None:
    stuck = StuckSink()
    channel = SinkChannel(stuck, max_queue=10)
    errors: list[str] = []
    channel.start_run(RunInfo("p", "r1", "r1"), lambda message, step: errors.append(message))
    for i in range(100):
        channel.log("r1", i, 0.0, {"x": i})
    channel.finish_run("r1", "completed")
    stuck.release.set()
    with pytest.warns(RunfleetSinkWarning, match="fell behind"):
        assert channel.close(30)
    kept = stuck.rows("r1")
    assert 0 < len(kept) < 100 and [s for s, _ in kept] == list(range(len(kept)))
    assert errors == [f"the stuck sink fell behind: {100 - len(kept)} points were not sent "
                      f"to it (runfleet's store has them)"]


def test_tracker_names_are_validated_before_anything_runs(home: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown tracker 'wandb'; known: runfleet, .*trackio"):
        Experiment("x", dir=home, trackers=("runfleet", "wandb"))
    with pytest.raises(TypeError, match="a tracker must be a name"):
        runfleet.init(project="p", dir=home, sinks=[42])  # type: ignore[list-item]
    assert resolve_sinks(["runfleet"]) == []
    assert resolve_sinks(["trackio", "trackio"]) == resolve_sinks(["trackio"])
    assert not (home / "experiments" / "x").exists()


_STOPPED_ONCE: set[str] = set()


class StopFirstRunAfterOneChunk(StoppingPolicy):
    """Stops the first run after its first chunk, once per process."""

    def decide(self, runs: Sequence[RunProgress]) -> list[StopDecision]:
        out = []
        for r in runs:
            if r.index == 0 and r.active and r.chunks_done == 1 and r.run_id not in _STOPPED_ONCE:
                _STOPPED_ONCE.add(r.run_id)
                out.append(StopDecision(r.run_id, "stopped by the test"))
        return out


def test_a_run_stopped_then_resumed_later_continues_the_same_trackio_run(home: Path) -> None:
    space = GridSearch(TorchConfig(hidden=List([4, 8]), learning_rate=0.01, max_steps=12,
                                   per_device_train_batch_size=8), trainer="torch")
    mlflow_uri = f"sqlite:///{home.parent / 'mlflow.db'}"
    exp = Experiment("fan-resume", dir=home,
                     trackers=("runfleet", "trackio", MLflowSink(tracking_uri=mlflow_uri)))
    exp.run_fit(space, make_model, regression_data(64), num_chunks=3, workers=1,
                progress=False, stopping=StopFirstRunAfterOneChunk())
    first, second = exp.runs()["id"].tolist()
    assert list(exp.runs()["status"]) == ["stopped", "completed"]
    exp.resume(first, wait=False)
    # Later, as from another process: the recorded trackers are used again.
    again = Experiment.attach("fan-resume", dir=home)
    assert again.trackers == ("runfleet", "trackio", "mlflow")
    rebuilt = again.sinks[1]  # rebuilt with its recorded settings, not the defaults
    assert isinstance(rebuilt, MLflowSink) and rebuilt.tracking_uri == mlflow_uri
    again.resume_all(workers=1, progress=False)
    in_mlflow = {r.run_id: r for r in MLflowSink(tracking_uri=mlflow_uri)
                 .read_project("fan-resume")}
    assert set(in_mlflow) == {first, second}  # the same MLflow run continued
    assert [s for s, _ in in_mlflow[first].points["loss"]] == list(range(1, 13))
    assert in_mlflow[first].status == "completed"
    trackio_runs = {r.run_id: r for r in TrackioSink().read_project("fan-resume")}
    assert set(trackio_runs) == {first, second}
    api = runfleet.Api(home)
    for rid in (first, second):
        steps = [s for s, _ in trackio_runs[rid].points["loss"]]
        assert steps == list(range(1, 13))  # every step exactly once, across both processes
        assert [v for _, v in trackio_runs[rid].points["loss"]] == \
            api.run("fan-resume", rid).history(keys=["loss"])["loss"].tolist()
        assert trackio_runs[rid].status == "completed"
    db = TrackioSink().db_path("fan-resume")
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        titles = {rid: [t for (t,) in conn.execute(
            "SELECT title FROM alerts WHERE run_id = ? ORDER BY id", (rid,))]
            for rid in (first, second)}
    assert titles == {first: ["run stopped", "run resumed", "run completed"],
                      second: ["run completed"]}


def test_a_finished_run_deleted_later_ends_again_in_its_sinks(home: Path) -> None:
    sink = RecordingSink()
    run = runfleet.init(project="fan", dir=home, sinks=[sink])
    run.log({"x": 1})
    run.finish()
    assert isinstance(run, runfleet.Run)
    run.set_status("deleted")  # what the controller does when a finished run is deleted
    assert flush_all(30)
    calls = [(c[0], c[1].resumed if c[0] == "start" else c[-1]) for c in sink.calls
             if c[0] in ("start", "finish")]
    assert calls == [("start", False), ("finish", "completed"), ("start", True),
                     ("finish", "deleted")]


class FileSink(RecordingSink):
    """Appends ``<pid> <call>`` lines to a file: shows which process called it."""

    name = "file"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def _note(self, *call: Any) -> None:
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()} {call[0]}\n")


def test_a_forked_child_never_feeds_or_finishes_the_parents_sink_runs(home: Path) -> None:
    log = home / "calls.txt"
    run = runfleet.init(project="fan", dir=home, sinks=[FileSink(log)])
    for i in range(50):
        run.log({"x": i})
    pid = os.fork()
    if pid == 0:  # the child ends the run it inherited and exits, as a worker might
        try:
            run.finish()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    for i in range(50):
        run.log({"x": i})
    run.finish()
    lines = log.read_text().split()
    pids, calls = lines[0::2], lines[1::2]
    assert set(pids) == {str(os.getpid())}
    assert calls[0] == "start" and calls.count("finish") == 1 and calls[-1] == "finish"


def test_idle_channels_release_their_thread_and_restart_on_demand(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runfleet.sinks import fanout

    monkeypatch.setattr(fanout, "IDLE_EXIT_S", 0.2)

    def sink_threads() -> int:
        return sum(t.name == "runfleet-sink-recording" and t.is_alive()
                   for t in threading.enumerate())

    sinks = [RecordingSink() for _ in range(20)]
    for i, sink in enumerate(sinks):  # a new sink object per run, as a careless loop does
        with runfleet.init(project="fan", dir=home, sinks=[sink]) as run:
            run.log({"i": i})
    deadline = time.monotonic() + 30
    while sink_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink_threads() == 0  # no thread is kept for sinks without open runs
    # a sink used again gets its thread back and loses nothing
    run = runfleet.init(project="fan", dir=home, sinks=[sinks[0]])
    run.log({"again": 1.0})
    run.finish()
    assert sinks[0].rows(run.id) == [(0, {"again": 1.0})]
    assert all(len([c for c in s.calls if c[0] == "finish"]) >= 1 for s in sinks)
