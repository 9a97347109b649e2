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
from pathlib import Path
from typing import Any

from runfleet.dashboard import jsonio
from runfleet.dashboard.query import Query, _flatten
from runfleet.dashboard.spec import ApiError
from runfleet.engine import ops as engine_ops
from runfleet.store.base import OpKind, OpRecord, OpStatus

SOURCE = "dashboard"
MAX_CHANGES = 1000
MAX_NAME = 200
# Keys the engine adds to every run's config: set by the experiment, not by a clone.
ENGINE_KEYS = ("trainer", "num_chunks", "seed", "warm_start")

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


def op_json(op: OpRecord) -> dict[str, Any]:
    """The JSON form of an op (as listed by ``GET /api/ops`` and sent on the live stream)."""
    return jsonio.safe({
        "id": op.id, "project": op.project, "kind": op.kind, "run": op.run, "args": op.args,
        "source": op.source, "actor": op.actor, "status": op.status, "reason": op.reason,
        "result": op.result, "created": op.created, "applied": op.applied})


def experiment_dir(home_root: Path, project: str) -> Path:
    """Where the engine keeps the experiment ``project`` (see :class:`runfleet.Experiment`)."""
    return home_root / "experiments" / project


def controller_state(home_root: Path, project: str) -> dict[str, bool]:
    """``experiment``: whether ``project`` is an engine experiment (its runs can be
    controlled); ``alive``: whether a controller process drives it now."""
    from runfleet.engine.experiment import Experiment

    try:
        exp = Experiment(project, dir=home_root)
    except ValueError:  # not a name an experiment can have
        return {"experiment": False, "alive": False}
    is_experiment = (exp.dir / "experiment.json").exists()
    return {"experiment": is_experiment, "alive": is_experiment and exp.controller_alive()}


def ops_from(ops: list[OpRecord], after: int) -> int:
    """The smallest op id that may still change or be new: the first pending op, else one
    past the last op (``after + 1`` when there is none)."""
    pending = [op.id for op in ops if op.status == OpStatus.PENDING]
    if pending:
        return min(pending)
    return max((op.id for op in ops), default=after) + 1


class Control:
    """The dashboard's control ops over a :class:`Query`'s home."""

    def __init__(self, query: Query) -> None:
        self.query = query

    def ops(self, project: str, run: str | None = None, after: int = 0,
             limit: int = 1000) -> dict[str, Any]:
        """Ops of ``project`` (of one run) with id > ``after``, oldest first, at most
        ``limit``; with the controller's state and ``ops_from`` for the live stream."""
        self.query.check_project(project)
        if run is not None:
            self.query.run(project, run)  # 404 for an unknown run
        store = self.query.api.store
        found = store.ops(project, after=after, run=run)
        page = found[:limit]
        every = found if run is None else store.ops(project, after=after)
        start = ops_from(every, after)
        if len(found) > limit:  # the page must still fetch the rest: do not skip them
            start = min(start, page[-1].id + 1)
        state = controller_state(self.query.home_root, project)
        return {"project": project, "ops": [op_json(op) for op in page],
                "more": len(found) > limit, "ops_from": start,
                "controller_alive": state["alive"], "experiment": state["experiment"]}

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
        flat = _flatten(config)
        known = [k for k in flat if k not in ENGINE_KEYS]
        for key in changes:
            if key in ENGINE_KEYS:
                raise ApiError(400, f"config key {key!r} is set by the experiment for all "
                                    f"its runs; a clone cannot change it")
            if key not in flat:
                hint = difflib.get_close_matches(key, known, n=1)
                raise ApiError(400, f"unknown config key {key!r}" + (
                    f" (did you mean {hint[0]!r}?)" if hint else
                    " (the dashboard changes keys the run's config sets; others through "
                    "Experiment.clone or `runfleet clone --set`)"))
        args["changes"] = dict(changes)
