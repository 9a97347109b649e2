"""The ``projects`` and ``runs`` tables: create, find, read and update runs, list projects
and run states, delete a run's row."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from runfleet.errors import RunNotFoundError
from runfleet.store.base import ProjectRecord, RunRecord, RunState, RunStatus
from runfleet.store.sqlite.connection import Db, Row, dumps

# Columns stored as JSON text, and those update_run may set.
JSON_COLUMNS = frozenset({"config", "summary", "tags", "metadata"})
RUN_COLUMNS = frozenset({
    "status", "config", "summary", "tags", "notes", "grp", "metadata", "heartbeat",
    "finished", "name", "parent", "parent_step", "updated", "created",
})
_RUN_SELECT = (
    "SELECT r.rid, p.name, r.id, r.name, r.grp, r.status, r.config, r.summary, r.tags, "
    "r.notes, r.parent, r.parent_step, r.metadata, r.created, r.updated, r.heartbeat, "
    "r.finished, r.last_step FROM runs r JOIN projects p ON p.id = r.project"
)


def _run_from_row(row: Row) -> RunRecord:
    return RunRecord(
        rid=row[0], project=row[1], id=row[2], name=row[3], group=row[4],
        status=RunStatus(row[5]),
        config=json.loads(row[6]), summary=json.loads(row[7]), tags=json.loads(row[8]),
        notes=row[9], parent=row[10], parent_step=row[11], metadata=json.loads(row[12]),
        created=row[13], updated=row[14], heartbeat=row[15], finished=row[16],
        last_step=row[17],
    )


def project_id(conn: sqlite3.Connection, name: str, create: bool) -> int | None:
    """The id of project ``name``; with ``create``, insert it when missing (else None)."""
    row = conn.execute("SELECT id FROM projects WHERE name = ?", (name,)).fetchone()
    if row is not None:
        return int(row[0])
    if not create:
        return None
    cur = conn.execute(
        "INSERT INTO projects (name, created) VALUES (?, ?)", (name, time.time())
    )
    return int(cur.lastrowid or 0)


def insert_run(
    conn: sqlite3.Connection,
    project: str,
    id: str,
    name: str,
    *,
    group: str | None,
    config: dict[str, Any] | None,
    tags: list[str] | None,
    notes: str | None,
    parent: str | None,
    parent_step: int | None,
    metadata: dict[str, Any] | None,
    status: str,
) -> int:
    """Insert a run (and its project when new) inside a transaction; return its rid.
    Raises ValueError if the project already has a run with this id."""
    rid, created = insert_run_if_absent(
        conn, project, id, name, group=group, config=config, tags=tags, notes=notes,
        parent=parent, parent_step=parent_step, metadata=metadata, status=status)
    if not created:
        raise ValueError(f"run id {id!r} already exists in project {project!r}")
    return rid


def insert_run_if_absent(
    conn: sqlite3.Connection,
    project: str,
    id: str,
    name: str,
    *,
    group: str | None,
    config: dict[str, Any] | None,
    tags: list[str] | None,
    notes: str | None,
    parent: str | None,
    parent_step: int | None,
    metadata: dict[str, Any] | None,
    status: str,
) -> tuple[int, bool]:
    """Insert a run (and its project when new) inside a transaction unless the project
    already has a run with this id; return ``(rid, created)``. The ``UNIQUE (project, id)``
    constraint decides, so concurrent callers never both create the run."""
    pid = project_id(conn, project, create=True)
    now = time.time()
    cur = conn.execute(
        "INSERT INTO runs (project, id, name, grp, status, config, tags, notes, parent,"
        " parent_step, metadata, created, updated, heartbeat)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (project, id) DO NOTHING",
        (pid, id, name, group, status, dumps(config or {}), dumps(tags or []),
         notes, parent, parent_step, dumps(metadata or {}), now, now, now),
    )
    if cur.rowcount == 1:
        return int(cur.lastrowid or 0), True
    row = conn.execute("SELECT rid FROM runs WHERE project = ? AND id = ?", (pid, id)
                       ).fetchone()
    if row is None:  # cannot happen: the insert was ignored for this very conflict
        raise RuntimeError(f"run id {id!r} of project {project!r} neither inserted nor found")
    return int(row[0]), False


def find_run(db: Db, project: str, *, id: str | None = None, name: str | None = None
             ) -> RunRecord | None:
    """The run of ``project`` with this id, or else the newest with this name."""
    if id is not None:
        row = db.fetchone(_RUN_SELECT + " WHERE p.name = ? AND r.id = ?", (project, id))
    elif name is not None:
        row = db.fetchone(
            _RUN_SELECT + " WHERE p.name = ? AND r.name = ? ORDER BY r.rid DESC LIMIT 1",
            (project, name),
        )
    else:
        raise ValueError("find_run needs an id or a name")
    return _run_from_row(row) if row else None


def get_run(db: Db, rid: int) -> RunRecord:
    """The run with internal id ``rid``; :class:`RunNotFoundError` if there is none."""
    row = db.fetchone(_RUN_SELECT + " WHERE r.rid = ?", (rid,))
    if row is None:
        raise RunNotFoundError(f"no run with internal id {rid}")
    return _run_from_row(row)


def update_run(conn: sqlite3.Connection, rid: int, fields: dict[str, Any]) -> None:
    """Set columns of run ``rid`` inside a transaction (JSON columns encoded; ``updated``
    defaults to now). Raises ValueError for a column not in :data:`RUN_COLUMNS`."""
    unknown = set(fields) - RUN_COLUMNS
    if unknown:
        raise ValueError(f"cannot update run columns {sorted(unknown)}")
    fields = dict(fields)
    fields.setdefault("updated", time.time())
    cols = ", ".join(f"{k} = ?" for k in fields)
    vals = [dumps(v) if k in JSON_COLUMNS else v for k, v in fields.items()]
    conn.execute(f"UPDATE runs SET {cols} WHERE rid = ?", [*vals, rid])


def update_run_if(conn: sqlite3.Connection, rid: int, expect_status: list[str],
                  fields: dict[str, Any]) -> bool:
    """Inside a transaction: set columns of run ``rid`` as :func:`update_run` does if its
    status is one of ``expect_status``; return whether it did. :class:`RunNotFoundError` if
    there is no such run."""
    row = conn.execute("SELECT status FROM runs WHERE rid = ?", (rid,)).fetchone()
    if row is None:
        raise RunNotFoundError(f"no run with internal id {rid}")
    if row[0] not in expect_status:
        return False
    update_run(conn, rid, fields)
    return True


def raise_last_step(conn: sqlite3.Connection, rid: int, step: int) -> None:
    """Raise run ``rid``'s ``last_step`` to ``step`` (never lower it)."""
    conn.execute("UPDATE runs SET last_step = MAX(last_step, ?) WHERE rid = ?", (step, rid))


def delete_run(conn: sqlite3.Connection, rid: int) -> None:
    """Delete run ``rid``'s row (its points, media and alerts are the caller's to delete
    first, in the same transaction)."""
    conn.execute("DELETE FROM runs WHERE rid = ?", (rid,))


def projects(db: Db) -> list[ProjectRecord]:
    """Every project, oldest first, with its run count and last update."""
    rows = db.fetchall(
        "SELECT p.name, p.created, COUNT(r.rid), MAX(r.updated) FROM projects p"
        " LEFT JOIN runs r ON r.project = p.id GROUP BY p.id ORDER BY p.id"
    )
    return [ProjectRecord(name=r[0], created=r[1], run_count=r[2], last_updated=r[3])
            for r in rows]


def runs(db: Db, project: str) -> list[RunRecord]:
    """The runs of ``project``, oldest first; ValueError naming the known projects if
    there is no such project."""
    with db.lock:
        if project_id(db.conn, project, create=False) is None:
            known = [p.name for p in projects(db)]
            raise ValueError(
                f"unknown project {project!r} in {db.path.parent}; "
                f"known projects: {known or 'none'}"
            )
        rows = db.fetchall(_RUN_SELECT + " WHERE p.name = ? ORDER BY r.rid", (project,))
    return [_run_from_row(r) for r in rows]


def run_states(db: Db, project: str) -> list[RunState]:
    """Id, status, last step and update time of each run of ``project`` (no JSON decoding:
    cheap enough to poll)."""
    rows = db.fetchall(
        "SELECT r.rid, r.id, r.status, r.last_step, r.updated FROM runs r"
        " JOIN projects p ON p.id = r.project WHERE p.name = ? ORDER BY r.rid",
        (project,))
    return [RunState(int(r[0]), r[1], RunStatus(r[2]), int(r[3]), float(r[4])) for r in rows]
