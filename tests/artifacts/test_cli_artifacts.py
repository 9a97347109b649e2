"""``runfleet artifacts``: the listing, ``show``, JSON and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import runfleet
from runfleet.cli import main


@pytest.fixture
def logged(home: Path, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "w.bin").write_bytes(b"w" * 2048)
    with runfleet.init(project="p", dir=home, name="trainer") as run:
        run.log_artifact(tmp_path / "w.bin", name="weights", type="model", aliases=["best"])
        producer = run.id
    with runfleet.init(project="q", dir=home, name="evaluator") as run:
        run.use_artifact("p/weights:best")
        user = run.id
    return {"producer": producer, "user": user}


def test_listing_shows_versions_aliases_and_lineage(home: Path, logged: dict[str, str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["artifacts", "--dir", str(home)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "weights" in line)
    for cell in ("p", "v0", "latest, best", "model", "2.0 KiB", f"p/{logged['producer']}",
                 f"q/{logged['user']}"):
        assert cell in row, (cell, row)
    assert main(["artifacts", "p", "--json", "--dir", str(home)]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["version"] == "v0" and item["size"] == 2048
    assert item["logged_by"] == [f"p/{logged['producer']}"]
    assert item["used_by"] == [f"q/{logged['user']}"]
    assert [f["path"] for f in item["files"]] == ["w.bin"]


def test_show_one_version(home: Path, logged: dict[str, str],
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["artifacts", "show", "weights:best", "--dir", str(home)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("p/weights:v0  type model  2.0 KiB in 1 file(s)")
    assert f"used by:   q/{logged['user']}" in out and "w.bin  2.0 KiB  sha256:" in out


def test_errors_name_the_problem(home: Path, logged: dict[str, str],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["artifacts", "nope", "--dir", str(home)]) == 2
    assert "unknown project 'nope'" in capsys.readouterr().err
    assert main(["artifacts", "q", "--dir", str(home)]) == 0  # runs, but no artefacts
    assert capsys.readouterr().out.strip() == "no artefacts"
    assert main(["artifacts", "show", "weights:v7", "--dir", str(home)]) == 2
    assert "no version or alias 'v7' (versions: v0" in capsys.readouterr().err
    assert main(["artifacts", "show", "--dir", str(home)]) == 2
    assert "usage: runfleet artifacts show" in capsys.readouterr().err
