"""The ``runfleet`` command line: help, runs, export, error handling and exit codes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import runfleet
from runfleet.cli import main
from runfleet.export import read_long
from runfleet.filters import parse_filters
from tests.conftest import subprocess_env

SUBCOMMANDS = ["runs", "export", "import", "import trackio", "import csv", "import tensorboard",
               "show", "demo", "artifacts",
               "stop", "resume", "delete", "clone"]


@pytest.fixture
def home(tmp_path):
    """Project "sweep" with three runs (lr 0.1 / 0.01 / 0.001) and project "other"."""
    for i, lr in enumerate([0.1, 0.01, 0.001]):
        runfleet.init(project="sweep", name=f"run-{i}", group="g", dir=tmp_path,
                      system_metrics=False, config={"lr": lr, "opt": "adam"}, tags=["t"])
        for step in range(3):
            runfleet.log({"loss": lr * (3 - step)})
        runfleet.log({"acc": [math.nan, math.inf, 0.5][i]})
        runfleet.finish()
    runfleet.init(project="other", name="lonely", dir=tmp_path, system_metrics=False)
    runfleet.log({"x": 1})
    runfleet.finish()
    return tmp_path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m runfleet.cli`` in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "runfleet.cli", *args], capture_output=True,
                          text=True, env=full_env, timeout=120)


def test_help_everywhere(capsys):
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    for name in ("runs", "export", "import", "show", "demo", "stop", "resume", "delete",
                 "clone"):
        assert name in top
    for sub in SUBCOMMANDS:
        assert main([*sub.split(), "--help"]) == 0, sub
        assert "--dir" in capsys.readouterr().out, sub
    proc = cli("--help")
    assert proc.returncode == 0 and "usage: runfleet" in proc.stdout


def test_runs_help_documents_nan_encoding(capsys):
    main(["runs", "--help"])
    assert '"NaN"' in capsys.readouterr().out


def test_runs_json(home, capsys):
    assert main(["runs", "--dir", str(home), "--project", "sweep", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out, parse_constant=_reject)
    assert [r["name"] for r in runs] == ["run-0", "run-1", "run-2"]
    first = runs[0]
    assert set(first) == {"id", "name", "project", "status", "group", "tags", "notes",
                          "config", "summary", "parent", "created", "finished", "last_step"}
    assert first["project"] == "sweep" and first["status"] == "completed"
    assert first["group"] == "g" and first["tags"] == ["t"] and first["parent"] is None
    assert first["config"] == {"lr": 0.1, "opt": "adam"}
    assert first["last_step"] == 3
    assert isinstance(first["created"], float) and first["finished"] >= first["created"]
    assert [r["summary"]["acc"] for r in runs] == ["NaN", "Infinity", 0.5]
    assert runs[2]["summary"]["loss"] == 0.001


def test_runs_all_projects_and_dir_before_command(home, capsys):
    assert main(["--dir", str(home), "runs", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert sorted({r["project"] for r in runs}) == ["other", "sweep"]
    assert len(runs) == 4


def test_runs_filters(home, capsys):
    assert main(["runs", "--dir", str(home), "--json", "--filter", "config.lr=0.01"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["run-1"]
    assert main(["runs", "--dir", str(home), "--json", "-f", "config.lr<0.05",
                 "-f", "config.lr>=0.001"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["run-1", "run-2"]
    assert main(["runs", "--dir", str(home), "--json", "-f", "name~^run-[02]$"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["run-0", "run-2"]
    assert main(["runs", "--dir", str(home), "--json", "-f", "tags=t", "-p", "sweep"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert main(["runs", "--dir", str(home), "--json", "--status", "running"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["runs", "--dir", str(home), "--json", "--status", "completed"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4


def test_parse_filters():
    assert parse_filters(["config.lr=1e-3", "config.opt=adam", "summary.acc>=0.9",
                          "summary.acc<1", "config.flag=true"]) == {
        "config.lr": 0.001, "config.opt": "adam", "summary.acc": {"$gte": 0.9, "$lt": 1},
        "config.flag": True}


def test_bad_filters_are_usage_errors(home, capsys):
    assert main(["runs", "--dir", str(home), "-f", "no-operator"]) == 2
    assert "bad --filter" in capsys.readouterr().err
    assert main(["runs", "--dir", str(home), "-f", "bogus.x=1"]) == 2
    assert "unknown run field" in capsys.readouterr().err


def test_runs_table(home):
    proc = cli("runs", "--dir", str(home))
    assert proc.returncode == 0, proc.stderr
    for text in ("run-0", "run-1", "run-2", "lonely", "sweep", "other", "completed", "lr",
                 "0.001", "loss", "acc"):
        assert text in proc.stdout, text


def test_runfleet_dir_environment_variable(home):
    proc = cli("runs", "--json", env={"RUNFLEET_DIR": str(home)})
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 4


def test_unknown_project_exits_2_without_traceback(home):
    proc = cli("runs", "--dir", str(home), "--project", "nope")
    assert proc.returncode == 2
    assert "unknown project 'nope'" in proc.stderr and "sweep" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli("export", "--dir", str(home), "--project", "nope")
    assert proc.returncode == 2 and "unknown project" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_home_is_a_usage_error(tmp_path):
    proc = cli("runs", "--dir", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and "no runfleet database" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "nowhere").exists()  # reading never creates a home


def test_corrupt_home_database_fails_with_store_error(tmp_path):
    (tmp_path / "runfleet.db").write_bytes(b"this is not sqlite at all" * 100)
    for args in (["runs"], ["export", "-p", "x"]):
        proc = cli(*args, "--dir", str(tmp_path))
        assert proc.returncode == 1, args
        assert "not a SQLite database" in proc.stderr and "Traceback" not in proc.stderr
    csv_file = tmp_path / "m.csv"
    csv_file.write_text("step,loss\n0,1.0\n")
    proc = cli("import", "csv", str(csv_file), "-p", "x", "--dir", str(tmp_path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_control_verbs_write_ops_and_explain_without_a_controller(home, capsys):
    from runfleet.home import EXPERIMENT_MARKER, Home
    from runfleet.store.base import OpStatus
    from runfleet.tracking.homes import get

    runs = runfleet.Api(home).runs("sweep")
    rid = runs[0].id
    # "sweep" as an experiment whose controller is not running (a plain tracked run takes
    # no ops: tests/test_cli_delete.py)
    marker = Home.resolve(home).experiments_dir / "sweep" / EXPERIMENT_MARKER
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    assert main(["stop", rid, "--dir", str(home)]) == 0
    assert "pending: no controller is running experiment 'sweep'" in capsys.readouterr().out
    assert main(["clone", rid, "--dir", str(home), "--set", "lr=0.5", "--set",
                 "tags=[1, 2]", "--warm"]) == 0
    ops = get(Home.resolve(home)).store.ops("sweep")
    assert [(o.kind, o.run, o.source, o.status) for o in ops] == [
        ("stop", rid, "cli", OpStatus.PENDING), ("clone", rid, "cli", OpStatus.PENDING)]
    assert ops[1].args == {"changes": {"lr": 0.5, "tags": [1, 2]}, "warm_start": True}
    assert main(["stop", "no-such-run", "--dir", str(home)]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err
    assert main(["clone", rid, "--dir", str(home), "--set", "oops"]) == 2
    assert "--set needs KEY=VALUE" in capsys.readouterr().err


def test_usage_errors(home, capsys):
    assert main([]) == 2
    assert main(["export", "--dir", str(home)]) == 2  # --project is required
    assert main(["export", "--dir", str(home), "-p", "sweep", "--format", "xml"]) == 2
    assert main(["export", "--dir", str(home), "-p", "sweep", "--format", "parquet"]) == 2
    assert "needs a file" in capsys.readouterr().err
    assert main(["export", "--dir", str(home), "-p", "sweep", "--run", "nope"]) == 2
    assert "no run with id or name 'nope'" in capsys.readouterr().err
    assert main(["export", "--dir", str(home), "-p", "sweep",
                 "-o", str(home / "missing" / "x.csv")]) == 2
    assert main(["import"]) == 2


def test_export_stdout_and_file(home, tmp_path, capsys):
    assert main(["export", "--dir", str(home), "-p", "sweep"]) == 0
    stdout_csv = capsys.readouterr().out
    out = tmp_path / "sweep.csv"
    assert main(["export", "--dir", str(home), "-p", "sweep", "-o", str(out)]) == 0
    rows = len(read_long(out, meta=True))  # 12 points and each run's config, summary, fields
    assert f"wrote {rows} row(s)" in capsys.readouterr().err and rows > 12
    assert out.read_text(encoding="utf-8") == stdout_csv
    frame = read_long(out)
    assert len(frame) == 12 and set(frame["key"]) == {"loss", "acc"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_formats_from_cli(home, tmp_path, fmt):
    out = tmp_path / f"x.{fmt}"
    proc = cli("export", "--dir", str(home), "-p", "sweep", "--run", "run-2", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    frame = read_long(out)
    assert frame["run_name"].unique().tolist() == ["run-2"]
    acc = frame[frame.key == "acc"]["value"].tolist()
    loss = frame[frame.key == "loss"]["value"].tolist()
    assert acc == [0.5] and loss == [0.001 * 3, 0.001 * 2, 0.001 * 1]


def test_export_wide_to_stdout(home, capsys):
    assert main(["export", "--dir", str(home), "-p", "sweep", "--wide", "-F", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 12
    assert [r.get("acc") for r in rows if r["_step"] == 3] == ["NaN", "Infinity", 0.5]


def _reject(token: str) -> None:
    raise AssertionError(f"invalid JSON constant {token}")


def test_module_entry_point_exists():
    # runfleet.cli is a package: ``python -m runfleet.cli`` runs its __main__ module
    package = Path(sys.modules["runfleet.cli"].__file__ or "").parent
    assert "main()" in (package / "__main__.py").read_text(encoding="utf-8")


def test_wide_export_key_clash_is_a_usage_error(tmp_path, capsys):
    runfleet.init(project="c", dir=tmp_path, system_metrics=False)
    runfleet.log({"_step": 1.0})
    runfleet.finish()
    assert main(["export", "--dir", str(tmp_path), "-p", "c", "--wide"]) == 2
    assert "clash" in capsys.readouterr().err
    assert main(["export", "--dir", str(tmp_path), "-p", "c"]) == 0
    assert ",_step,0," in capsys.readouterr().out


def test_export_of_a_database_damaged_in_the_middle_fails_with_one_message(tmp_path):
    import random

    from runfleet.tracking import homes

    rng = random.Random(0)
    for r in range(4):
        runfleet.init(project="p", id=f"r{r}", dir=tmp_path, system_metrics=False)
        for _ in range(3000):
            runfleet.log({"a": rng.random(), "b": rng.random(), "t": "x" * 10})
        runfleet.finish()
    homes.close_all()  # no connection of this process is open: the file may be edited
    db = tmp_path / "runfleet.db"
    assert not (tmp_path / "runfleet.db-wal").exists()
    pages = db.stat().st_size // 4096
    assert pages > 40
    with open(db, "r+b") as fh:  # overwrite a few pages in the middle; the header is intact
        fh.seek((pages // 2 - 3) * 4096)
        fh.write(bytes(6 * 4096))
    out = tmp_path / "out.csv"
    for args in (["-o", str(out)], ["-F", "jsonl"], ["-o", str(tmp_path / "out.parquet")]):
        proc = cli("export", "-p", "p", "--dir", str(tmp_path), *args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("runfleet: error: "), proc.stderr
        assert str(db) in lines[0] and "damaged" in lines[0] and ".recover" in lines[0]
    assert not out.exists()  # a half-written export is not left behind


def test_runs_table_escapes_a_stored_lone_surrogate(tmp_path: Path) -> None:
    """A value the tracker refuses today may be in an older home: the listing still prints."""
    from runfleet.store.sqlite import SQLiteStore

    home = tmp_path / "home"
    home.mkdir()
    store = SQLiteStore.open(home / "runfleet.db")
    store.create_run("odd", "run1", "plain", config={"note": "x\udc80y"})
    store.close()
    out = subprocess.run([sys.executable, "-m", "runfleet", "runs", "--project", "odd", "--dir",
                          str(home)], capture_output=True, text=True, env=subprocess_env())
    assert out.returncode == 0, out.stderr
    assert "x\\udc80y" in out.stdout
