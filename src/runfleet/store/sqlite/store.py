"""``SQLiteStore``: the :class:`Store` interface on one SQLite file, as a thin facade over
the table modules (each method takes the lock or a transaction and delegates)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from runfleet.store.base import (
    AlertRow,
    ArtifactFile,
    ArtifactRecord,
    ArtifactRole,
    BlockedSeries,
    KeyInfo,
    MediaRow,
    OpRecord,
    ProjectRecord,
    RunRecord,
    RunState,
    RunStatus,
    Series,
    SeriesExtent,
    Store,
    WriteBatch,
)
from runfleet.store.sqlite import artifacts, events, ops, runs, series, summaries
from runfleet.store.sqlite.batch import is_replayed, write_batch
from runfleet.store.sqlite.connection import Db, connect, read_or_make_db_id


class SQLiteStore(Store):
    """:class:`Store` on one SQLite file in WAL mode, shared by any number of processes.

    ``path`` is the database file; ``lock`` serialises this process's threads on the one
    connection (reentrant).

    Example:
        >>> store = SQLiteStore.open(Path("/tmp/rf-doc") / "runfleet.db")
        >>> store.close()
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._db = Db(conn, path)
        self.path = path
        self.lock = self._db.lock
        self._series = series.SeriesState()
        self._db_id = ""

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False,
             max_pages: int | None = None) -> SQLiteStore:
        """Open (creating and migrating when needed) the database at ``path``.

        ``max_pages`` caps the database size (SQLite pages of 4 KiB): writes past it fail
        like a full disk, and the tracker spills them to files until room is made.
        """
        store = cls(connect(path, read_only=read_only, max_pages=max_pages), path)
        store._db_id = read_or_make_db_id(store._db)
        return store

    @property
    def db_id(self) -> str:
        """See :attr:`Store.db_id`."""
        return self._db_id

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL when the last one closes)."""
        self._db.close()

    # -- projects and runs (runs.py) --------------------------------------------------------
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
        rid = self._db.transaction(lambda conn: runs.insert_run(
            conn, project, id, name, group=group, config=config, tags=tags, notes=notes,
            parent=parent, parent_step=parent_step, metadata=metadata, status=status))
        return self.get_run(rid)

    def create_or_get_run(
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
    ) -> tuple[RunRecord, bool]:
        """See :meth:`Store.create_or_get_run` (one ``BEGIN IMMEDIATE`` transaction; the
        ``UNIQUE (project, id)`` constraint decides who creates the run)."""
        rid, created = self._db.transaction(lambda conn: runs.insert_run_if_absent(
            conn, project, id, name, group=group, config=config, tags=tags, notes=notes,
            parent=parent, parent_step=parent_step, metadata=metadata, status=status))
        return self.get_run(rid), created

    def find_run(self, project: str, *, id: str | None = None, name: str | None = None
                 ) -> RunRecord | None:
        """See :meth:`Store.find_run`."""
        return runs.find_run(self._db, project, id=id, name=name)

    def get_run(self, rid: int) -> RunRecord:
        """See :meth:`Store.get_run`."""
        return runs.get_run(self._db, rid)

    def update_run(self, rid: int, **fields: Any) -> None:
        """See :meth:`Store.update_run`."""
        self._db.transaction(lambda conn: runs.update_run(conn, rid, fields))

    def update_run_if(self, rid: int, expect_status: Collection[str], **fields: Any) -> bool:
        """See :meth:`Store.update_run_if` (one ``BEGIN IMMEDIATE`` transaction)."""
        expected = [str(s) for s in expect_status]
        return bool(self._db.transaction(
            lambda conn: runs.update_run_if(conn, rid, expected, fields)))

    def projects(self) -> list[ProjectRecord]:
        """See :meth:`Store.projects`."""
        return runs.projects(self._db)

    def runs(self, project: str) -> list[RunRecord]:
        """See :meth:`Store.runs`."""
        return runs.runs(self._db, project)

    def run_states(self, project: str) -> list[RunState]:
        """See :meth:`Store.run_states` (no JSON decoding: cheap enough to poll)."""
        return runs.run_states(self._db, project)

    def purge_run(self, rid: int) -> None:
        """See :meth:`Store.purge_run`."""

        def body(conn: sqlite3.Connection) -> None:
            series.delete_run_segments(conn, rid)
            events.delete_run_events(conn, rid)
            artifacts.forget_run(conn, rid)
            runs.delete_run(conn, rid)

        self._db.transaction(body)
        self._series.forget_run(rid)

    # -- writes (batch.py) ------------------------------------------------------------------
    def write(self, batch: WriteBatch) -> None:
        """See :meth:`Store.write`."""
        write_batch(self._db, self._series, batch)

    def is_replayed(self, spill_name: str) -> bool:
        """See :meth:`Store.is_replayed`."""
        return is_replayed(self._db, spill_name)

    # -- points, media and alerts (series.py, events.py) ------------------------------------
    def keys(self, rid: int) -> list[KeyInfo]:
        """See :meth:`Store.keys`."""
        return series.keys(self._db, rid)

    def series(self, rid: int, key: str, start: float | None = None,
               end: float | None = None) -> Series:
        """See :meth:`Store.series`."""
        return series.series(self._db, rid, key, start, end)

    def media(self, rid: int, key: str | None = None) -> list[MediaRow]:
        """See :meth:`Store.media`."""
        return events.media(self._db, rid, key)

    def alerts(self, rid: int) -> list[AlertRow]:
        """See :meth:`Store.alerts`."""
        return events.alerts(self._db, rid)

    # -- chart reads (summaries.py) ---------------------------------------------------------
    def series_extents(self, rids: Sequence[int], key: str) -> dict[int, SeriesExtent]:
        """See :meth:`Store.series_extents` (one query over segment metadata, no decoding)."""
        return summaries.series_extents(self._db, rids, key)

    def series_blocks(self, rid: int, key: str, start: float | None = None,
                      end: float | None = None, x: str = "step",
                      coarse: bool = False) -> BlockedSeries:
        """See :meth:`Store.series_blocks`.

        With ``coarse``, segments lying wholly inside the range and carrying an up-to-date
        summary are returned as blocks; the others (range edges, text kinds, segments
        written before schema 2) are decoded into exact points.
        """
        return summaries.series_blocks(self._db, rid, key, start, end, x, coarse)

    def fill_summaries(self, limit: int = 256) -> int:
        """Compute missing block summaries (segments written before schema 2) for up to
        ``limit`` segments in one transaction; return how many were filled (0: none left)."""
        return self._db.transaction(lambda conn: summaries.fill_summaries(conn, limit))

    # -- control ops (ops.py) ---------------------------------------------------------------
    def add_op(self, project: str, kind: str, run: str | None, args: dict[str, Any],
               source: str, actor: str | None = None) -> OpRecord:
        """See :meth:`Store.add_op`."""
        ops.check_kind(kind)
        op_id = self._db.transaction(
            lambda conn: ops.insert_op(conn, project, kind, run, args, source, actor))
        return self.get_op(op_id)

    def ops(self, project: str, status: str | None = None, after: int = 0,
            run: str | None = None) -> list[OpRecord]:
        """See :meth:`Store.ops`."""
        return ops.ops(self._db, project, status, after, run)

    def get_op(self, op_id: int) -> OpRecord:
        """See :meth:`Store.get_op`."""
        return ops.get_op(self._db, op_id)

    def finish_op(self, op_id: int, status: str, reason: str | None = None,
                  result: dict[str, Any] | None = None) -> None:
        """See :meth:`Store.finish_op`."""
        ops.check_final_status(status)
        self._db.transaction(
            lambda conn: ops.finish_op(conn, op_id, status, reason, result))

    # -- artefacts (artifacts.py) -----------------------------------------------------------
    def add_artifact_version(self, project: str, name: str, type: str, digest: str,
                             files: Sequence[ArtifactFile], *, description: str | None = None,
                             metadata: dict[str, Any] | None = None,
                             aliases: Sequence[str] = (), run: int | None = None
                             ) -> tuple[ArtifactRecord, bool]:
        """See :meth:`Store.add_artifact_version`."""
        version_id, created = self._db.transaction(lambda conn: artifacts.add_version(
            conn, project, name, type, digest, files, description, metadata, aliases, run))
        return artifacts.get_version(self._db, version_id), created

    def artifact_version(self, project: str, name: str, ref: str) -> ArtifactRecord:
        """See :meth:`Store.artifact_version`."""
        return artifacts.find_version(self._db, project, name, ref)

    def artifact_versions(self, project: str | None = None,
                          name: str | None = None) -> list[ArtifactRecord]:
        """See :meth:`Store.artifact_versions`."""
        return artifacts.versions(self._db, project, name)

    def use_artifact_version(self, version_id: int, run: int) -> None:
        """See :meth:`Store.use_artifact_version`."""
        self._db.transaction(lambda conn: artifacts.use_version(conn, version_id, run))

    def run_artifacts(self, run: int) -> list[tuple[ArtifactRole, ArtifactRecord]]:
        """See :meth:`Store.run_artifacts`."""
        return artifacts.run_versions(self._db, run)

    def delete_orphaned_artifacts(self) -> list[ArtifactRecord]:
        """See :meth:`Store.delete_orphaned_artifacts`."""
        return self._db.transaction(artifacts.delete_orphans)
