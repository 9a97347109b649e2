"""``runfleet delete``, ``restore`` and ``gc`` on plain tracked runs (runs of an experiment
keep going through their controller: tests/engine/test_control.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import runfleet
from runfleet.api import Api
from runfleet.cli import main


@pytest.fixture
def two_runs(home: Path) -> tuple[str, str]:
    ids = []
    for name in ("a", "b"):
        run = runfleet.init(project="p", name=name, dir=home, config={"lr": 0.1})
        run.log({"loss": 1.0})
        run.log({"img": runfleet.Image(np.zeros((2, 2, 3), dtype=np.uint8))})
        run.finish()
        ids.append(run.id)
    return ids[0], ids[1]


def _listed(home: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[str]:
    capsys.readouterr()
    assert main(["runs", "--dir", str(home), "--json", *extra]) == 0
    return [r["id"] for r in json.loads(capsys.readouterr().out)]


def test_delete_restore_and_gc_a_tracked_run(home: Path, two_runs: tuple[str, str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    keep, gone = two_runs
    assert main(["delete", gone, "--dir", str(home)]) == 0
    out = capsys.readouterr().out
    assert f"deleted run {gone}" in out and "runfleet restore" in out and "pending" not in out
    assert _listed(home, capsys) == [keep]
    assert _listed(home, capsys, "--status", "deleted") == [gone]
    assert main(["delete", gone, "--dir", str(home)]) == 1
    assert "already deleted" in capsys.readouterr().err
    assert main(["restore", "b", "--project", "p", "--dir", str(home)]) == 0  # by name
    assert "restored" in capsys.readouterr().out
    assert _listed(home, capsys) == [keep, gone]
    assert main(["restore", gone, "--dir", str(home)]) == 1
    assert "is not deleted" in capsys.readouterr().err

    assert main(["delete", gone, "--dir", str(home)]) == 0
    with Api(home) as api:
        media = [home / m.path for m in api.store.media(api.run("p", gone).rid)]
    assert media and all(p.is_file() for p in media)
    assert main(["gc", "--dir", str(home), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would purge p/{gone} (b)" in out and all(p.is_file() for p in media)
    assert main(["gc", "--dir", str(home)]) == 0
    assert f"purged p/{gone}" in capsys.readouterr().out
    assert not any(p.exists() for p in media)
    assert _listed(home, capsys, "--status", "deleted") == []
    assert main(["restore", gone, "--dir", str(home)]) == 2  # purged: no such run
    assert "no run" in capsys.readouterr().err
    assert _listed(home, capsys) == [keep]


def test_delete_purge_at_once_and_other_ops_on_tracked_runs(
        home: Path, two_runs: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    keep, gone = two_runs
    assert main(["delete", gone, "--purge", "--dir", str(home)]) == 0
    assert "deleted and purged" in capsys.readouterr().out
    assert _listed(home, capsys, "--status", "deleted") == []
    for op in ("stop", "resume"):
        assert main([op, keep, "--dir", str(home)]) == 2
        assert "belongs to no experiment" in capsys.readouterr().err
    assert main(["gc", "--project", "nope", "--dir", str(home)]) == 2


def test_help_of_the_new_commands(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd, words in (("restore", "gets back the status"), ("gc", "Purge every deleted run"),
                       ("delete", "runfleet gc")):
        assert main([cmd, "--help"]) == 0
        assert words in " ".join(capsys.readouterr().out.split())
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    assert "restore" in top and "gc" in top
