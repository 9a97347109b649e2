"""The artefacts a run logged and used, as the run detail page shows them."""

from __future__ import annotations

from typing import Any

from runfleet.dashboard import jsonio
from runfleet.dashboard.query import Query
from runfleet.store.base import ArtifactLink, ArtifactRecord, ArtifactRole


def _link(link: ArtifactLink) -> dict[str, Any]:
    return {"project": link.run_project, "run": link.run_id, "purged": link.purged}


def _version(record: ArtifactRecord) -> dict[str, Any]:
    producer = record.producer
    return {"project": record.project, "name": record.name, "version": f"v{record.version}",
            "type": record.type, "aliases": record.aliases, "size": record.size,
            "files": len(record.files), "digest": record.digest,
            "description": record.description, "metadata": jsonio.safe(record.metadata),
            "created": record.created,
            "logged_by": _link(producer) if producer is not None else None,
            "used_by": [_link(u) for u in record.users]}


def run_artifacts(query: Query, project: str, run_id: str) -> dict[str, Any]:
    """``{"logged": [...], "used": [...]}``: the versions run ``run_id`` logged and used, in
    the order it did so, each with its aliases, size, file count and lineage (the run that
    logged it, the runs that used it). Unknown runs raise the query's 404."""
    run = query.run(project, run_id)
    out: dict[str, list[dict[str, Any]]] = {"logged": [], "used": []}
    seen: set[tuple[ArtifactRole, int]] = set()
    for role, record in query.api.store.run_artifacts(run.rid):
        if (role, record.id) not in seen:
            seen.add((role, record.id))
            out[role.value].append(_version(record))
    return out
