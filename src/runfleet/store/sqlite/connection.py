"""The database connection: opening and validating the file, pragmas, transactions, busy
detection and the database id. Every table module reads and writes through :class:`Db`."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from runfleet.errors import StoreError
from runfleet.home import create_private_file, make_home_dir
from runfleet.store.base import StoreBusyError
from runfleet.store.schema import migrate

# How long SQLite waits for another connection's lock before raising "database is locked".
BUSY_TIMEOUT_S = 5.0

_T = TypeVar("_T")
# One result row, as sqlite3 returns it.
Row = tuple[Any, ...]


def dumps(obj: Any) -> str:
    """Encode a JSON column value (compact; NaN allowed; unknown objects as ``str``)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=True, default=str)


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """True if ``exc`` means another connection holds the lock (retry later)."""
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


def check_database_file(path: Path) -> None:
    """Raise :class:`StoreError` if ``path`` is a directory.

    The file's content is checked by SQLite itself when it is opened (see
    :func:`connect`), never by opening it from Python: closing any file descriptor
    of a SQLite file drops every POSIX lock this process holds on it, including those of
    other open connections, which lets another process reset the shared WAL index under
    them (SQLite's "disk I/O error").
    """
    if path.is_dir():
        raise StoreError(f"{path} is a directory, expected the runfleet database file")


class Db:
    """One open database: the connection, its file, and the lock that serialises this
    process's threads on it (reentrant: a transaction body may call the read helpers)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.lock = threading.RLock()

    def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """Run one query under the lock and return all its rows."""
        with self.lock:
            return self.conn.execute(sql, args).fetchall()

    def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        """Run one query under the lock and return its first row (None if none)."""
        with self.lock:
            row: Row | None = self.conn.execute(sql, args).fetchone()
            return row

    def transaction(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction under the lock: commit
        if it returns, roll back if it raises. A lock held by another connection surfaces
        as :class:`StoreBusyError`."""
        with self.lock:
            _begin(self.conn)
            ok = False
            try:
                result = fn(self.conn)
                ok = True
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    raise StoreBusyError(str(exc)) from exc
                raise
            finally:
                _commit_or_rollback(self.conn, ok)
            return result

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL when the last one closes)."""
        with self.lock:
            self.conn.close()


def _begin(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise StoreBusyError(str(exc)) from exc
        raise


def _commit_or_rollback(conn: sqlite3.Connection, ok: bool) -> None:
    if ok:
        try:
            conn.execute("COMMIT")
            return
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if is_busy(exc):
                raise StoreBusyError(str(exc)) from exc
            raise
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def connect(path: Path, *, read_only: bool = False,
            max_pages: int | None = None) -> sqlite3.Connection:
    """Open (creating and migrating when needed) the database at ``path``.

    ``max_pages`` caps the database size (SQLite pages of 4 KiB): writes past it fail
    like a full disk. A new database (and a new home folder) is created owner-only unless
    ``RUNFLEET_SHARED_HOME=1`` (see :mod:`runfleet.home`). A file that is not a runfleet
    database raises :class:`StoreError` and is left untouched; a lock held too long raises
    :class:`StoreBusyError`.
    """
    check_database_file(path)
    try:
        make_home_dir(path.parent)
        create_private_file(path)  # 0600 before SQLite first opens it (not shared homes)
        conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
            check_same_thread=False,
        )
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot open runfleet database {path}: {exc}") from exc
    try:
        _configure(conn)
        migrate(conn, str(path))
        if read_only:
            conn.execute("PRAGMA query_only = ON")
        if max_pages is not None:
            conn.execute(f"PRAGMA max_page_count = {int(max_pages)}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
            raise StoreBusyError(str(exc)) from exc
        if "not a database" in str(exc):
            raise StoreError(
                f"{path} is not a SQLite database (corrupt, or a file of another "
                f"program); runfleet will not overwrite it. Move it away or choose "
                f"another home") from exc
        raise StoreError(
            f"{path} cannot be used as a runfleet database ({exc}); "
            f"runfleet will not overwrite it"
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":  # switching needs a write; skip it when already set
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"could not enable WAL (journal_mode={mode})")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


def read_or_make_db_id(db: Db) -> str:
    """The database's id from the ``meta`` table, written now if missing; ``""`` when the
    database is read-only or locked (spill files cannot be matched to it then)."""
    row = db.conn.execute("SELECT value FROM meta WHERE key = 'db_id'").fetchone()
    if row is not None:
        return str(row[0])

    def body(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('db_id', ?)",
                     (uuid.uuid4().hex,))
        return str(conn.execute("SELECT value FROM meta WHERE key = 'db_id'").fetchone()[0])

    try:
        return db.transaction(body)
    except (StoreBusyError, sqlite3.OperationalError):
        return ""  # read-only or locked: spills cannot be matched, so none replay here
