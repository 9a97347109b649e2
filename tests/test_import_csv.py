"""Importing a wide CSV file as one run."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

import runfleet
from runfleet.cli import main
from runfleet.home import Home
from runfleet.importers import ImportArgumentError, ImportSourceError, SourceNotFoundError
from runfleet.importers.csv_file import import_csv
from runfleet.tracking.homes import open_store
from tests.conftest import same_value as same

CSV_TEXT = (
    "step,loss,count,note,ok,sparse\n"
    "0,0.1,1,first,true,\n"
    "1,nan,2,,false,1e308\n"
    "2,inf,3,\"with, comma\",TRUE,\n"
    "5,-inf,9223372036854775807,last,false,-0.0\n"
)


def series(home, project: str, key: str, run_name: str | None = None):
    with runfleet.Api(dir=home) as api:
        runs = api.runs(project)
        run = runs[0] if run_name is None else next(r for r in runs if r.name == run_name)
        s = run.series(key)
        return s.steps.tolist(), s.values.tolist()


def test_import_values_and_missing_cells(tmp_path, capsys):
    path = tmp_path / "metrics.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    home = tmp_path / "home"
    assert main(["import", "csv", str(path), "--project", "p", "--dir", str(home)]) == 0
    assert "imported 1 run(s), 17 point(s)" in capsys.readouterr().out
    steps, loss = series(home, "p", "loss")
    assert steps == [0, 1, 2, 5]
    assert all(same(a, b) for a, b in zip(loss, [0.1, math.nan, math.inf, -math.inf]))
    assert series(home, "p", "count") == ([0, 1, 2, 5], [1, 2, 3, 2**63 - 1])
    assert series(home, "p", "note") == ([0, 2, 5], ["first", "with, comma", "last"])
    assert series(home, "p", "ok") == ([0, 1, 2, 5], [True, False, True, False])
    sparse_steps, sparse = series(home, "p", "sparse")
    assert sparse_steps == [1, 5] and same(sparse[0], 1e308) and same(sparse[1], -0.0)
    with runfleet.Api(dir=home) as api:
        run = api.runs("p")[0]
        assert run.name == "metrics" and run.status == "completed"
        assert sorted(run.keys()) == ["count", "loss", "note", "ok", "sparse"]
        assert run.last_step == 5
        assert run.summary["note"] == "last" and math.isinf(run.summary["loss"])
        assert run.metadata["imported_from"]["format"] == "csv"


def test_row_number_as_step_and_time_column(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("time,acc\n1700000000.5,0.5\n2024-01-01T00:00:00+00:00,0.75\n")
    home = tmp_path / "home"
    assert main(["import", "csv", str(path), "-p", "q", "--run-name", "r1",
                 "--time-column", "time", "--dir", str(home)]) == 0
    with runfleet.Api(dir=home) as api:
        run = api.runs("q")[0]
        assert run.name == "r1" and run.keys() == ["acc"]
        s = run.series("acc")
        assert s.steps.tolist() == [0, 1] and s.values.tolist() == [0.5, 0.75]
        assert s.times.tolist() == [1700000000.5, 1704067200.0]


def test_explicit_step_column(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("epoch,step,val\n10,0,1\n20,1,2\n")
    home = tmp_path / "home"
    assert main(["import", "csv", str(path), "-p", "q", "--step-column", "epoch",
                 "--dir", str(home)]) == 0
    assert series(home, "q", "val") == ([10, 20], [1, 2])
    assert series(home, "q", "step") == ([10, 20], [0, 1])  # an ordinary column now


def test_double_import_is_skipped(tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text(CSV_TEXT)
    home = tmp_path / "home"
    args = ["import", "csv", str(path), "-p", "p", "--dir", str(home)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert "skipped 1" in capsys.readouterr().out
    assert main([*args, "--run-name", "again"]) == 0
    with runfleet.Api(dir=home) as api:
        assert sorted(r.name for r in api.runs("p")) == ["again", "m"]


def test_python_api_errors(tmp_path):
    store = open_store(Home.resolve(tmp_path / "home"))
    try:
        with pytest.raises(SourceNotFoundError):
            import_csv(store, tmp_path / "missing.csv", "p")
        ragged = tmp_path / "ragged.csv"
        ragged.write_text("a,b\n1,2\n1,2,3\n")
        with pytest.raises(ImportSourceError, match="line 3 has 3 cells"):
            import_csv(store, ragged, "p")
        good = tmp_path / "good.csv"
        good.write_text("a\n1\n")
        with pytest.raises(ImportArgumentError, match="'nope' is not a column"):
            import_csv(store, good, "p", step_column="nope")
        bad_step = tmp_path / "bad_step.csv"
        bad_step.write_text("step,a\n0.5,1\n")
        with pytest.raises(ImportSourceError, match="not an integer"):
            import_csv(store, bad_step, "p")
        dupes = tmp_path / "dupes.csv"
        dupes.write_text("a,a\n1,2\n")
        with pytest.raises(ImportSourceError, match="duplicate"):
            import_csv(store, dupes, "p")
    finally:
        store.close()


def test_cli_errors(tmp_path, capsys):
    home = str(tmp_path / "home")
    assert main(["import", "csv", str(tmp_path / "nope.csv"), "-p", "p", "--dir", home]) == 2
    assert "no such file" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["import", "csv", str(empty), "-p", "p", "--dir", home]) == 1
    assert "empty" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    good.write_text("a\n1\n")
    assert main(["import", "csv", str(good), "-p", "p", "--step-column", "x",
                 "--dir", home]) == 2
    assert main(["import", "csv", str(good), "--dir", home]) == 2  # --project required
    binary = tmp_path / "binary.csv"
    binary.write_bytes(os.urandom(2048) + b"\xff\xfe\x00")
    proc = subprocess.run([sys.executable, "-m", "runfleet.cli", "import", "csv",
                           str(binary), "-p", "p", "--dir", home], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "runfleet: error:" in proc.stderr
    assert "Traceback" not in proc.stderr
