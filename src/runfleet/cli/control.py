"""The control commands: ``stop``, ``resume``, ``delete``, ``clone`` (ops for a running
experiment's controller; a plain tracked run is deleted at once), ``restore`` and ``gc``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from runfleet.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    CliError,
    check_project,
    find_run,
    open_home,
)
from runfleet.home import Home

CONTROL = {
    "stop": "stop a running run of an experiment (its state is kept; resume it later)",
    "resume": "resume a stopped run exactly where it stopped",
    "delete": "delete a run: its state leaves memory and disk, it is hidden from listings",
    "clone": "clone a run with config changes, from scratch or warm from its latest state",
}
# what the experiment's controller does with each op, for that command's --help
_CONTROL_DETAIL = {
    "stop": "The controller stops the run within one training step, between two steps, and "
    "keeps its latest state so that 'runfleet resume' continues it.",
    "resume": "The controller schedules the run again from the state kept when it stopped: "
    "same step, weights and optimizer state, as if it had never stopped. Only a stopped run "
    "can be resumed.",
    "delete": "For a run of an experiment, the controller takes the run off its worker (if "
    "it is training), drops its saved states and hides it from listings and the dashboard; "
    "with --purge its metrics, media and alerts are deleted too.",
    "clone": "The controller adds a new run to the experiment: the run's config with the "
    "--set changes, trained from scratch, or with --warm from the run's latest weights and "
    "optimizer state. It prints the new run's id.",
}




def add_control(sub: Any, common: argparse.ArgumentParser, name: str, what: str) -> None:
    """Add the control command ``name`` (one of :data:`CONTROL`) to the subparsers."""
    p = sub.add_parser(
        name, parents=[common], help=what,
        description=f"{what[0].upper()}{what[1:]}. {_CONTROL_DETAIL[name]} The request is "
        "written to the store as an op for the experiment's controller, and this command "
        "waits for the outcome: applied, or rejected with the reason (exit 1). With no "
        "controller running, the op stays pending until the experiment resumes.")
    p.add_argument("run", metavar="RUN", help="run id (or name, with --project)")
    p.add_argument("--project", "-p", help="the run's experiment (default: found by id)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait at most for the controller to apply it (default: "
                        "as long as the controller runs)")
    if name == "delete":
        p.add_argument("--purge", action="store_true",
                       help="also delete the run's tracking data (metrics, media, alerts)")
        p.epilog = ("A run that belongs to no experiment (made by runfleet.init, or "
                    "imported) is deleted at once, softly: hidden from listings ('runfleet "
                    "runs', Api().runs, the dashboard), kept on disk and recoverable with "
                    "'runfleet restore RUN' until 'runfleet gc' purges it (with --purge: "
                    "purged at once). A run whose process still runs is refused: finish or "
                    "stop it first.")
    if name == "clone":
        p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                       help="config change, e.g. training_args.learning_rate=2e-4 (values "
                       "are read as JSON when they parse, else as text); repeatable")
        p.add_argument("--warm", action="store_true",
                       help="start from the parent's latest weights and optimizer state")
        p.add_argument("--name", help="the clone's name (default: <parent>.c<n>)")
    p.set_defaults(func=lambda args: _cmd_control(name, args))


def _cmd_control(kind: str, args: argparse.Namespace) -> int:
    from runfleet.api import Api
    from runfleet.engine.experiment import Experiment
    from runfleet.engine.ops import request_op, wait_op

    home = open_home(args, must_exist=True)
    project, run_id = find_run(home, args.run, args.project)
    with Api(home.root) as api:
        run = api.run(project, run_id)
    if not home.is_experiment(run.project):  # a plain tracked run: no controller to ask
        if kind == "delete":
            return _delete_tracked(home, run.project, run.id, bool(args.purge))
        raise CliError(f"run {run.id} of project {run.project!r} belongs to no experiment: "
                       f"{kind} applies to the runs of a runfleet.Experiment (run_fit)")
    op_args: dict[str, Any] = {}
    if kind == "delete":
        op_args["purge"] = bool(args.purge)
    if kind == "clone":
        op_args = {"changes": _parse_sets(args.set), "warm_start": bool(args.warm)}
        if args.name:
            op_args["name"] = args.name
    try:
        op = request_op(home, run.project, kind, run.id, op_args, source="cli")
    except ValueError as exc:
        raise CliError(str(exc)) from None
    exp = Experiment(run.project, dir=home.root)
    if not exp.controller_alive():
        print(f"op {op.id}: {kind} {run.id} is pending: no controller is running experiment "
              f"{run.project!r}; it applies when the experiment resumes "
              f"(run_fit(..., resume=True) or Experiment.attach(...).resume_all())")
        return EXIT_OK
    op = wait_op(home, op.id, args.timeout, while_alive=exp.controller_alive)
    if op.status == "applied":
        extra = f" -> new run {op.result['run_id']} ({op.result.get('name')})" \
            if kind == "clone" else ""
        print(f"op {op.id}: {kind} {run.id} applied{extra}")
        return EXIT_OK
    if op.status == "rejected":
        print(f"runfleet: error: op {op.id}: {kind} {run.id} rejected: {op.reason}",
              file=sys.stderr)
        return EXIT_FAILURE
    why = (f"after {args.timeout:g} s" if exp.controller_alive() else
           "and the controller has stopped; it applies when the experiment resumes")
    print(f"op {op.id}: {kind} {run.id} still pending {why}", file=sys.stderr)
    return EXIT_FAILURE


def add_restore_and_gc(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``restore`` and ``gc`` to the subparsers."""
    p = sub.add_parser(
        "restore", parents=[common], help="bring back a run deleted with 'runfleet delete'",
        description="Restore a deleted run: it gets back the status it had before 'runfleet "
        "delete' and shows in listings again. Possible until 'runfleet gc' purges it. Runs "
        "deleted by an experiment's controller lost their checkpoints and cannot be "
        "restored.")
    p.add_argument("run", metavar="RUN", help="run id (or name, with --project)")
    p.add_argument("--project", "-p", help="the run's project (default: found by id)")
    p.set_defaults(func=_cmd_restore)
    g = sub.add_parser(
        "gc", parents=[common], help="purge deleted runs for good: rows, metrics, media",
        description="Purge every deleted run of the home (or of --project): its metrics, "
        "media rows, alerts and run row leave the database and its media files leave the "
        "home's media folder. Purged runs cannot be restored. Runs that are not deleted are "
        "never touched.")
    g.add_argument("--project", "-p", help="only this project (default: every project)")
    g.add_argument("--dry-run", action="store_true",
                   help="list what would be purged, purge nothing")
    g.set_defaults(func=_cmd_gc)


def _delete_tracked(home: Home, project: str, run_id: str, purge: bool) -> int:
    from runfleet.api import Api
    from runfleet.artifacts import purge_unreferenced
    from runfleet.tracking.deletion import DeleteRefusedError, default_purge_hooks, purge_run

    with Api(home.root) as api:
        run = api.run(project, run_id)
        try:
            run.delete()
        except DeleteRefusedError as exc:
            raise CliError(str(exc), EXIT_FAILURE) from None
        if purge:
            record = api.store.get_run(run.rid)
            purge_run(api.store, api.home, record, default_purge_hooks())
            purge_unreferenced(api.store, api.home)  # artefacts only this run had
            print(f"deleted and purged run {run_id} ({run.name}) of project {project!r}")
            return EXIT_OK
    print(f"deleted run {run_id} ({run.name}) of project {project!r}: hidden from listings; "
          f"'runfleet restore {run_id} -p {project}' brings it back until 'runfleet gc' "
          f"purges it")
    return EXIT_OK


def _cmd_restore(args: argparse.Namespace) -> int:
    from runfleet.api import Api
    from runfleet.tracking.deletion import DeleteRefusedError

    home = open_home(args, must_exist=True)
    project, run_id = find_run(home, args.run, args.project)
    with Api(home.root) as api:
        try:
            run = api.run(project, run_id).restore()
        except DeleteRefusedError as exc:
            raise CliError(str(exc), EXIT_FAILURE) from None
        print(f"restored run {run_id} ({run.name}) of project {project!r}: {run.status}")
    return EXIT_OK


def _cmd_gc(args: argparse.Namespace) -> int:
    from runfleet.api import Api
    from runfleet.tracking.deletion import gc

    home = open_home(args, must_exist=True)
    with Api(home.root) as api:
        if args.project is not None:
            check_project([str(p) for p in api.projects()], args.project, home)
        report = gc(api.store, api.home, project=args.project, dry_run=args.dry_run)
    for r in report.runs:
        print(f"{'would purge' if args.dry_run else 'purged'} {r.project}/{r.id} ({r.name})")
    print(report.describe(args.dry_run))
    return EXIT_OK


def _parse_sets(items: Sequence[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--set needs KEY=VALUE, got {item!r}")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        changes[key.strip()] = value
    return changes
