"""The ``media`` and ``alerts`` tables: media files and alerts logged by runs."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from runfleet.store.base import AlertRow, MediaRow
from runfleet.store.sqlite.connection import Db, dumps


def insert_media(conn: sqlite3.Connection, m: MediaRow) -> None:
    """Record a media file (already written under the home) inside a transaction."""
    conn.execute(
        "INSERT INTO media (run, key, step, type, path, meta, time)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (m.run, m.key, m.step, m.type, m.path, dumps(m.meta), m.time))


def insert_alert(conn: sqlite3.Connection, a: AlertRow) -> None:
    """Record an alert inside a transaction."""
    conn.execute(
        "INSERT INTO alerts (run, title, text, level, step, time)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (a.run, a.title, a.text, a.level, a.step, a.time))


def delete_run_events(conn: sqlite3.Connection, rid: int) -> None:
    """Delete the media rows, then the alerts, of run ``rid`` (not the media files)."""
    conn.execute("DELETE FROM media WHERE run = ?", (rid,))
    conn.execute("DELETE FROM alerts WHERE run = ?", (rid,))


def media(db: Db, rid: int, key: str | None = None) -> list[MediaRow]:
    """The media of run ``rid`` (of one ``key`` if given), by step then logging order."""
    sql = "SELECT run, key, step, type, path, meta, time FROM media WHERE run = ?"
    args: list[Any] = [rid]
    if key is not None:
        sql += " AND key = ?"
        args.append(key)
    rows = db.fetchall(sql + " ORDER BY step, id", args)
    return [MediaRow(run=r[0], key=r[1], step=r[2], type=r[3], path=r[4],
                     meta=json.loads(r[5]), time=r[6]) for r in rows]


def alerts(db: Db, rid: int) -> list[AlertRow]:
    """The alerts of run ``rid`` in the order they were raised."""
    rows = db.fetchall(
        "SELECT run, title, text, level, step, time FROM alerts WHERE run = ?"
        " ORDER BY time, id", (rid,))
    return [AlertRow(run=r[0], title=r[1], text=r[2], level=r[3], step=r[4], time=r[5])
            for r in rows]
