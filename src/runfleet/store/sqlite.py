"""The SQLite store: one WAL database per home, shared by any number of processes."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from runfleet.errors import RunNotFoundError, StoreError
from runfleet.store import codec
from runfleet.store.base import (
    AlertRow,
    BlockedSeries,
    Blocks,
    KeyInfo,
    MediaRow,
    OpKind,
    OpRecord,
    OpStatus,
    ProjectRecord,
    RunRecord,
    RunState,
    RunStatus,
    Series,
    SeriesChunk,
    SeriesExtent,
    Store,
    StoreBusyError,
    WriteBatch,
)
from runfleet.store.schema import migrate

# Keys under this prefix (system metrics) are indexed by sample, not by training step.
SYSTEM_PREFIX = "system/"
# Points per segment: large enough that per-row overhead vanishes, small enough that a
# zoomed chart decodes little more than it shows and the open tail is cheap to rewrite.
SEGMENT_POINTS = 4096
BUSY_TIMEOUT_S = 5.0

_JSON_COLUMNS = {"config", "summary", "tags", "metadata"}
_RUN_COLUMNS = {
    "status", "config", "summary", "tags", "notes", "grp", "metadata", "heartbeat",
    "finished", "name", "parent", "parent_step", "updated",
}
_OP_SELECT = ("SELECT id, project, kind, run, args, source, actor, status, reason, result,"
              " created, applied FROM ops")
_RUN_SELECT = (
    "SELECT r.rid, p.name, r.id, r.name, r.grp, r.status, r.config, r.summary, r.tags, "
    "r.notes, r.parent, r.parent_step, r.metadata, r.created, r.updated, r.heartbeat, "
    "r.finished, r.last_step FROM runs r JOIN projects p ON p.id = r.project"
)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=True, default=str)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


def _op_from_row(row: tuple[Any, ...]) -> OpRecord:
    return OpRecord(id=row[0], project=row[1], kind=OpKind(row[2]), run=row[3],
                    args=json.loads(row[4]),
                    source=row[5], actor=row[6], status=OpStatus(row[7]), reason=row[8],
                    result=json.loads(row[9]), created=row[10], applied=row[11])


def _run_from_row(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        rid=row[0], project=row[1], id=row[2], name=row[3], group=row[4],
        status=RunStatus(row[5]),
        config=json.loads(row[6]), summary=json.loads(row[7]), tags=json.loads(row[8]),
        notes=row[9], parent=row[10], parent_step=row[11], metadata=json.loads(row[12]),
        created=row[13], updated=row[14], heartbeat=row[15], finished=row[16],
        last_step=row[17],
    )


@dataclass
class _OpenSegment:
    """The last, not yet full segment of a series this process is appending to."""

    id: int
    steps: npt.NDArray[np.int64]
    times: npt.NDArray[np.float64]
    values: Any


def check_database_file(path: Path) -> None:
    """Raise :class:`StoreError` if ``path`` is a directory.

    The file's content is checked by SQLite itself when it is opened (see
    :meth:`SQLiteStore.open`), never by opening it from Python: closing any file descriptor
    of a SQLite file drops every POSIX lock this process holds on it, including those of
    other open connections, which lets another process reset the shared WAL index under
    them (SQLite's "disk I/O error").
    """
    if path.is_dir():
        raise StoreError(f"{path} is a directory, expected the runfleet database file")


class SQLiteStore(Store):
    """:class:`Store` on one SQLite file in WAL mode.

    Example:
        >>> store = SQLiteStore.open(Path("/tmp/rf-doc") / "runfleet.db")
        >>> store.close()
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.lock = threading.RLock()
        self._key_ids: dict[str, int] = {}
        self._open: dict[tuple[int, int, str], _OpenSegment] = {}
        self._db_id = ""

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False,
             max_pages: int | None = None) -> SQLiteStore:
        """Open (creating and migrating when needed) the database at ``path``.

        ``max_pages`` caps the database size (SQLite pages of 4 KiB): writes past it fail
        like a full disk, and the tracker spills them to files until room is made.
        """
        check_database_file(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                check_same_thread=False,
            )
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open runfleet database {path}: {exc}") from exc
        try:
            cls._configure(conn)
            migrate(conn, str(path))
            if read_only:
                conn.execute("PRAGMA query_only = ON")
            if max_pages is not None:
                conn.execute(f"PRAGMA max_page_count = {int(max_pages)}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
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
        store = cls(conn, path)
        store._db_id = store._read_or_make_db_id()
        return store

    @property
    def db_id(self) -> str:
        """See :attr:`Store.db_id`."""
        return self._db_id

    def _read_or_make_db_id(self) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'db_id'").fetchone()
        if row is not None:
            return str(row[0])

        def body() -> str:
            self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('db_id', ?)",
                               (uuid.uuid4().hex,))
            return str(self._conn.execute(
                "SELECT value FROM meta WHERE key = 'db_id'").fetchone()[0])

        try:
            return str(self._run_in_transaction(body))
        except (StoreBusyError, sqlite3.OperationalError):
            return ""  # read-only or locked: spills cannot be matched, so none replay here

    @staticmethod
    def _configure(conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":  # switching needs a write; skip it when already set
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not enable WAL (journal_mode={mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL when the last one closes)."""
        with self.lock:
            self._conn.close()

    # -- transactions ---------------------------------------------------------------------
    def _begin(self) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise StoreBusyError(str(exc)) from exc
            raise

    def _commit_or_rollback(self, ok: bool) -> None:
        if ok:
            try:
                self._conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if _is_busy(exc):
                    raise StoreBusyError(str(exc)) from exc
                raise
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _run_in_transaction(self, fn: Any) -> Any:
        with self.lock:
            self._begin()
            ok = False
            try:
                result = fn()
                ok = True
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise StoreBusyError(str(exc)) from exc
                raise
            finally:
                self._commit_or_rollback(ok)
            return result

    # -- projects and runs ----------------------------------------------------------------
    def _project_id(self, name: str, create: bool) -> int | None:
        row = self._conn.execute("SELECT id FROM projects WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        cur = self._conn.execute(
            "INSERT INTO projects (name, created) VALUES (?, ?)", (name, time.time())
        )
        return int(cur.lastrowid or 0)

    def create_run(
        self,
        project: str,
        id: str,
        name: str,
        *,
        group: str | None = None,
        config: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        notes: str | None = None,
        parent: str | None = None,
        parent_step: int | None = None,
        metadata: dict[str, Any] | None = None,
        status: str = RunStatus.RUNNING,
    ) -> RunRecord:
        """See :meth:`Store.create_run`."""

        def body() -> int:
            pid = self._project_id(project, create=True)
            exists = self._conn.execute(
                "SELECT 1 FROM runs WHERE project = ? AND id = ?", (pid, id)
            ).fetchone()
            if exists:
                raise ValueError(f"run id {id!r} already exists in project {project!r}")
            now = time.time()
            cur = self._conn.execute(
                "INSERT INTO runs (project, id, name, grp, status, config, tags, notes, parent,"
                " parent_step, metadata, created, updated, heartbeat)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (pid, id, name, group, status, _dumps(config or {}), _dumps(tags or []),
                 notes, parent, parent_step, _dumps(metadata or {}), now, now, now),
            )
            return int(cur.lastrowid or 0)

        rid = self._run_in_transaction(body)
        return self.get_run(rid)

    def find_run(self, project: str, *, id: str | None = None, name: str | None = None
                 ) -> RunRecord | None:
        """See :meth:`Store.find_run`."""
        with self.lock:
            if id is not None:
                row = self._conn.execute(
                    _RUN_SELECT + " WHERE p.name = ? AND r.id = ?", (project, id)
                ).fetchone()
            elif name is not None:
                row = self._conn.execute(
                    _RUN_SELECT + " WHERE p.name = ? AND r.name = ? ORDER BY r.rid DESC LIMIT 1",
                    (project, name),
                ).fetchone()
            else:
                raise ValueError("find_run needs an id or a name")
        return _run_from_row(row) if row else None

    def get_run(self, rid: int) -> RunRecord:
        """See :meth:`Store.get_run`."""
        with self.lock:
            row = self._conn.execute(_RUN_SELECT + " WHERE r.rid = ?", (rid,)).fetchone()
        if row is None:
            raise RunNotFoundError(f"no run with internal id {rid}")
        return _run_from_row(row)

    def update_run(self, rid: int, **fields: Any) -> None:
        """See :meth:`Store.update_run`."""
        self._run_in_transaction(lambda: self._update_run(rid, fields))

    def _update_run(self, rid: int, fields: dict[str, Any]) -> None:
        unknown = set(fields) - _RUN_COLUMNS
        if unknown:
            raise ValueError(f"cannot update run columns {sorted(unknown)}")
        fields = dict(fields)
        fields.setdefault("updated", time.time())
        cols = ", ".join(f"{k} = ?" for k in fields)
        vals = [_dumps(v) if k in _JSON_COLUMNS else v for k, v in fields.items()]
        self._conn.execute(f"UPDATE runs SET {cols} WHERE rid = ?", [*vals, rid])

    def projects(self) -> list[ProjectRecord]:
        """See :meth:`Store.projects`."""
        with self.lock:
            rows = self._conn.execute(
                "SELECT p.name, p.created, COUNT(r.rid), MAX(r.updated) FROM projects p"
                " LEFT JOIN runs r ON r.project = p.id GROUP BY p.id ORDER BY p.id"
            ).fetchall()
        return [ProjectRecord(name=r[0], created=r[1], run_count=r[2], last_updated=r[3])
                for r in rows]

    def runs(self, project: str) -> list[RunRecord]:
        """See :meth:`Store.runs`."""
        with self.lock:
            if self._project_id(project, create=False) is None:
                known = [p.name for p in self.projects()]
                raise ValueError(
                    f"unknown project {project!r} in {self.path.parent}; "
                    f"known projects: {known or 'none'}"
                )
            rows = self._conn.execute(
                _RUN_SELECT + " WHERE p.name = ? ORDER BY r.rid", (project,)
            ).fetchall()
        return [_run_from_row(r) for r in rows]

    # -- points -----------------------------------------------------------------------------
    def _key_id(self, name: str) -> int:
        kid = self._key_ids.get(name)
        if kid is None:
            self._conn.execute("INSERT OR IGNORE INTO metric_keys (name) VALUES (?)", (name,))
            kid = int(self._conn.execute(
                "SELECT id FROM metric_keys WHERE name = ?", (name,)).fetchone()[0])
            self._key_ids[name] = kid
        return kid

    def write(self, batch: WriteBatch) -> None:
        """See :meth:`Store.write`."""
        if batch.is_empty() and batch.spill_name is None:
            return
        pending_open: dict[tuple[int, int, str], _OpenSegment | None] = {}
        key_ids_before = dict(self._key_ids)

        def body() -> None:
            if batch.spill_name is not None:
                if self._conn.execute("SELECT 1 FROM replayed_spills WHERE name = ?",
                                      (batch.spill_name,)).fetchone():
                    return
                self._conn.execute("INSERT INTO replayed_spills (name, time) VALUES (?, ?)",
                                   (batch.spill_name, time.time()))
            last_steps: dict[int, int] = {}
            for chunk in batch.series:
                if len(chunk.steps) == 0:
                    continue
                self._write_chunk(chunk, pending_open)
                if chunk.key.startswith(SYSTEM_PREFIX):
                    continue  # system samples count their own steps: not the run's step
                top = int(np.max(chunk.steps))
                last_steps[chunk.run] = max(last_steps.get(chunk.run, -1), top)
            for run, step in last_steps.items():
                self._conn.execute(
                    "UPDATE runs SET last_step = MAX(last_step, ?) WHERE rid = ?", (step, run))
            for m in batch.media:
                self._conn.execute(
                    "INSERT INTO media (run, key, step, type, path, meta, time)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (m.run, m.key, m.step, m.type, m.path, _dumps(m.meta), m.time))
            for a in batch.alerts:
                self._conn.execute(
                    "INSERT INTO alerts (run, title, text, level, step, time)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (a.run, a.title, a.text, a.level, a.step, a.time))
            for rid, fields in batch.run_updates.items():
                # A replayed batch keeps its own time, so newer updates are recognisable.
                self._update_run(rid, {"updated": batch.created, **fields})

        try:
            self._run_in_transaction(body)
        except BaseException:
            self._key_ids = key_ids_before  # ids of keys inserted by the rolled-back txn
            raise
        for k, seg in pending_open.items():
            if seg is None:
                self._open.pop(k, None)
            else:
                self._open[k] = seg

    def _write_chunk(self, chunk: SeriesChunk,
                     pending_open: dict[tuple[int, int, str], _OpenSegment | None]) -> None:
        kid = self._key_id(chunk.key)
        slot = (chunk.run, kid, chunk.kind)
        json_kind = chunk.kind in (codec.JSON, codec.MEDIA)
        steps = np.asarray(chunk.steps, dtype=np.int64)
        times = np.asarray(chunk.times, dtype=np.float64)
        values: Any = list(chunk.values) if json_kind else np.asarray(chunk.values)
        seg_id: int | None = None
        tail = pending_open[slot] if slot in pending_open else self._open.get(slot)
        if tail is not None and len(tail.steps) < SEGMENT_POINTS:
            seg_id = tail.id
            steps = np.concatenate([tail.steps, steps])
            times = np.concatenate([tail.times, times])
            values = (list(tail.values) + values) if json_kind else \
                np.concatenate([tail.values, values])
        new_tail: _OpenSegment | None = None
        for lo in range(0, len(steps), SEGMENT_POINTS):
            hi = min(lo + SEGMENT_POINTS, len(steps))
            s, t, v = steps[lo:hi], times[lo:hi], values[lo:hi]
            row = self._segment_row(chunk.kind, s, t, v)
            updated = 0
            if seg_id is not None:
                updated = self._conn.execute(
                    "UPDATE segments SET n = ?, step_min = ?, step_max = ?, time_min = ?,"
                    " time_max = ?, vmin = ?, vmax = ?, steps = ?, times = ?, vals = ?"
                    " WHERE id = ?", (*row, seg_id)).rowcount
                this_id = seg_id
                seg_id = None
            if not updated:  # a new segment, or the tail row was purged meanwhile
                cur = self._conn.execute(
                    "INSERT INTO segments (run, key, kind, n, step_min, step_max, time_min,"
                    " time_max, vmin, vmax, steps, times, vals)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (chunk.run, kid, chunk.kind, *row))
                this_id = int(cur.lastrowid or 0)
            self._write_summary(this_id, chunk.kind, s, t, v)
            new_tail = _OpenSegment(this_id, s, t, v) if hi - lo < SEGMENT_POINTS else None
        pending_open[slot] = new_tail

    def _write_summary(self, seg_id: int, kind: str, steps: npt.NDArray[np.int64],
                       times: npt.NDArray[np.float64], values: Any) -> None:
        """Store the block summary of a segment just written (replacing any older one)."""
        blob = codec.encode_summary(kind, steps, times, values)
        if blob is None:
            self._conn.execute("DELETE FROM segment_summaries WHERE segment = ?", (seg_id,))
        else:
            self._conn.execute("INSERT OR REPLACE INTO segment_summaries (segment, n, blocks)"
                               " VALUES (?, ?, ?)", (seg_id, len(steps), blob))

    @staticmethod
    def _segment_row(kind: str, steps: npt.NDArray[np.int64], times: npt.NDArray[np.float64],
                     values: Any) -> tuple[Any, ...]:
        vmin = vmax = None
        if kind in (codec.FLOAT, codec.INT) and len(values):
            arr = np.asarray(values, dtype=np.float64)
            finite_or_inf = arr[~np.isnan(arr)]
            if finite_or_inf.size:
                vmin, vmax = float(finite_or_inf.min()), float(finite_or_inf.max())
        return (
            len(steps), int(steps.min()), int(steps.max()), float(times.min()),
            float(times.max()), vmin, vmax, codec.encode_steps(steps),
            codec.encode_times(times), codec.encode_values(kind, values),
        )

    def keys(self, rid: int) -> list[KeyInfo]:
        """See :meth:`Store.keys`."""
        with self.lock:
            rows = self._conn.execute(
                "SELECT k.name, SUM(s.n), MIN(s.step_min), MAX(s.step_max),"
                " GROUP_CONCAT(DISTINCT s.kind) FROM segments s"
                " JOIN metric_keys k ON k.id = s.key WHERE s.run = ? GROUP BY k.name"
                " ORDER BY k.name", (rid,)).fetchall()
        return [KeyInfo(key=r[0], count=int(r[1]), step_min=int(r[2]), step_max=int(r[3]),
                        kinds=sorted(r[4].split(","))) for r in rows]

    def series(self, rid: int, key: str, start: float | None = None,
               end: float | None = None) -> Series:
        """See :meth:`Store.series`."""
        sql = ("SELECT s.kind, s.n, s.steps, s.times, s.vals FROM segments s"
               " JOIN metric_keys k ON k.id = s.key WHERE s.run = ? AND k.name = ?")
        args: list[Any] = [rid, key]
        if start is not None:
            sql += " AND s.step_max >= ?"
            args.append(start)
        if end is not None:
            sql += " AND s.step_min <= ?"
            args.append(end)
        with self.lock:
            rows = self._conn.execute(sql + " ORDER BY s.id", args).fetchall()
        return decode_segments(key, rows, start, end)

    def media(self, rid: int, key: str | None = None) -> list[MediaRow]:
        """See :meth:`Store.media`."""
        sql = "SELECT run, key, step, type, path, meta, time FROM media WHERE run = ?"
        args: list[Any] = [rid]
        if key is not None:
            sql += " AND key = ?"
            args.append(key)
        with self.lock:
            rows = self._conn.execute(sql + " ORDER BY step, id", args).fetchall()
        return [MediaRow(run=r[0], key=r[1], step=r[2], type=r[3], path=r[4],
                         meta=json.loads(r[5]), time=r[6]) for r in rows]

    def alerts(self, rid: int) -> list[AlertRow]:
        """See :meth:`Store.alerts`."""
        with self.lock:
            rows = self._conn.execute(
                "SELECT run, title, text, level, step, time FROM alerts WHERE run = ?"
                " ORDER BY time, id", (rid,)).fetchall()
        return [AlertRow(run=r[0], title=r[1], text=r[2], level=r[3], step=r[4], time=r[5])
                for r in rows]

    # -- control ops -------------------------------------------------------------------------
    def add_op(self, project: str, kind: str, run: str | None, args: dict[str, Any],
               source: str, actor: str | None = None) -> OpRecord:
        """See :meth:`Store.add_op`."""
        if kind not in tuple(OpKind):
            raise ValueError(f"unknown op {kind!r}; use one of {', '.join(tuple(OpKind))}")

        def body() -> int:
            cur = self._conn.execute(
                "INSERT INTO ops (project, kind, run, args, source, actor, status, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (project, kind, run, _dumps(args), source, actor, OpStatus.PENDING, time.time()))
            return int(cur.lastrowid or 0)

        return self.get_op(self._run_in_transaction(body))

    def ops(self, project: str, status: str | None = None, after: int = 0,
            run: str | None = None) -> list[OpRecord]:
        """See :meth:`Store.ops`."""
        sql = _OP_SELECT + " WHERE project = ? AND id > ?"
        args: list[Any] = [project, after]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if run is not None:
            sql += " AND run = ?"
            args.append(run)
        with self.lock:
            rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        return [_op_from_row(r) for r in rows]

    def get_op(self, op_id: int) -> OpRecord:
        """See :meth:`Store.get_op`."""
        with self.lock:
            row = self._conn.execute(_OP_SELECT + " WHERE id = ?", (op_id,)).fetchone()
        if row is None:
            raise KeyError(f"no op {op_id}")
        return _op_from_row(row)

    def finish_op(self, op_id: int, status: str, reason: str | None = None,
                  result: dict[str, Any] | None = None) -> None:
        """See :meth:`Store.finish_op`."""
        if status not in (OpStatus.APPLIED, OpStatus.REJECTED):
            raise ValueError(f"an op ends applied or rejected, not {status!r}")
        self._run_in_transaction(lambda: self._conn.execute(
            "UPDATE ops SET status = ?, reason = ?, result = ?, applied = ? WHERE id = ?",
            (status, reason, _dumps(result or {}), time.time(), op_id)))

    def purge_run(self, rid: int) -> None:
        """See :meth:`Store.purge_run`."""

        def body() -> None:
            for table, column in (("segments", "run"), ("media", "run"), ("alerts", "run"),
                                  ("runs", "rid")):
                self._conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (rid,))

        self._run_in_transaction(body)
        self._open = {k: v for k, v in self._open.items() if k[0] != rid}

    def is_replayed(self, spill_name: str) -> bool:
        """See :meth:`Store.is_replayed`."""
        with self.lock:
            row = self._conn.execute(
                "SELECT 1 FROM replayed_spills WHERE name = ?", (spill_name,)).fetchone()
        return row is not None

    # -- chart reads --------------------------------------------------------------------------
    def series_extents(self, rids: Sequence[int], key: str) -> dict[int, SeriesExtent]:
        """See :meth:`Store.series_extents` (one query over segment metadata, no decoding)."""
        rids = list(rids)
        out: dict[int, SeriesExtent] = {}
        for lo in range(0, len(rids), 500):  # stay below SQLite's bound-parameter limit
            part = rids[lo:lo + 500]
            marks = ",".join("?" * len(part))
            with self.lock:
                rows = self._conn.execute(
                    "SELECT s.run, SUM(s.n), MIN(s.step_min), MAX(s.step_max), MIN(s.time_min),"
                    " MAX(s.time_max) FROM segments s JOIN metric_keys k ON k.id = s.key"
                    f" WHERE k.name = ? AND s.run IN ({marks}) GROUP BY s.run",
                    [key, *part]).fetchall()
            for r in rows:
                out[int(r[0])] = SeriesExtent(int(r[1]), int(r[2]), int(r[3]), float(r[4]),
                                              float(r[5]))
        return out

    def series_blocks(self, rid: int, key: str, start: float | None = None,
                      end: float | None = None, x: str = "step",
                      coarse: bool = False) -> BlockedSeries:
        """See :meth:`Store.series_blocks`.

        With ``coarse``, segments lying wholly inside the range and carrying an up-to-date
        summary are returned as blocks; the others (range edges, text kinds, segments
        written before schema 2) are decoded into exact points.
        """
        if x not in ("step", "time"):
            raise ValueError(f"x must be 'step' or 'time', got {x!r}")
        lo_col, hi_col = ("step_min", "step_max") if x == "step" else ("time_min", "time_max")
        sql = (f"SELECT s.id, s.n, s.{lo_col}, s.{hi_col}, ss.n, ss.blocks FROM segments s"
               " JOIN metric_keys k ON k.id = s.key"
               " LEFT JOIN segment_summaries ss ON ss.segment = s.id"
               " WHERE s.run = ? AND k.name = ?")
        args: list[Any] = [rid, key]
        if start is not None:
            sql += f" AND s.{hi_col} >= ?"
            args.append(start)
        if end is not None:
            sql += f" AND s.{lo_col} <= ?"
            args.append(end)
        if not coarse:  # skip reading the summaries at all
            sql = sql.replace("ss.n, ss.blocks", "NULL, NULL")
        with self.lock:
            rows = self._conn.execute(sql + " ORDER BY s.id", args).fetchall()
        blobs: list[bytes] = []
        counts: list[int] = []
        exact_ids: list[int] = []
        for seg_id, n, lo, hi, summary_n, summary in rows:
            inside = (start is None or lo >= start) and (end is None or hi <= end)
            if coarse and inside and summary is not None and summary_n == n:
                blobs.append(summary)
                counts.append(n)
            else:
                exact_ids.append(seg_id)
        points = self._decode_ids(key, exact_ids)
        if x == "step":
            points = _clip(points, points.steps, start, end)
        else:
            points = _clip(points, points.times, start, end)
        blocks = Blocks(**codec.decode_summaries(blobs, counts)) if blobs else None
        return BlockedSeries(points, blocks)

    def _decode_ids(self, key: str, ids: list[int]) -> Series:
        rows: list[tuple[Any, ...]] = []
        for lo in range(0, len(ids), 500):
            part = ids[lo:lo + 500]
            marks = ",".join("?" * len(part))
            with self.lock:
                rows += self._conn.execute(
                    f"SELECT kind, n, steps, times, vals FROM segments WHERE id IN ({marks})"
                    " ORDER BY id", part).fetchall()
        return decode_segments(key, rows, None, None)

    def run_states(self, project: str) -> list[RunState]:
        """See :meth:`Store.run_states` (no JSON decoding: cheap enough to poll)."""
        with self.lock:
            rows = self._conn.execute(
                "SELECT r.rid, r.id, r.status, r.last_step, r.updated FROM runs r"
                " JOIN projects p ON p.id = r.project WHERE p.name = ? ORDER BY r.rid",
                (project,)).fetchall()
        return [RunState(int(r[0]), r[1], RunStatus(r[2]), int(r[3]), float(r[4])) for r in rows]

    def fill_summaries(self, limit: int = 256) -> int:
        """Compute missing block summaries (segments written before schema 2) for up to
        ``limit`` segments in one transaction; return how many were filled (0: none left)."""

        def body() -> int:
            rows = self._conn.execute(
                "SELECT s.id, s.kind, s.n, s.steps, s.times, s.vals FROM segments s"
                " LEFT JOIN segment_summaries ss ON ss.segment = s.id"
                " WHERE ss.segment IS NULL AND s.kind IN (?, ?, ?) LIMIT ?",
                (*codec.SUMMARY_KINDS, limit)).fetchall()
            for seg_id, kind, n, steps, times, vals in rows:
                self._write_summary(seg_id, kind, codec.decode_steps(steps),
                                    codec.decode_times(times),
                                    codec.decode_values(kind, vals, n))
            return len(rows)

        return int(self._run_in_transaction(body))


def _clip(s: Series, xs: npt.NDArray[Any], start: float | None, end: float | None) -> Series:
    """Keep the points of ``s`` whose ``xs`` lie in ``[start, end]``."""
    if start is None and end is None:
        return s
    keep = np.ones(len(xs), dtype=bool)
    if start is not None:
        keep &= xs >= start
    if end is not None:
        keep &= xs <= end
    return Series(s.key, s.steps[keep], s.times[keep], s.values[keep])


def decode_segments(key: str, rows: list[tuple[Any, ...]], start: float | None,
                    end: float | None) -> Series:
    """Decode segment rows (kind, n, steps, times, vals) into one step-sorted series."""
    if not rows:
        return Series(key, np.empty(0, np.int64), np.empty(0, np.float64),
                      np.empty(0, np.float64))
    steps = [codec.decode_steps(r[2]) for r in rows]
    times = [codec.decode_times(r[3]) for r in rows]
    vals = [codec.decode_values(r[0], r[4], r[1]) for r in rows]
    kinds = {r[0] for r in rows}
    if len(kinds) > 1:
        vals = [v.astype(object) for v in vals]
    s = np.concatenate(steps)
    t = np.concatenate(times)
    v = np.concatenate(vals)
    if len(s) > 1 and np.any(s[1:] < s[:-1]):
        order = np.argsort(s, kind="stable")
        s, t, v = s[order], t[order], v[order]
    if start is not None or end is not None:
        lo = 0 if start is None else int(np.searchsorted(s, start, side="left"))
        hi = len(s) if end is None else int(np.searchsorted(s, end, side="right"))
        s, t, v = s[lo:hi], t[lo:hi], v[lo:hi]
    return Series(key, s, t, v)
