"""Importing a real trackio project database: every point, config, group, system metric."""

from __future__ import annotations

import math
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pytest

import runfleet
from runfleet.cli import main
from runfleet.home import Home
from runfleet.importers import stable_id
from runfleet.importers.trackio import import_trackio
from runfleet.tracking.homes import open_store
from tests.conftest import same_value as same
from tests.conftest import subprocess_env

FLOATS = [0.1, 1e308, math.nan, math.inf, -math.inf, 5e-324, -0.0, 1 / 3, 123456.789]


def _payloads() -> dict[str, list[tuple[dict[str, object], int]]]:
    """What the trackio script logs, per run name: (metrics, step) in logging order."""
    first: list[tuple[dict[str, object], int]] = []
    for i, f in enumerate(FLOATS):
        first.append(({"loss": f, "acc": i / 7, "n": 2**62 + i, "flag": i % 2 == 0,
                       "txt": f"s{i}", "maybe": None if i % 3 else 1.5}, i))
    first.append(({"late": 0.25}, 100))
    first.append(({"late": 0.5}, 50))  # steps may go backwards
    second: list[tuple[dict[str, object], int]] = [
        ({"loss": 1.0 / (i + 1), "neg": -(2**63)}, i) for i in range(4)]
    return {"first": first, "second": second}


SYSTEM = [{"cpu": 12.5, "mem": 1024}, {"cpu": 13.25, "mem": 2048}, {"cpu": math.nan}]
CONFIG = {"lr": 1e-3, "layers": [64, 32], "name": "x", "nested": {"a": 1}, "wd": math.inf}

SCRIPT = textwrap.dedent("""
    import pickle, sys
    import trackio
    payloads, system, config = pickle.load(open(sys.argv[1], "rb"))
    trackio.init(project="proj", name="first", group="grp", config=config,
                 auto_log_cpu=False, auto_log_gpu=False)
    for metrics, step in payloads["first"]:
        trackio.log(metrics, step=step)
    for sample in system:
        trackio.log_system(sample)
    trackio.alert("diverged", text="loss is nan", level=trackio.AlertLevel.ERROR)
    trackio.finish()
    trackio.init(project="proj", name="second", auto_log_cpu=False, auto_log_gpu=False)
    for metrics, step in payloads["second"]:
        trackio.log(metrics, step=step)
    trackio.finish()
""")


@pytest.fixture(scope="module")
def trackio_db(tmp_path_factory) -> Path:
    """A trackio project database written by the installed trackio, in a subprocess."""
    root = tmp_path_factory.mktemp("trackio")
    data = root / "payloads.pkl"
    data.write_bytes(pickle.dumps((_payloads(), SYSTEM, CONFIG)))
    script = root / "log.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "TRACKIO_DIR": str(root / "store"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(script), str(data)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    db = root / "store" / "proj.db"
    assert db.exists(), list((root / "store").iterdir())
    return db


def expected_series(run: str) -> dict[str, list[tuple[int, object]]]:
    """Per key: (step, value) sorted by step, as logged."""
    out: dict[str, list[tuple[int, object]]] = {}
    for metrics, step in _payloads()[run]:
        for key, value in metrics.items():
            out.setdefault(key, []).append((step, value))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in out.items()}


def db_times(db: Path, run_name: str) -> list[float]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT timestamp FROM metrics WHERE run_name = ? ORDER BY id",
                            (run_name,)).fetchall()
    return [datetime.fromisoformat(r[0]).timestamp() for r in rows]


def test_import_is_lossless(trackio_db, tmp_path, capsys):
    assert main(["import", "trackio", str(trackio_db), "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    total = sum(len(m) for p in _payloads().values() for m, _ in p) + \
        sum(len(s) for s in SYSTEM)
    assert "imported 2 run(s)" in out and f"{total} point(s)" in out
    with runfleet.Api(dir=tmp_path) as api:
        runs = {r.name: r for r in api.runs("proj")}
        assert sorted(runs) == ["first", "second"]
        first, second = runs["first"], runs["second"]
        assert first.group == "grp" and second.group is None
        assert first.status == second.status == "completed"
        assert set(first.config) == set(CONFIG)
        for key, value in CONFIG.items():
            assert same(first.config[key], value) or first.config[key] == value, key
        assert second.config == {}
        origin = first.metadata["imported_from"]
        assert origin["format"] == "trackio" and origin["run_name"] == "first"
        assert "created" in origin and "username" in origin
        for name, run in runs.items():
            expected = expected_series(name)
            assert set(run.keys()) == set(expected), name
            for key, points in expected.items():
                s = run.series(key)
                assert s.steps.tolist() == [p[0] for p in points], (name, key)
                got = s.values.tolist()
                assert all(same(g, p[1]) for g, p in zip(got, points)), (name, key, got)
        assert second.last_step == 3 and first.last_step == 100
        # timestamps are trackio's own, to the microsecond
        times = sorted(set(db_times(trackio_db, "first")))
        got_times = sorted(set(first.series("acc").times.tolist()) |
                           set(first.series("late").times.tolist()))
        assert np.allclose(got_times, times, rtol=0, atol=1e-6)
        # system metrics under system/, stepped by sample index
        assert first.keys("system") == ["system/cpu", "system/mem"]
        cpu = first.series("system/cpu")
        assert cpu.steps.tolist() == [0, 1, 2]
        assert all(same(a, b) for a, b in zip(cpu.values.tolist(), [12.5, 13.25, math.nan]))
        assert first.series("system/mem").values.tolist() == [1024, 2048]
        alerts = first.alerts()
        assert [(a["title"], a["text"], a["level"]) for a in alerts] == \
            [("diverged", "loss is nan", "error")]
        # summary: the last value logged per key
        assert same(first.summary["loss"], FLOATS[-1])
        assert first.summary["late"] == 0.5
        assert second.summary["loss"] == 0.25 and second.summary["neg"] == -(2**63)
        assert not any(k.startswith("system/") for k in first.summary)


def test_double_import_does_not_duplicate(trackio_db, tmp_path, capsys):
    assert main(["import", "trackio", str(trackio_db), "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["import", "trackio", str(trackio_db), "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "imported 0 run(s)" in out and "skipped 2" in out
    with runfleet.Api(dir=tmp_path) as api:
        runs = api.runs("proj")
        assert len(runs) == 2
        first = next(r for r in runs if r.name == "first")
        assert len(first.series("loss").steps) == len(FLOATS)


def test_project_override(trackio_db, tmp_path):
    store = open_store(Home.resolve(tmp_path))
    try:
        result = import_trackio(store, trackio_db, project="renamed")
    finally:
        store.close()
    assert result.project == "renamed" and len(result.imported) == 2
    with runfleet.Api(dir=tmp_path) as api:
        assert [str(p) for p in api.projects()] == ["renamed"]


def test_interrupted_import_is_completed(trackio_db, tmp_path):
    with sqlite3.connect(trackio_db) as conn:
        run_id = conn.execute("SELECT run_id FROM configs WHERE run_name = 'second'"
                              ).fetchone()[0]
    store = open_store(Home.resolve(tmp_path))
    try:
        store.create_run("proj", stable_id("trackio", run_id), "second", status="pending")
        result = import_trackio(store, trackio_db)
    finally:
        store.close()
    assert len(result.imported) == 2 and not result.skipped
    with runfleet.Api(dir=tmp_path) as api:
        second = [r for r in api.runs("proj") if r.name == "second"]
        assert len(second) == 1 and second[0].status == "completed"
        assert len(second[0].series("loss").steps) == 4


def test_legacy_database_without_run_ids(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                     "timestamp TEXT, run_name TEXT, step INTEGER, metrics TEXT)")
        conn.execute("CREATE TABLE configs (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                     "run_name TEXT, config TEXT, created_at TEXT)")
        conn.executemany("INSERT INTO metrics (timestamp, run_name, step, metrics) "
                         "VALUES (?, ?, ?, ?)", [
                             ("2024-01-01T00:00:00.000001+00:00", "a", 0, '{"loss": 2.0}'),
                             ("2024-01-01T00:00:01+00:00", "a", 1, '{"loss": "NaN"}'),
                             ("2024-01-01T00:00:02+00:00", "b", 0, '{"loss": "-Infinity"}'),
                         ])
        conn.execute("INSERT INTO configs (run_name, config, created_at) VALUES (?, ?, ?)",
                     ("a", '{"lr": 0.5, "_Group": "old"}', "2024-01-01T00:00:00+00:00"))
    home = tmp_path / "home"
    assert main(["import", "trackio", str(db), "--dir", str(home)]) == 0
    assert main(["import", "trackio", str(db), "--dir", str(home)]) == 0
    with runfleet.Api(dir=home) as api:
        runs = {r.name: r for r in api.runs("old")}
        assert sorted(runs) == ["a", "b"]
        assert runs["a"].config == {"lr": 0.5} and runs["a"].group == "old"
        loss = runs["a"].series("loss")
        assert loss.steps.tolist() == [0, 1]
        assert loss.values[0] == 2.0 and math.isnan(loss.values[1])
        assert loss.times[0] == datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc).timestamp()
        assert runs["b"].series("loss").values.tolist() == [-math.inf]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runfleet.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_errors(tmp_path, capsys):
    home = str(tmp_path / "home")
    assert main(["import", "trackio", str(tmp_path / "missing.db"), "--dir", home]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    proc = _cli("import", "trackio", str(junk), "--dir", home)
    assert proc.returncode == 1 and "not a SQLite database" in proc.stderr
    assert "Traceback" not in proc.stderr
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert main(["import", "trackio", str(other), "--dir", home]) == 1
    assert "no 'metrics' table" in capsys.readouterr().err
    truncated = tmp_path / "trunc.db"
    truncated.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    assert main(["import", "trackio", str(truncated), "--dir", home]) == 1
    assert "runfleet: error:" in capsys.readouterr().err


# -- a whole trackio home: several projects ---------------------------------------------------
NAN, INF = math.nan, math.inf


class RunSpec(TypedDict):
    """One trackio run of the home: what the script logs."""

    name: str
    group: str | None
    config: dict[str, Any]
    metrics: list[tuple[dict[str, Any], int]]
    system: list[dict[str, Any]]
    alerts: list[tuple[str, str, str]]


HOME_RUNS: dict[str, list[RunSpec]] = {
    "alpha": [
        {"name": "a1", "group": "sweep",
         "config": {"lr": 0.01, "bad": NAN, "top": INF, "neg0": -0.0, "layers": [8, 4],
                    "opt": {"name": "adam", "beta": 0.9}},
         "metrics": [({"loss": NAN, "acc": 0.5, "tag": "warmup"}, 0),
                     ({"loss": 0.25, "acc": INF, "big": 2**62}, 1),
                     ({"loss": -INF, "acc": 1 / 3, "ok": True}, 5)],
         "system": [{"cpu": 12.5, "gpu/0/util": 30}, {"cpu": NAN, "gpu/0/util": 31},
                    {"cpu": 14.0}],
         "alerts": [("slow", "step 5 took 3 s", "WARN"), ("nan loss", "", "ERROR")]},
        {"name": "a2", "group": None, "config": {"lr": 0.1},
         "metrics": [({"loss": 1.5}, 0), ({"loss": 5e-324}, 1)],
         "system": [], "alerts": []},
    ],
    "beta": [
        {"name": "b1", "group": None, "config": {},
         "metrics": [({"x": i * 0.1, "y": -i} if i % 2 else {"x": NAN}, i) for i in range(6)],
         "system": [{"mem": 2048}], "alerts": [("done", "b1 finished", "INFO")]},
    ],
}

HOME_SCRIPT = textwrap.dedent("""
    import pickle, sys
    import trackio
    for project, runs in pickle.load(open(sys.argv[1], "rb")).items():
        for r in runs:
            run = trackio.init(project=project, name=r["name"], group=r["group"],
                               config=r["config"], auto_log_cpu=False, auto_log_gpu=False)
            for metrics, step in r["metrics"]:
                trackio.log(metrics, step=step)
            for i, sample in enumerate(r["system"]):
                # both ways trackio offers to log system metrics
                (trackio.log_system if i % 2 else run.log_system)(sample)
            for title, text, level in r["alerts"]:
                trackio.alert(title, text=text, level=getattr(trackio.AlertLevel, level))
            trackio.finish()
""")


@pytest.fixture(scope="module")
def trackio_home(tmp_path_factory) -> Path:
    """A trackio home with projects alpha and beta written by the installed trackio, plus
    the kinds of files trackio keeps beside its project databases."""
    root = tmp_path_factory.mktemp("trackio-home")
    data = root / "runs.pkl"
    data.write_bytes(pickle.dumps(HOME_RUNS))
    script = root / "log.py"
    script.write_text(HOME_SCRIPT)
    store = root / "store"
    env = subprocess_env(TRACKIO_DIR=str(store), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(script), str(data)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (store / "alpha.db").is_file() and (store / "beta.db").is_file()
    (store / "media" / "alpha").mkdir(parents=True, exist_ok=True)
    (store / "media" / "alpha" / "img.png").write_bytes(b"\x89PNG")
    (store / "artifacts").mkdir(exist_ok=True)
    (store / "alpha.parquet").write_bytes(b"PAR1 not really")
    (store / "notes.txt").write_text("not a project")
    (store / "registry-models.db").write_bytes(b"a registry, not a project")
    (store / "folder.db").mkdir()  # a folder named like a database is not one
    return store


def _cli_env(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m runfleet ARGS`` in a fresh process with extra environment variables."""
    return subprocess.run([sys.executable, "-m", "runfleet", *args], capture_output=True,
                          text=True, timeout=120, env=subprocess_env(**env))


def _system_expected(samples: list[dict[str, Any]]) -> dict[str, list[tuple[int, Any]]]:
    out: dict[str, list[tuple[int, Any]]] = {}
    for index, sample in enumerate(samples):
        for key, value in sample.items():
            out.setdefault(f"system/{key}", []).append((index, value))
    return out


def _metric_expected(metrics: list[tuple[dict[str, Any], int]]
                     ) -> dict[str, list[tuple[int, Any]]]:
    out: dict[str, list[tuple[int, Any]]] = {}
    for values, step in metrics:
        for key, value in values.items():
            out.setdefault(key, []).append((step, value))
    return out


def assert_home_imported(home: Path, store: Path) -> None:
    """Every project, run, config entry, point, system sample and alert of HOME_RUNS is in
    ``home``, bit for bit, with trackio's timestamps."""
    with runfleet.Api(dir=home) as api:
        assert sorted(str(p) for p in api.projects()) == sorted(HOME_RUNS)
        for project, specs in HOME_RUNS.items():
            runs = {r.name: r for r in api.runs(project)}
            assert sorted(runs) == sorted(s["name"] for s in specs), project
            for spec in specs:
                run = runs[spec["name"]]
                where = (project, run.name)
                assert run.status == "completed", where
                assert run.group == spec["group"], where
                config = spec["config"]
                assert set(run.config) == set(config), where
                for key, value in config.items():
                    assert same(run.config[key], value) or (
                        not isinstance(value, float) and run.config[key] == value), (where, key)
                assert run.metadata["imported_from"]["path"] == str(store / f"{project}.db")
                metrics = _metric_expected(spec["metrics"])
                system = _system_expected(spec["system"])
                assert set(run.keys()) == set(metrics), where
                assert set(run.keys("system")) == set(system), where
                for key, points in {**metrics, **system}.items():
                    s = run.series(key)
                    assert s.steps.tolist() == [p[0] for p in points], (where, key)
                    got = s.values.tolist()
                    assert len(got) == len(points), (where, key)
                    assert all(same(g, p[1]) for g, p in zip(got, points)), (where, key, got)
                # metric timestamps are trackio's own, to the microsecond
                times = sorted({t for k in metrics for t in run.series(k).times.tolist()})
                with sqlite3.connect(store / f"{project}.db") as conn:
                    rows = conn.execute("SELECT timestamp FROM metrics WHERE run_name = ?",
                                        (run.name,)).fetchall()
                db = sorted({datetime.fromisoformat(r[0]).timestamp() for r in rows})
                assert np.allclose(times, db, rtol=0, atol=1e-6), where
                assert [(a["title"], a["text"], a["level"]) for a in run.alerts()] == [
                    (t, x, lv.lower()) for t, x, lv in spec["alerts"]], where


def test_home_import_via_cli_is_lossless(trackio_home, tmp_path):
    home = tmp_path / "rf"
    proc = _cli_env("import", "trackio", str(trackio_home), "--dir", str(home))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    for project, specs in HOME_RUNS.items():
        points = sum(len(m) for s in specs for m, _ in s["metrics"]) + \
            sum(len(x) for s in specs for x in s["system"])
        assert f"project {project!r}: imported {len(specs)} run(s), {points} point(s)" in out
    assert "total: imported 3 run(s)" in out and "in 2 project(s)" in out
    assert "registry-models" not in out and "notes" not in out and "folder" not in out
    assert_home_imported(home, trackio_home)


def test_home_from_trackio_dir_env_and_reimport_skips(trackio_home, tmp_path):
    home = tmp_path / "rf"
    proc = _cli_env("import", "trackio", "--dir", str(home), TRACKIO_DIR=str(trackio_home))
    assert proc.returncode == 0, proc.stderr
    assert "project 'alpha': imported 2 run(s)" in proc.stdout
    assert "project 'beta': imported 1 run(s)" in proc.stdout
    assert_home_imported(home, trackio_home)
    again = _cli_env("import", "trackio", "--dir", str(home), TRACKIO_DIR=str(trackio_home))
    assert again.returncode == 0, again.stderr
    assert "project 'alpha': imported 0 run(s), 0 point(s); skipped 2" in again.stdout
    assert "project 'beta': imported 0 run(s), 0 point(s); skipped 1" in again.stdout
    assert_home_imported(home, trackio_home)  # nothing doubled


def test_home_default_is_hf_home(trackio_home, tmp_path, monkeypatch, capsys):
    from runfleet.importers.trackio import default_trackio_dir

    hf_home = tmp_path / "hf"
    hf_home.mkdir()
    (hf_home / "trackio").symlink_to(trackio_home, target_is_directory=True)
    monkeypatch.delenv("TRACKIO_DIR", raising=False)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    assert default_trackio_dir() == hf_home / "trackio"
    home = tmp_path / "rf"
    assert main(["import", "trackio", "--dir", str(home)]) == 0
    assert "imported 3 run(s)" in capsys.readouterr().out
    assert_home_imported(home, trackio_home.resolve())
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_trackio_dir() == tmp_path / "cache" / "huggingface" / "trackio"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_trackio_dir() == tmp_path / "user" / ".cache" / "huggingface" / "trackio"
    assert main(["import", "trackio", "--dir", str(home)]) == 2  # no such default home
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "TRACKIO_DIR" in err


def test_corrupt_database_does_not_stop_the_others(trackio_home, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(trackio_home, store, symlinks=True)
    broken = store / "broken.db"
    broken.write_bytes(os.urandom(4096))
    stranger = store / "stranger.db"
    with sqlite3.connect(stranger) as conn:
        conn.execute("CREATE TABLE t (x)")
    home = tmp_path / "rf"
    for attempt in range(2):
        proc = _cli_env("import", "trackio", str(store), "--dir", str(home))
        assert proc.returncode == 1, proc.stdout
        assert "Traceback" not in proc.stderr
        errors = proc.stderr.strip().splitlines()
        assert len(errors) == 2, proc.stderr
        assert errors[0].startswith("runfleet: error: ") and str(broken) in errors[0]
        assert "not a SQLite database" in errors[0]
        assert str(stranger) in errors[1] and "no 'metrics' table" in errors[1]
        assert "project 'broken': nothing imported" in proc.stdout
        expected = "imported 2 run(s)" if attempt == 0 else "imported 0 run(s)"
        assert f"project 'alpha': {expected}" in proc.stdout
    assert_home_imported(home, store)


def test_home_python_api(trackio_home, tmp_path):
    from runfleet.importers.trackio import import_trackio_home

    store = open_store(Home.resolve(tmp_path / "rf"))
    try:
        results = import_trackio_home(store, trackio_home)
        again = import_trackio_home(store, trackio_home)
    finally:
        store.close()
    assert [r.project for r in results] == ["alpha", "beta"]
    assert all(r.ok for r in results + again)
    assert [len(r.imported) for r in results] == [2, 1]
    assert [len(r.skipped) for r in again] == [2, 1] and not any(r.imported for r in again)
    assert_home_imported(tmp_path / "rf", trackio_home)


def test_home_usage_errors(trackio_home, tmp_path, capsys):
    home = str(tmp_path / "rf")
    assert main(["import", "trackio", str(trackio_home), "-p", "x", "--dir", home]) == 2
    err = capsys.readouterr().err
    assert "--project applies to a single database" in err and str(trackio_home) in err
    assert not (tmp_path / "rf").exists()  # nothing was written
    empty = tmp_path / "empty"
    (empty / "media").mkdir(parents=True)
    (empty / "x.lock").write_text("")
    assert main(["import", "trackio", str(empty), "--dir", home]) == 2
    assert "no trackio project databases" in capsys.readouterr().err
    # a single database still takes --project
    assert main(["import", "trackio", str(trackio_home / "beta.db"), "-p", "renamed",
                 "--dir", home]) == 0
    with runfleet.Api(dir=home) as api:
        assert [str(p) for p in api.projects()] == ["renamed"]


def test_imported_runs_start_before_they_finish(trackio_db, tmp_path):
    """Created is the trackio run's start (its config time), finished its last point: an
    imported run never finishes before it was created, and its history's _runtime counts
    from its own start, not from the import."""
    assert main(["import", "trackio", str(trackio_db), "--dir", str(tmp_path)]) == 0
    with runfleet.Api(dir=tmp_path) as api:
        for run in api.runs("proj"):
            points = [t for k in run.keys("all") for t in run.series(k).times.tolist()]
            assert run.finished_at is not None
            assert run.created_at <= min(points) + 1e-6, run.name
            assert max(points) == pytest.approx(run.finished_at, abs=1e-6), run.name
            assert run.history()["_runtime"].min() >= 0
        first = next(r for r in api.runs("proj") if r.name == "first")
        started = datetime.fromisoformat(first.metadata["imported_from"]["config_created_at"])
        points = [t for k in first.keys("all") for t in first.series(k).times.tolist()]
        alerts = [a["time"] for a in first.alerts()]
        # trackio may write the config after the first points: the earlier time stands
        assert first.created_at == pytest.approx(min(started.timestamp(), *points, *alerts),
                                                 abs=1e-6)
