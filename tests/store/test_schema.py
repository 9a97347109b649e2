"""Opening a home: migrations run once; corrupt, foreign or newer files are refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import runfleet
from runfleet.errors import StoreError
from runfleet.store.schema import SCHEMA_VERSION
from runfleet.store.sqlite import SQLiteStore


def test_new_database_is_wal_and_current(tmp_path: Path) -> None:
    SQLiteStore.open(tmp_path / "runfleet.db").close()
    conn = sqlite3.connect(tmp_path / "runfleet.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT value FROM meta WHERE key='app'").fetchone()[0] == "runfleet"


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    db = tmp_path / "runfleet.db"
    SQLiteStore.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO meta VALUES ('marker', 'kept')")
    conn.commit()
    conn.close()
    store = SQLiteStore.open(db)
    store.close()
    assert sqlite3.connect(db).execute(
        "SELECT value FROM meta WHERE key='marker'").fetchone() == ("kept",)


def test_corrupt_file_is_refused_and_left_untouched(home: Path) -> None:
    db = home / "runfleet.db"
    db.write_bytes(b"this is not a database at all, just some bytes" * 10)
    before = db.read_bytes()
    with pytest.raises(StoreError, match="not a SQLite database"):
        runfleet.init(project="p", dir=home)
    assert db.read_bytes() == before


def test_damaged_sqlite_file_is_refused(home: Path) -> None:
    db = home / "runfleet.db"
    SQLiteStore.open(db).close()
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # wreck the schema page
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="cannot be used as a runfleet database"):
        runfleet.Api(home)


def test_foreign_sqlite_database_is_refused(home: Path) -> None:
    db = home / "runfleet.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"another program.*customers"):
        runfleet.init(project="p", dir=home)
    assert sqlite3.connect(db).execute(
        "SELECT name FROM sqlite_master WHERE type='table'").fetchall() == [("customers",)]


def test_newer_schema_is_refused(home: Path) -> None:
    db = home / "runfleet.db"
    SQLiteStore.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer runfleet"):
        runfleet.init(project="p", dir=home)


def test_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "not-a-dir"
    target.write_text("hello")
    with pytest.raises(StoreError, match="is a file, not a directory"):
        runfleet.init(project="p", dir=target)
    assert target.read_text() == "hello"


def test_runfleet_dir_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setenv("RUNFLEET_DIR", str(tmp_path / "env-home"))
    run = runfleet.init(project="p")
    run.finish()
    assert Path(run.dir) == (tmp_path / "env-home").resolve()
    assert (tmp_path / "env-home" / "runfleet.db").exists()
