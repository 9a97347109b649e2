"""A home written before artefacts existed (schema 3) opens, keeps its runs, and takes
artefacts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from runfleet.store.base import ArtifactFile
from runfleet.store.schema import MIGRATIONS, SCHEMA_VERSION
from runfleet.store.sqlite import SQLiteStore


def test_schema_3_database_upgrades_to_artefacts(tmp_path: Path) -> None:
    path = tmp_path / "runfleet.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for step in MIGRATIONS[:3]:
        step(conn)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO projects (id, name, created) VALUES (1, 'p', 1.0)")
    conn.execute("INSERT INTO runs (project, id, name, status, created, updated)"
                 " VALUES (1, 'r1', 'run', 'completed', 1.0, 2.0)")
    conn.execute("COMMIT")
    conn.close()
    old = SQLiteStore.open(path)  # migrates to the current schema
    try:
        run = old.find_run("p", id="r1")
        assert run is not None and run.status == "completed"  # kept by the upgrade
        version, created = old.add_artifact_version(
            "p", "m", "model", "digest", [ArtifactFile("w.bin", "ab" * 32, 3)], run=run.rid)
        assert created and version.producer is not None and version.producer.run_id == "r1"
    finally:
        old.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
    conn.close()
