"""Shared fixtures: every test gets its own home directory and a clean tracker state."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runfleet.tracking import homes, session

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_tracker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("RUNFLEET_SYSTEM_METRICS", "0")
    monkeypatch.setenv("RUNFLEET_DIR", str(tmp_path / "default-home"))
    yield
    run = session.active_run()
    if run is not None:
        run.finish()
    homes.close_all()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh home directory for the test."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child Python processes: this checkout's src on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("RUNFLEET_SYSTEM_METRICS", "0")
    env.update(extra)
    return env


PYTHON = sys.executable
