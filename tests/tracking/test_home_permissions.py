"""A home runfleet creates is private to its owner unless RUNFLEET_SHARED_HOME=1 asks for
the umask's defaults; an existing home keeps its permissions."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import runfleet
from runfleet.home import SHARED_ENV_VAR


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_home_and_database_are_owner_only(tmp_path: Path, umask_022: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SHARED_ENV_VAR, raising=False)
    home = tmp_path / "deep" / "new-home"
    run = runfleet.init(project="p", dir=home)
    assert isinstance(run, runfleet.Run)
    runfleet.log({"v": 1.0})
    run.flush()
    assert _mode(home) == 0o700
    assert _mode(home / "runfleet.db") == 0o600
    assert _mode(home / "runfleet.db-wal") == 0o600  # SQLite copies the database's mode
    assert _mode(home / "runfleet.db-shm") == 0o600
    assert _mode(tmp_path / "deep") == 0o755  # parents are not runfleet's to lock down
    runfleet.finish()


def test_the_read_api_creates_a_private_home_too(tmp_path: Path, umask_022: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SHARED_ENV_VAR, raising=False)
    with runfleet.Api(tmp_path / "api-home"):
        pass
    assert _mode(tmp_path / "api-home") == 0o700
    assert _mode(tmp_path / "api-home" / "runfleet.db") == 0o600


def test_shared_home_keeps_the_umask_defaults(tmp_path: Path, umask_022: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHARED_ENV_VAR, "1")
    home = tmp_path / "shared"
    runfleet.init(project="p", dir=home).finish()
    assert _mode(home) == 0o755
    assert _mode(home / "runfleet.db") == 0o644


def test_an_existing_home_keeps_its_permissions(tmp_path: Path, umask_022: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SHARED_ENV_VAR, raising=False)
    home = tmp_path / "existing"
    home.mkdir(mode=0o750)
    home.chmod(0o750)
    runfleet.init(project="p", dir=home).finish()
    assert _mode(home) == 0o750
    assert _mode(home / "runfleet.db") == 0o600  # the database itself is new: private
