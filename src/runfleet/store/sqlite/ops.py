"""The ``ops`` table: control ops on runs (stop, resume, delete, clone), written pending
and finished applied or rejected by the controller."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from runfleet.store.base import OpKind, OpRecord, OpStatus
from runfleet.store.sqlite.connection import Db, Row, dumps

_OP_SELECT = ("SELECT id, project, kind, run, args, source, actor, status, reason, result,"
              " created, applied FROM ops")


def _op_from_row(row: Row) -> OpRecord:
    return OpRecord(id=row[0], project=row[1], kind=OpKind(row[2]), run=row[3],
                    args=json.loads(row[4]),
                    source=row[5], actor=row[6], status=OpStatus(row[7]), reason=row[8],
                    result=json.loads(row[9]), created=row[10], applied=row[11])


def check_kind(kind: str) -> None:
    """Raise ValueError unless ``kind`` is an :class:`OpKind`."""
    if kind not in tuple(OpKind):
        raise ValueError(f"unknown op {kind!r}; use one of {', '.join(tuple(OpKind))}")


def insert_op(conn: sqlite3.Connection, project: str, kind: str, run: str | None,
              args: dict[str, Any], source: str, actor: str | None) -> int:
    """Insert a pending op inside a transaction; return its id."""
    cur = conn.execute(
        "INSERT INTO ops (project, kind, run, args, source, actor, status, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (project, kind, run, dumps(args), source, actor, OpStatus.PENDING, time.time()))
    return int(cur.lastrowid or 0)


def ops(db: Db, project: str, status: str | None = None, after: int = 0,
        run: str | None = None) -> list[OpRecord]:
    """The ops of ``project`` with id above ``after`` (of one status and run if given),
    oldest first."""
    sql = _OP_SELECT + " WHERE project = ? AND id > ?"
    args: list[Any] = [project, after]
    if status is not None:
        sql += " AND status = ?"
        args.append(status)
    if run is not None:
        sql += " AND run = ?"
        args.append(run)
    rows = db.fetchall(sql + " ORDER BY id", args)
    return [_op_from_row(r) for r in rows]


def get_op(db: Db, op_id: int) -> OpRecord:
    """The op with this id; KeyError if there is none."""
    row = db.fetchone(_OP_SELECT + " WHERE id = ?", (op_id,))
    if row is None:
        raise KeyError(f"no op {op_id}")
    return _op_from_row(row)


def check_final_status(status: str) -> None:
    """Raise ValueError unless ``status`` ends an op (applied or rejected)."""
    if status not in (OpStatus.APPLIED, OpStatus.REJECTED):
        raise ValueError(f"an op ends applied or rejected, not {status!r}")


def finish_op(conn: sqlite3.Connection, op_id: int, status: str, reason: str | None,
              result: dict[str, Any] | None) -> None:
    """Inside a transaction, mark an op ``status`` (see :func:`check_final_status`) with
    the reason and result, at the current time."""
    conn.execute(
        "UPDATE ops SET status = ?, reason = ?, result = ?, applied = ? WHERE id = ?",
        (status, reason, dumps(result or {}), time.time(), op_id))
