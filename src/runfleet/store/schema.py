"""Versioned SQLite schema and its migrations.

The schema version lives in ``PRAGMA user_version``; ``meta('app')`` marks the file as a
runfleet database so a foreign SQLite file is never written to. Migrations run once, when a
store is opened, inside one ``BEGIN IMMEDIATE`` transaction, never on the write path.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable

from runfleet.errors import StoreError

APP_ID = "runfleet"

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE runs (
    rid INTEGER PRIMARY KEY,
    project INTEGER NOT NULL REFERENCES projects(id),
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    grp TEXT,
    status TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    notes TEXT,
    parent TEXT,
    parent_step INTEGER,
    metadata TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    heartbeat REAL,
    finished REAL,
    last_step INTEGER NOT NULL DEFAULT -1,
    UNIQUE (project, id)
);
CREATE INDEX runs_by_project ON runs (project, created);
CREATE TABLE metric_keys (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE segments (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL,
    key INTEGER NOT NULL,
    kind TEXT NOT NULL,
    n INTEGER NOT NULL,
    step_min INTEGER NOT NULL,
    step_max INTEGER NOT NULL,
    time_min REAL NOT NULL,
    time_max REAL NOT NULL,
    vmin REAL,
    vmax REAL,
    steps BLOB NOT NULL,
    times BLOB NOT NULL,
    vals BLOB NOT NULL
);
CREATE INDEX segments_by_series ON segments (run, key, step_min);
CREATE TABLE media (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL,
    key TEXT NOT NULL,
    step INTEGER NOT NULL,
    type TEXT NOT NULL,
    path TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    time REAL NOT NULL
);
CREATE INDEX media_by_run ON media (run, key, step);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    level TEXT NOT NULL,
    step INTEGER,
    time REAL NOT NULL
);
CREATE INDEX alerts_by_run ON alerts (run, time);
CREATE TABLE replayed_spills (name TEXT PRIMARY KEY, time REAL NOT NULL);
"""


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    # One statement at a time: executescript() would COMMIT the migration transaction.
    for statement in _V1.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('app', ?), ('created', ?), ('db_id', ?)",
        (APP_ID, repr(time.time()), uuid.uuid4().hex),
    )


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    # Block summaries of segments (see ``codec.encode_summary``) for fast chart queries. A
    # table of their own, not a column of ``segments``: SQLite reads a row's columns in
    # order through its overflow pages, so a summary stored after the point blobs would
    # cost as much to read as the points. Segments written before this version have no row
    # and are decoded instead until ``SQLiteStore.fill_summaries`` fills them in.
    conn.execute("CREATE TABLE segment_summaries (segment INTEGER PRIMARY KEY,"
                 " n INTEGER NOT NULL, blocks BLOB NOT NULL)")
    conn.execute("CREATE TRIGGER segment_summaries_follow AFTER DELETE ON segments BEGIN"
                 " DELETE FROM segment_summaries WHERE segment = old.id; END")


def _migrate_to_3(conn: sqlite3.Connection) -> None:
    # Control ops (stop, resume, delete, clone) as rows: an audit trail that outlives the
    # controller, applied in id order, each ending applied or rejected with a reason.
    conn.execute("CREATE TABLE ops (id INTEGER PRIMARY KEY, project TEXT NOT NULL,"
                 " kind TEXT NOT NULL, run TEXT, args TEXT NOT NULL DEFAULT '{}',"
                 " source TEXT NOT NULL, actor TEXT, status TEXT NOT NULL, reason TEXT,"
                 " result TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL, applied REAL)")
    conn.execute("CREATE INDEX ops_by_project ON ops (project, status, id)")


def _migrate_to_4(conn: sqlite3.Connection) -> None:
    # Artefacts: one row per version (its file manifest as JSON; the files themselves live
    # once each in the home's content-addressed folder), aliases pointing at versions, and
    # lineage links (which runs logged or used a version). A link keeps the run's project and
    # id as text after the run is purged (``run`` becomes NULL), so rowid reuse never makes
    # a new run inherit an old one's artefacts.
    conn.execute("CREATE TABLE artifact_versions (id INTEGER PRIMARY KEY,"
                 " project TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,"
                 " type TEXT NOT NULL, digest TEXT NOT NULL, manifest TEXT NOT NULL,"
                 " size INTEGER NOT NULL, description TEXT,"
                 " metadata TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL,"
                 " UNIQUE (project, name, version), UNIQUE (project, name, digest))")
    conn.execute("CREATE TABLE artifact_aliases (project TEXT NOT NULL, name TEXT NOT NULL,"
                 " alias TEXT NOT NULL, version INTEGER NOT NULL"
                 " REFERENCES artifact_versions(id) ON DELETE CASCADE,"
                 " PRIMARY KEY (project, name, alias))")
    conn.execute("CREATE TABLE artifact_links (id INTEGER PRIMARY KEY, version INTEGER NOT NULL"
                 " REFERENCES artifact_versions(id) ON DELETE CASCADE, run INTEGER,"
                 " run_project TEXT NOT NULL, run_id TEXT NOT NULL, role TEXT NOT NULL,"
                 " time REAL NOT NULL)")
    conn.execute("CREATE INDEX artifact_links_by_version ON artifact_links (version)")
    conn.execute("CREATE INDEX artifact_links_by_run ON artifact_links (run)")


# Index i holds the step from version i to version i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_1, _migrate_to_2,
                                                          _migrate_to_3, _migrate_to_4]
SCHEMA_VERSION = len(MIGRATIONS)


def _user_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return [r[0] for r in rows]


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the database at ``conn`` to :data:`SCHEMA_VERSION`; return the version found.

    Raises :class:`StoreError` for a database of another program or of a newer runfleet.
    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == SCHEMA_VERSION:
        _check_app(conn, path)
        return version
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer runfleet (schema {version}, this one knows "
            f"{SCHEMA_VERSION}); upgrade runfleet to read it"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated meanwhile.
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == 0 and _user_tables(conn):
            raise StoreError(
                f"{path} is a SQLite database of another program (tables: "
                f"{', '.join(sorted(_user_tables(conn))[:5])}); runfleet will not write to it. "
                f"Move it away or choose another home with dir= or RUNFLEET_DIR"
            )
        if version > 0:
            _check_app(conn, path)
        for step in MIGRATIONS[version:]:
            step(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def _check_app(conn: sqlite3.Connection, path: str) -> None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'app'").fetchone()
    except sqlite3.OperationalError:
        row = None
    if row is None or row[0] != APP_ID:
        raise StoreError(
            f"{path} is a SQLite database of another program (no runfleet marker); "
            f"runfleet will not write to it"
        )
