"""The ``artifact_versions``, ``artifact_aliases`` and ``artifact_links`` tables: artefact
versions (their file manifests), the aliases that point at them, and their lineage."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from runfleet.errors import ArtifactNotFoundError
from runfleet.store.base import ArtifactFile, ArtifactLink, ArtifactRecord, ArtifactRole
from runfleet.store.sqlite.connection import Db, Row, dumps

LATEST = "latest"

_SELECT = ("SELECT id, project, name, version, type, digest, manifest, size, description,"
           " metadata, created FROM artifact_versions")


def _records(conn: sqlite3.Connection, rows: list[Row]) -> list[ArtifactRecord]:
    out = []
    for row in rows:
        aliases = [a for (a,) in conn.execute(
            "SELECT alias FROM artifact_aliases WHERE version = ? ORDER BY alias != ?, alias",
            (row[0], LATEST))]
        links = [ArtifactLink(p, r, ArtifactRole(role), t, rid is None)
                 for (p, r, role, t, rid) in conn.execute(
                     "SELECT run_project, run_id, role, time, run FROM artifact_links"
                     " WHERE version = ? ORDER BY id", (row[0],))]
        files = [ArtifactFile(f[0], f[1], int(f[2])) for f in json.loads(row[6])]
        out.append(ArtifactRecord(
            id=row[0], project=row[1], name=row[2], version=row[3], type=row[4],
            digest=row[5], files=files, size=row[7], description=row[8],
            metadata=json.loads(row[9]), created=row[10], aliases=aliases, links=links))
    return out


def _get(conn: sqlite3.Connection, version_id: int) -> ArtifactRecord:
    rows = conn.execute(_SELECT + " WHERE id = ?", (version_id,)).fetchall()
    if not rows:
        raise ArtifactNotFoundError(f"no artefact version with id {version_id}")
    return _records(conn, rows)[0]


def _set_alias(conn: sqlite3.Connection, project: str, name: str, alias: str,
               version_id: int) -> None:
    conn.execute("INSERT INTO artifact_aliases (project, name, alias, version)"
                 " VALUES (?, ?, ?, ?) ON CONFLICT (project, name, alias)"
                 " DO UPDATE SET version = excluded.version",
                 (project, name, alias, version_id))


def _link(conn: sqlite3.Connection, version_id: int, run: int, role: ArtifactRole) -> None:
    row = conn.execute("SELECT r.id, p.name FROM runs r JOIN projects p ON p.id = r.project"
                       " WHERE r.rid = ?", (run,)).fetchone()
    if row is None:
        raise ValueError(f"no run with internal id {run} to link to an artefact")
    if conn.execute("SELECT 1 FROM artifact_links WHERE version = ? AND run = ? AND role = ?",
                    (version_id, run, role)).fetchone() is None:
        conn.execute("INSERT INTO artifact_links (version, run, run_project, run_id, role,"
                     " time) VALUES (?, ?, ?, ?, ?, ?)",
                     (version_id, run, row[1], row[0], role, time.time()))


def add_version(conn: sqlite3.Connection, project: str, name: str, type: str, digest: str,
                files: Sequence[ArtifactFile], description: str | None,
                metadata: dict[str, Any] | None, aliases: Sequence[str],
                run: int | None) -> tuple[int, bool]:
    """Inside a transaction, find or create the version (see
    :meth:`Store.add_artifact_version`); return ``(version id, created)``."""
    known = conn.execute("SELECT DISTINCT type FROM artifact_versions WHERE project = ?"
                         " AND name = ?", (project, name)).fetchone()
    if known is not None and known[0] != type:
        raise ValueError(f"artefact {project}/{name} has type {known[0]!r}, not {type!r}; "
                         f"use another name for an artefact of type {type!r}")
    row = conn.execute("SELECT id FROM artifact_versions WHERE project = ? AND name = ?"
                       " AND digest = ?", (project, name, digest)).fetchone()
    created = row is None
    if row is not None:
        version_id = int(row[0])
    else:
        number = conn.execute("SELECT COALESCE(MAX(version) + 1, 0) FROM artifact_versions"
                              " WHERE project = ? AND name = ?", (project, name)).fetchone()[0]
        manifest = [[f.path, f.sha256, f.size] for f in sorted(files, key=lambda f: f.path)]
        cur = conn.execute(
            "INSERT INTO artifact_versions (project, name, version, type, digest, manifest,"
            " size, description, metadata, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (project, name, number, type, digest, dumps(manifest),
             sum(f.size for f in files), description, dumps(metadata or {}), time.time()))
        version_id = int(cur.lastrowid or 0)
        _set_alias(conn, project, name, LATEST, version_id)
    for alias in aliases:
        if alias != LATEST:  # latest always names the newest version
            _set_alias(conn, project, name, alias, version_id)
    if run is not None:
        _link(conn, version_id, run, ArtifactRole.LOGGED)
    return version_id, created


def get_version(db: Db, version_id: int) -> ArtifactRecord:
    """The version with this id (``ArtifactNotFoundError`` if absent)."""
    with db.lock:
        return _get(db.conn, version_id)


def find_version(db: Db, project: str, name: str, ref: str) -> ArtifactRecord:
    """The version of ``project/name`` that ``ref`` (``v<N>`` or an alias) names."""
    with db.lock:
        conn = db.conn
        if ref[:1] == "v" and ref[1:].isdigit():
            rows = conn.execute(_SELECT + " WHERE project = ? AND name = ? AND version = ?",
                                (project, name, int(ref[1:]))).fetchall()
        else:
            rows = conn.execute(
                _SELECT + " WHERE id = (SELECT version FROM artifact_aliases"
                " WHERE project = ? AND name = ? AND alias = ?)", (project, name, ref)
            ).fetchall()
        if rows:
            return _records(conn, rows)[0]
        known = [f"v{v}" for (v,) in conn.execute(
            "SELECT version FROM artifact_versions WHERE project = ? AND name = ?"
            " ORDER BY version", (project, name))]
    if not known:
        raise ArtifactNotFoundError(f"no artefact named {name!r} in project {project!r}")
    raise ArtifactNotFoundError(
        f"artefact {project}/{name} has no version or alias {ref!r} "
        f"(versions: {', '.join(known)}; aliases work too, e.g. 'latest')")


def versions(db: Db, project: str | None, name: str | None) -> list[ArtifactRecord]:
    """Versions, optionally of one project and name, by project, name and version."""
    sql, args = _SELECT + " WHERE 1", []
    if project is not None:
        sql += " AND project = ?"
        args.append(project)
    if name is not None:
        sql += " AND name = ?"
        args.append(name)
    with db.lock:
        rows = db.conn.execute(sql + " ORDER BY project, name, version", args).fetchall()
        return _records(db.conn, rows)


def use_version(conn: sqlite3.Connection, version_id: int, run: int) -> None:
    """Inside a transaction, link ``run`` as a user of the version (once)."""
    _get(conn, version_id)  # raises for an unknown version
    _link(conn, version_id, run, ArtifactRole.USED)


def run_versions(db: Db, run: int) -> list[tuple[ArtifactRole, ArtifactRecord]]:
    """The versions ``run`` logged or used, in the order of its links."""
    with db.lock:
        links = db.conn.execute("SELECT role, version FROM artifact_links WHERE run = ?"
                                " ORDER BY id", (run,)).fetchall()
        return [(ArtifactRole(role), _get(db.conn, vid)) for role, vid in links]


def forget_run(conn: sqlite3.Connection, run: int) -> None:
    """Inside a transaction, mark the links of a purged run (they keep its project and id)."""
    conn.execute("UPDATE artifact_links SET run = NULL WHERE run = ?", (run,))


def delete_orphans(conn: sqlite3.Connection) -> list[ArtifactRecord]:
    """Inside a transaction, delete versions whose every linked run is purged (see
    :meth:`Store.delete_orphaned_artifacts`); return them as they were."""
    ids = [vid for (vid,) in conn.execute(
        "SELECT version FROM artifact_links GROUP BY version HAVING COUNT(run) = 0")]
    gone = [_get(conn, vid) for vid in ids]
    for record in gone:
        conn.execute("DELETE FROM artifact_versions WHERE id = ?", (record.id,))
    for project, name in {(r.project, r.name) for r in gone}:
        newest = conn.execute("SELECT id FROM artifact_versions WHERE project = ? AND name = ?"
                              " ORDER BY version DESC LIMIT 1", (project, name)).fetchone()
        if newest is not None:
            _set_alias(conn, project, name, LATEST, int(newest[0]))
    return gone
