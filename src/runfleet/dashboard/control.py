"""Control ops from the dashboard: validate a request, write it as an op, list ops.

The dashboard is one of the front doors of :mod:`runfleet.engine.ops`: a ``POST /api/ops``
body ``{project, run, kind, args}`` is checked here (kind, run of the project, arguments;
for a clone, that every changed key is a key of the run's flattened config, so a typo is
refused at once) and written as a pending op with source ``"dashboard"``. The experiment's
controller applies it (or rejects it with a reason, e.g. an invalid value) as it does the
other front doors' ops; the page follows the op's status on the live stream.

Example:
    >>> control = Control(query)                                           # doctest: +SKIP
    >>> control.request({"project": "ctl", "run": "abc123", "kind": "stop"},
    ...                 client="127.0.0.1")                                # doctest: +SKIP
    {'id': 7, 'kind': 'stop', 'status': 'pending', 'source': 'dashboard', ...}
"""

from __future__ import annotations

import difflib
from typing import Any

from runfleet.dashboard.cursor import op_position
from runfleet.dashboard.query import Query, flatten, op_json
from runfleet.dashboard.spec import ApiError
from runfleet.engine import ops as engine_ops
from runfleet.engine.lease import controller_state
from runfleet.engine.space import ENGINE_CONFIG_KEYS
from runfleet.store.base import OpKind

SOURCE = "dashboard"
MAX_CHANGES = 1000
MAX_NAME = 200

# The JSON schema of the POST /api/ops body (the OpenAPI description and the fuzz test
# use it; :meth:`Control.request` enforces it).
BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["project", "run", "kind"],
    "additionalProperties": False,
    "properties": {
        "project": {"type": "string", "minLength": 1, "maxLength": 1000},
        "run": {"type": "string", "minLength": 1, "maxLength": 1000},
        "kind": {"type": "string", "enum": list(tuple(OpKind))},
        "args": {
            "type": ["object", "null"],
            "description": "the op's arguments (omitted or null: none)",
            "additionalProperties": False,
            "properties": {
                "purge": {"type": "boolean", "description": "delete: drop the tracking data"},
                "changes": {"type": "object", "maxProperties": MAX_CHANGES,
                            "description": "clone: {dotted.config.key: new value}"},
                "warm_start": {"type": "boolean",
                               "description": "clone: start from the parent's weights"},
                "name": {"type": ["string", "null"], "maxLength": MAX_NAME,
                         "description": "clone: the new run's name"},
            },
        },
    },
}


class Control:
    """The dashboard's control ops over a :class:`Query`'s home."""

    def __init__(self, query: Query) -> None:
        self.query = query

    def ops(self, project: str, run: str | None = None, after: int = 0,
             limit: int = 1000) -> dict[str, Any]:
        """Ops of ``project`` (of one run) with id > ``after``, oldest first, at most
        ``limit``; with the controller's state, ``ops_from`` for the live stream and
        ``engine_keys``, the config keys the experiment sets (a clone cannot change them)."""
        self.query.check_project(project)
        if run is not None:
            self.query.run(project, run)  # 404 for an unknown run
        store = self.query.api.store
        found = store.ops(project, after=after, run=run)
        page = found[:limit]
        every = found if run is None else store.ops(project, after=after)
        start = op_position(every, after)
        if len(found) > limit:  # the page must still fetch the rest: do not skip them
            start = min(start, page[-1].id + 1)
        state = controller_state(self.query.home_root, project)
        return {"project": project, "ops": [op_json(op) for op in page],
                "more": len(found) > limit, "ops_from": start,
                "controller_alive": state["alive"], "experiment": state["experiment"],
                "engine_keys": list(ENGINE_CONFIG_KEYS)}

    def request(self, body: dict[str, Any], client: str | None = None) -> dict[str, Any]:
        """Validate a ``POST /api/ops`` body and write the op; return it as JSON."""
        unknown = sorted(set(body) - {"project", "run", "kind", "args"})
        if unknown:
            raise ApiError(400, f"unknown field {unknown[0]!r}; an op is {{project, run, "
                                f"kind, args}}")
        project, run_id, kind = body.get("project"), body.get("run"), body.get("kind")
        if not isinstance(project, str) or not project:
            raise ApiError(400, "field 'project' must name a project")
        if kind not in tuple(OpKind):
            raise ApiError(400, f"unknown op kind {kind!r}; use one of "
                                f"{', '.join(tuple(OpKind))}")
        if not isinstance(run_id, str) or not run_id:
            raise ApiError(400, f"{kind} needs a run id (field 'run')")
        args = body.get("args")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ApiError(400, "field 'args' must be an object")
        try:
            engine_ops.check_request(kind, run_id, args)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        if "purge" in args and not isinstance(args["purge"], bool):
            raise ApiError(400, "purge must be true or false")
        args = dict(args)
        self.query.check_project(project)
        run = self.query.run(project, run_id)
        if not controller_state(self.query.home_root, project)["experiment"]:
            raise ApiError(400, f"project {project!r} is not an experiment: ops apply to the "
                                f"runs of a runfleet.Experiment (run_fit)")
        if kind == "clone":
            self._check_clone(run.config, args)
        who = engine_ops.actor() + (f" (browser at {client})" if client else "")
        op = self.query.api.store.add_op(project, kind, run.id, args, SOURCE, who)
        return op_json(op)

    @staticmethod
    def _check_clone(config: dict[str, Any], args: dict[str, Any]) -> None:
        changes = args.get("changes") or {}
        if len(changes) > MAX_CHANGES:
            raise ApiError(400, f"a clone changes at most {MAX_CHANGES} keys")
        name = args.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME
                                 or "\x00" in name):
            raise ApiError(400, f"name must be text of at most {MAX_NAME} characters")
        if name is not None and not name.strip():
            args.pop("name")
        flat = flatten(config)
        known = [k for k in flat if k not in ENGINE_CONFIG_KEYS]
        for key in changes:
            if key in ENGINE_CONFIG_KEYS:
                raise ApiError(400, f"config key {key!r} is set by the experiment for all "
                                    f"its runs; a clone cannot change it")
            if key not in flat:
                hint = difflib.get_close_matches(key, known, n=1)
                raise ApiError(400, f"unknown config key {key!r}" + (
                    f" (did you mean {hint[0]!r}?)" if hint else
                    " (the dashboard changes keys the run's config sets; others through "
                    "Experiment.clone or `runfleet clone --set`)"))
        args["changes"] = dict(changes)
