"""One contract, every sink: what goes in through the Sink methods comes back from read_project.

Each target is a factory ``make(ctx) -> Sink``; a test writes with one instance and reads with
a fresh one (same settings), so everything checked is in the target, not in the sink object.
Every target runs (``make test`` installs the trackio, mlflow and tensorboard extras); a
missing package fails the test. Where a target cannot hold something, :class:`Target` says
what it does instead (its documented behaviour), and the test asserts exactly that.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from runfleet.sinks.base import Row, RunInfo, Sink, SinkRun


@dataclass(frozen=True)
class Ctx:
    """Folders a factory may use: ``tmp`` is the test's own, ``shared`` lives for the session."""

    tmp: Path
    shared: Path


@dataclass(frozen=True)
class Target:
    """A sink implementation under test and what its target can hold."""

    make: Callable[[Ctx], Sink]
    #: string values come back as points (else they are left out)
    strings: bool = True
    #: lineage comes back as the config entries ``parent`` / ``parent_step``
    #: (:meth:`RunInfo.lineage`); False for a target with lineage of its own, which
    #: :class:`SinkRun` cannot show
    lineage_in_config: bool = True


def _cls(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


def _mlflow_sqlite(ctx: Ctx) -> Sink:
    return _cls("runfleet.sinks.mlflow", "MLflowSink")(f"sqlite:///{ctx.shared}/mlflow.db")


def _mlflow_file(ctx: Ctx) -> Sink:
    return _cls("runfleet.sinks.mlflow", "MLflowSink")((ctx.tmp / "mlruns").as_uri())


def _tensorboard(ctx: Ctx) -> Sink:
    return _cls("runfleet.sinks.tensorboard", "TensorBoardSink")(ctx.tmp / "tb")


def _trackio(ctx: Ctx) -> Sink:
    return _cls("runfleet.sinks.trackio", "TrackioSink")()


def _runfleet(ctx: Ctx) -> Sink:
    return _cls("runfleet.tracking.mirror", "RunfleetSink")(dir=ctx.tmp / "mirror")


TARGETS = {
    "mlflow-sqlite": Target(_mlflow_sqlite, strings=False),
    "mlflow-file": Target(_mlflow_file, strings=False),
    "tensorboard": Target(_tensorboard, strings=True),
    "trackio": Target(_trackio, strings=True),
    "runfleet": Target(_runfleet, strings=True, lineage_in_config=False),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sinks-shared")


@dataclass
class Harness:
    """A sink to write with, a fresh one to read with, and the target's abilities."""

    target: Target
    sink: Sink
    reader: Sink
    home: Path

    def read(self, project: str) -> dict[str | None, SinkRun]:
        runs = self.reader.read_project(project)
        by_id = {r.run_id: r for r in runs}
        assert len(by_id) == len(runs), f"a run id is there twice: {runs}"
        return by_id


@pytest.fixture(params=sorted(TARGETS))
def harness(request: pytest.FixtureRequest, tmp_path: Path, shared: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    target = TARGETS[request.param]
    # the MLflow sink sets MLFLOW_ALLOW_FILE_STORE for file: URIs; keep that inside the test
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    ctx = Ctx(tmp_path, shared)
    sink = target.make(ctx)
    reader = target.make(ctx)
    yield Harness(target, sink, reader, tmp_path / "home")
    for s in (sink, reader):
        with contextlib.suppress(Exception):
            s.close()


def project_name() -> str:
    return f"conf-{uuid.uuid4().hex[:10]}"


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (floats compare exactly)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def expected_points(batches: Sequence[Sequence[Row]], strings: bool
                    ) -> dict[str, list[tuple[int, Any]]]:
    out: dict[str, list[tuple[int, Any]]] = {}
    for rows in batches:
        for step, _, values in rows:
            for key, value in values.items():
                if isinstance(value, str) and not strings:
                    continue
                out.setdefault(key, []).append((step, value))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in out.items()}


def assert_points(got: dict[str, list[tuple[int, Any]]],
                  want: dict[str, list[tuple[int, Any]]]) -> None:
    assert sorted(got) == sorted(want)
    for key, points in want.items():
        read = got[key]
        assert [s for s, _ in read] == [s for s, _ in points], key
        for (_, a), (_, b) in zip(read, points):
            assert same(a, b), (key, read, points)


def assert_config(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        assert key in got, (key, got)
        assert same(got[key], value), (key, got[key], value)
        assert type(got[key]) is type(value) or value is None, (key, got[key], value)


T0 = 1_700_000_000.0
CONFIG = {"lr": 3e-4, "epochs": 3, "optim": "adamw_torch", "use_peft": True,
          "peft_config.r": 16, "seed_text": "42", "dropout": None, "ratio": 0.1 + 0.2}
PARENT_BATCHES: list[list[Row]] = [
    [(0, T0, {"loss": 2.5, "acc": 0, "flag": True}),
     (3, T0 + 1.25, {"loss": math.nan, "lr": 3e-4, "note": "warmup"})],
    [(10, T0 + 2.5, {"loss": math.inf, "grad_norm": -math.inf, "flag": False}),
     (11, T0 + 3, {"acc": 7, "note": "eval done"})],
    [(25, T0 + 4, {"loss": 0.1 + 0.2, "tiny": 5e-324, "big": 1e308, "neg": -1.5})],
]
CHILD_BATCHES: list[list[Row]] = [
    [(20, T0 + 10, {"loss": 0.75}), (21, T0 + 11, {"loss": 0.5, "acc": 3})],
    [(40, T0 + 12, {"loss": math.nan, "grad_norm": math.inf})],
]


def test_runs_round_trip(harness: Harness) -> None:
    sink, project, home = harness.sink, project_name(), str(harness.home)
    parent = RunInfo(project, "par-0001", "parent run", group="sweep-a", config=CONFIG,
                     tags=("base",), home=home)
    child = RunInfo(project, "kid-0002", "child run", group="sweep-a",
                    config={**CONFIG, "lr": 1e-4}, parent="par-0001", parent_step=20, home=home)
    sink.start_run(parent)
    sink.start_run(child)
    sink.log("par-0001", PARENT_BATCHES[0])
    sink.set_status("par-0001", "running")
    sink.log("kid-0002", CHILD_BATCHES[0])
    sink.log("par-0001", PARENT_BATCHES[1])
    sink.set_status("par-0001", "stopped")
    sink.set_status("par-0001", "running")
    sink.log("par-0001", PARENT_BATCHES[2])
    sink.log("kid-0002", CHILD_BATCHES[1])
    sink.finish_run("par-0001", "completed")
    sink.finish_run("kid-0002", "failed")

    runs = harness.read(project)
    assert sorted(runs, key=str) == ["kid-0002", "par-0001"]
    p, c = runs["par-0001"], runs["kid-0002"]
    assert (p.name, p.group, p.status) == ("parent run", "sweep-a", "completed")
    assert (c.name, c.group, c.status) == ("child run", "sweep-a", "failed")
    assert_config(p.config, CONFIG)
    assert "parent" not in p.config
    lineage = {"parent": "par-0001", "parent_step": 20} if harness.target.lineage_in_config else {}
    assert_config(c.config, {**CONFIG, "lr": 1e-4, **lineage})
    assert_points(p.points, expected_points(PARENT_BATCHES, harness.target.strings))
    assert_points(c.points, expected_points(CHILD_BATCHES, harness.target.strings))


def test_resumed_run_continues_in_the_same_target_run(harness: Harness) -> None:
    sink, project = harness.sink, project_name()
    info = RunInfo(project, "res-0001", "resumable", config={"lr": 0.01},
                   home=str(harness.home))
    first = [(0, T0, {"loss": 1.0}), (1, T0 + 1, {"loss": 0.9})]
    sink.start_run(info)
    sink.log(info.run_id, first)
    sink.set_status(info.run_id, "stopped")
    sink.finish_run(info.run_id, "stopped")

    sink.start_run(replace(info, resumed=True))
    later = [(2, T0 + 100, {"loss": 0.8}), (5, T0 + 101, {"loss": 0.7, "acc": 0.5})]
    sink.log(info.run_id, later)
    sink.finish_run(info.run_id, "completed")

    runs = harness.read(project)
    assert list(runs) == ["res-0001"]
    run = runs["res-0001"]
    assert run.status == "completed"
    assert_config(run.config, {"lr": 0.01})
    assert_points(run.points, expected_points([first, later], harness.target.strings))


def test_update_config_adds_keys(harness: Harness) -> None:
    sink, project = harness.sink, project_name()
    info = RunInfo(project, "cfg-0001", "configured", config={"lr": 0.01, "model": "tiny"},
                   home=str(harness.home))
    sink.start_run(info)
    sink.log(info.run_id, [(0, T0, {"loss": 1.0})])
    sink.update_config(info.run_id, {"lr": 0.01, "model": "tiny", "batch_size": 8,
                                     "scheduler.name": "cosine", "frozen": False})
    sink.log(info.run_id, [(1, T0 + 1, {"loss": 0.5})])
    sink.finish_run(info.run_id, "completed")

    run = harness.read(project)["cfg-0001"]
    assert_config(run.config, {"lr": 0.01, "model": "tiny", "batch_size": 8,
                               "scheduler.name": "cosine", "frozen": False})
    assert_points(run.points, {"loss": [(0, 1.0), (1, 0.5)]})


def test_close_ends_runs_left_open_with_their_last_status(harness: Harness) -> None:
    sink, project, home = harness.sink, project_name(), str(harness.home)
    sink.start_run(RunInfo(project, "opn-0001", "left running", home=home))
    sink.start_run(RunInfo(project, "opn-0002", "left stopped", home=home))
    sink.log("opn-0001", [(0, T0, {"loss": 1.0}), (7, T0 + 1, {"loss": 0.25})])
    sink.log("opn-0002", [(0, T0, {"loss": 2.0})])
    sink.set_status("opn-0002", "stopped")
    sink.close()

    runs = harness.read(project)
    assert runs["opn-0001"].status == "running"
    assert runs["opn-0002"].status == "stopped"
    assert_points(runs["opn-0001"].points, {"loss": [(0, 1.0), (7, 0.25)]})
    assert_points(runs["opn-0002"].points, {"loss": [(0, 2.0)]})


def test_projects_stay_separate(harness: Harness) -> None:
    sink, home = harness.sink, str(harness.home)
    first, second = project_name(), project_name()
    sink.start_run(RunInfo(first, "sep-0001", "same name", home=home))
    sink.start_run(RunInfo(second, "sep-0002", "same name", home=home))
    sink.log("sep-0001", [(0, T0, {"loss": 1.0})])
    sink.log("sep-0002", [(0, T0, {"loss": 2.0}), (1, time.time(), {"other": 3})])
    sink.finish_run("sep-0001", "completed")
    sink.finish_run("sep-0002", "completed")

    a, b = harness.read(first), harness.read(second)
    assert list(a) == ["sep-0001"] and list(b) == ["sep-0002"]
    assert_points(a["sep-0001"].points, {"loss": [(0, 1.0)]})
    assert_points(b["sep-0002"].points, {"loss": [(0, 2.0)], "other": [(1, 3)]})
    assert harness.read(project_name()) == {}
