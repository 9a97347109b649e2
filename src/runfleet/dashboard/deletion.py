"""Deleting and restoring plain tracked runs from the dashboard.

``POST /api/run/delete`` and ``POST /api/run/restore`` take ``{project, run}`` and apply at
once (see :mod:`runfleet.tracking.deletion`: a soft delete, recoverable until ``runfleet
gc``). They are writes, so :mod:`runfleet.dashboard.security` guards them as it guards
``POST /api/ops``: the dashboard's token, same origin, JSON only. A run of an engine
experiment is refused here (409): its controller deletes it, through ``POST /api/ops``.
The page learns of the new status on the live stream, as of any status change.
"""

from __future__ import annotations

from typing import Any

from runfleet.dashboard.query import Query, run_json
from runfleet.dashboard.spec import ApiError
from runfleet.tracking.deletion import DeleteRefusedError

BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["project", "run"],
    "additionalProperties": False,
    "properties": {
        "project": {"type": "string", "minLength": 1, "maxLength": 1000},
        "run": {"type": "string", "minLength": 1, "maxLength": 1000},
    },
}


def change(query: Query, body: dict[str, Any], restore: bool) -> dict[str, Any]:
    """Delete (or, with ``restore``, restore) the run a request body names; return the run
    as ``/api/runs`` lists it. 400 for a malformed body, 404 for an unknown project or run,
    409 for a refusal (a run still running, of an experiment, already deleted, ...)."""
    unknown = sorted(set(body) - {"project", "run"})
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}; the body is {{project, run}}")
    project, run_id = body.get("project"), body.get("run")
    if not isinstance(project, str) or not project:
        raise ApiError(400, "field 'project' must name a project")
    if not isinstance(run_id, str) or not run_id:
        raise ApiError(400, "field 'run' must name a run id")
    query.check_project(project)
    run = query.run(project, run_id)
    try:
        run = run.restore() if restore else run.delete()
    except DeleteRefusedError as exc:
        raise ApiError(409, str(exc)) from None
    return run_json(run)
