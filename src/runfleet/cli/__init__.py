"""The ``runfleet`` command: list runs, export histories, import from trackio, TensorBoard
and CSV.

Exit codes: 0 success, 1 failure (unreadable or damaged database or file, I/O error), 2
usage error (bad option, unknown project or run, missing file). User errors print one
``runfleet: error: ...`` line on stderr, never a traceback; so does a database found
damaged while reading it (naming the file and how to recover it).

Example:
    >>> from runfleet.cli import main
    >>> main(["runs", "--dir", "/tmp/rf-doc", "--json"])   # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runfleet.cli.artifacts import add_artifacts
from runfleet.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    check_project,
    fail,
    open_home,
    printable,
)
from runfleet.cli.control import CONTROL, add_control, add_restore_and_gc
from runfleet.errors import RunfleetError, RunNotFoundError
from runfleet.filters import FilterError, parse_filters
from runfleet.home import ENV_VAR, Home

NON_FINITE_NOTE = ("NaN and infinite numbers, which JSON cannot hold, are written as the "
                   "strings \"NaN\", \"Infinity\" and \"-Infinity\".")
# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``runfleet`` command."""
    from runfleet.version import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", metavar="PATH", default=argparse.SUPPRESS,
                        help=f"runfleet home (default: ${ENV_VAR}, else ~/.runfleet)")
    parser = argparse.ArgumentParser(
        prog="runfleet", description="Local-first experiment tracking and hyper-parallel "
        "fine-tuning: list, export and import the runs stored in a runfleet home, open its "
        "dashboard, run a demo experiment, and control the runs of a running experiment "
        "(stop, resume, delete, clone).",
        epilog="Run 'runfleet COMMAND --help' for the options of a command.")
    parser.add_argument("--dir", metavar="PATH", default=None,
                        help=f"runfleet home (default: ${ENV_VAR}, else ~/.runfleet)")
    parser.add_argument("--version", action="version", version=f"runfleet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_runs(sub, common)
    _add_export(sub, common)
    _add_import(sub, common)
    _add_show(sub, common)
    _add_demo(sub, common)
    add_artifacts(sub, common)
    for name, what in CONTROL.items():
        add_control(sub, common, name, what)
    add_restore_and_gc(sub, common)
    return parser


def _add_runs(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "runs", parents=[common], help="list runs as a table or JSON",
        description="List runs: id, name, project, status, group, created, last step, the "
        "config values that differ between runs (headed config.KEY), and summary metrics "
        "(headed KEY). Deleted runs are left out unless --status deleted.",
        epilog="JSON output is a list of objects with the keys id, name, project, status, "
        "group, tags, notes, config, summary, parent, created, finished, last_step (times in "
        "seconds since the epoch). " + NON_FINITE_NOTE)
    p.add_argument("--project", "-p", help="only this project (default: all projects)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--status", help="only runs with this status (running, completed, "
                   "failed, stopped, crashed, pending, deleted)")
    p.add_argument("--filter", "-f", action="append", default=[], metavar="FIELD<op>VALUE",
                   help="keep runs where FIELD (config.KEY, summary.KEY, name, group, tags, "
                   "status, ...) compares to VALUE; op is = != > >= < <= or ~ (regex); VALUE "
                   "is read as JSON when it parses (0.001, true, null), else as text. "
                   "Repeatable; all must hold. Example: --filter config.lr=0.001")
    p.set_defaults(func=_cmd_runs)


def _add_export(sub: Any, common: argparse.ArgumentParser) -> None:
    from runfleet.export import FORMATS, STREAMS

    p = sub.add_parser(
        "export", parents=[common],
        help="export run histories to CSV, JSON Lines or Parquet; eval rankings as TREC",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export the history of a project (or of some of its runs).\n\n"
        "Long layout (default, lossless): one row per point with the columns project, "
        "run_id,\nrun_name, key, step, timestamp, value, value_type (float int bool str "
        "null json).\nWide layout (--wide): one row per (run, step), columns _project, "
        "_run_id, _run_name,\n_step, _timestamp, _config, _summary and one per key; empty "
        "cell = no point.\nThe long layout also holds run rows (empty step; value_type "
        "config, summary or run)\nwith each run's config, summary and fields, so 'runfleet "
        "import csv' of a CSV export\ngives back the same runs (unless --key picks keys).",
        epilog="Values: timestamps are seconds since the epoch. CSV floats are written with "
        "Python's\nshortest round-trip repr, so they read back exactly; NaN and infinities "
        "are nan, inf,\n-inf; bools true/false; null is an empty cell. In JSON Lines, NaN "
        "and infinities\nare the strings \"NaN\", \"Infinity\", \"-Infinity\" (value_type "
        "tells them from text).\nParquet (long) has typed columns: value (float64), "
        "value_int (int64), value_text.\n--format trec: the document rankings of the runs of "
        "an eval experiment (run_evals) as a\nTREC run file (query Q0 doc rank score run), "
        "for trec_eval, pytrec_eval or ranx.")
    p.add_argument("--project", "-p", required=True, help="project to export")
    p.add_argument("--run", action="append", metavar="ID", dest="runs",
                   help="export only this run (id or name); repeatable")
    p.add_argument("--format", "-F", choices=FORMATS, dest="fmt",
                   help="output format (default: from the -o suffix, else csv)")
    p.add_argument("-o", "--output", metavar="PATH", default="-",
                   help="output file; '-' (default) writes CSV or JSON Lines to stdout")
    p.add_argument("--wide", action="store_true", help="one row per (run, step)")
    p.add_argument("--key", action="append", dest="keys", metavar="KEY",
                   help="export only this metric key; repeatable")
    p.add_argument("--stream", choices=STREAMS,
                   help="which keys: default (training metrics), system, or all (default: "
                   "all for the long layout, default for --wide)")
    p.set_defaults(func=_cmd_export)


def _add_import(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("import", parents=[common],
                       help="import runs from trackio, TensorBoard or CSV",
                       description="Import runs logged by another tool into the home. Runs "
                       "imported before are skipped, so importing again only adds new runs.")
    kinds = p.add_subparsers(dest="source", metavar="SOURCE")
    t = kinds.add_parser(
        "trackio", parents=[common], help="import trackio projects (one database or a home)",
        description="Import trackio runs: config, group, metrics with their steps and "
        "timestamps, system metrics (as system/<key>) and alerts. PATH is a project "
        "database (<project>.db) or a trackio home folder: then every <project>.db in it is "
        "imported into the runfleet project of the same name (media/, artifacts/, .lock, "
        "parquet and other files are skipped). A database that cannot be read is reported "
        "and the others are still imported; the exit code is then 1. Runs imported before "
        "are skipped.")
    t.add_argument("path", metavar="PATH", nargs="?", default=None,
                   help="a trackio project database or a trackio home folder (default: "
                   "$TRACKIO_DIR, else $HF_HOME/trackio, HF_HOME defaulting to "
                   "~/.cache/huggingface)")
    t.add_argument("--project", "-p", help="runfleet project, for a single database only "
                   "(default: the file name without .db)")
    t.set_defaults(func=_cmd_import_trackio)
    b = kinds.add_parser(
        "tensorboard", parents=[common], help="import a TensorBoard log directory",
        description="Import a TensorBoard log directory: every folder under LOGDIR that "
        "holds event files (events.out.tfevents.*) becomes one run, named by its path "
        "relative to LOGDIR (e.g. lr_0.1/train; LOGDIR's own name for files directly in "
        "it). Scalars (legacy and new-style, float32 or float64) keep their steps and wall "
        "times exactly; text summaries become string metrics; hparams become the run's "
        "config. Images, audio, histograms and graphs are not imported. Runs imported "
        "before are skipped. Needs the tensorboard extra: pip install "
        "'runfleet[tensorboard]'.")
    b.add_argument("logdir", metavar="LOGDIR", help="the TensorBoard log directory")
    b.add_argument("--project", "-p", help="runfleet project (default: LOGDIR's folder "
                   "name)")
    b.set_defaults(func=_cmd_import_tensorboard)
    c = kinds.add_parser(
        "csv", parents=[common],
        help="import a wide CSV file as one run, or a 'runfleet export' as its runs",
        description="Import a CSV file with one row per step and one column per metric as "
        "one run. Numeric columns become numbers (nan/inf included), true/false columns "
        "bools, others text; empty cells are skipped. Importing the same file under the same "
        "run name again is skipped. A CSV written by 'runfleet export' (long or --wide) is "
        "recognised by its header and gives back its runs: ids, names, points, configs and "
        "summaries (long: also created/finished times, status, group, tags, notes); runs "
        "the project already has are skipped.")
    c.add_argument("file", metavar="FILE", help="the CSV file")
    c.add_argument("--project", "-p", required=True, help="runfleet project")
    c.add_argument("--run-name", help="run name (default: the file name without suffix)")
    c.add_argument("--step-column", help="column holding the step (default: 'step' when "
                   "present, else the row number from 0)")
    c.add_argument("--time-column", help="column holding each row's time (epoch seconds or "
                   "ISO 8601; default: the import time)")
    c.set_defaults(func=_cmd_import_csv)
    p.set_defaults(func=lambda args: _missing_subcommand(p))


def _add_show(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "show", parents=[common], help="open the web dashboard",
        description="Serve the web dashboard of the home: runs, charts, live updates. "
        "Prints the address to open and serves until Ctrl+C. A port in use means the next "
        "free one is used. Every start makes a token, printed once in that address: every "
        "write (notes, tags, stop, delete, clone) needs it, and so does every read when "
        "bound to a non-loopback --host.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=None,
                   help="port to try first (default 7760; 0 picks any free port)")
    p.add_argument("--project", "-p", help="project to open")
    p.add_argument("--no-token", action="store_true",
                   help="serve without a token: any account or program that can reach the "
                   "port may read and write (prints a warning; single-user machines only)")
    p.set_defaults(func=_cmd_show)


def _add_demo(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo", parents=[common],
        help="run a demo on the CPU: 4 SFT configs trained at once, or 6 RAG configs compared",
        description="Run a demo experiment on the CPU (a few minutes), with live progress and "
        "a closing comparison. 'runfleet demo' (or 'demo sft'): the experiment 'sft-demo', a "
        "tokenizer trained on the fly and a tiny Llama built from a config (both saved with "
        "save_pretrained under the home), the instruction dataset shipped with runfleet, and "
        "4 SFT configs (2 LoRA ranks x 2 learning rates) trained at once in 4 chunks each; "
        "needs pip install 'runfleet[train]'. 'runfleet demo rag': the experiment 'rag-demo', "
        "2 chunkings x dense, BM25 and hybrid retrieval with all-MiniLM-L6-v2 on the Cranfield "
        "collection shipped with runfleet, in 8 shards with live 95% intervals; needs pip "
        "install 'runfleet[rag]'. With --executor ray the workers are Ray actors: on a local "
        "Ray instance started for the demo (no dashboard, a small object store; shut down at "
        "the end), or on the cluster at --ray-address; needs pip install 'runfleet[ray]'.")
    p.add_argument("which", nargs="?", choices=("sft", "rag"), default="sft",
                   help="which demo (default sft)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: one per GPU, else 1; with --executor ray "
                   "on a local instance: one per GPU, else one per core, at most 4)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the workers run: processes on this machine (default) or Ray "
                   "actors")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="with --executor ray: a running Ray cluster ('auto' for the one "
                   "started on this machine with 'ray start --head', or HOST:6379); default: "
                   "a local Ray instance started for the demo")
    p.add_argument("--num-chunks", type=int, default=4, help="sft: chunks per run (default 4)")
    p.add_argument("--max-steps", type=int, default=120,
                   help="sft: optimizer steps per run (default 120)")
    p.add_argument("--num-shards", type=int, default=8,
                   help="rag: shards of the queries (default 8)")
    p.add_argument("--no-progress", action="store_true", help="no live progress table")
    p.add_argument("--trackers", default="runfleet",
                   help="comma-separated trackers to log to besides runfleet's store: "
                   "trackio, mlflow, tensorboard (default: runfleet only)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    extra = "rag" if args.which == "rag" else "train"
    try:
        if args.which == "rag":
            from runfleet.demo.rag_demo import minilm_path
            from runfleet.demo.rag_demo import run_demo as run_rag

            minilm_path()
        else:
            from runfleet.demo.sft_demo import run_demo
    except ImportError as exc:
        raise CliError(f"the {args.which} demo needs the {extra} extra "
                       f"({getattr(exc, 'name', None) or exc} is missing): "
                       f"pip install 'runfleet[{extra}]'", EXIT_FAILURE) from None
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers must be >= 1, got {args.workers}")
    trackers = tuple(t.strip() for t in args.trackers.split(",") if t.strip())
    try:
        from runfleet.sinks import resolve_sinks

        resolve_sinks(trackers)
    except (ValueError, ImportError) as exc:
        raise CliError(f"--trackers: {exc}") from None
    if args.ray_address is not None and args.executor != "ray":
        raise CliError("--ray-address needs --executor ray")

    def run(executor: Any, workers: int | None) -> Any:
        if args.which == "rag":
            return run_rag(dir=getattr(args, "dir", None), workers=workers,
                           num_shards=args.num_shards, progress=not args.no_progress,
                           trackers=trackers, executor=executor)
        return run_demo(dir=getattr(args, "dir", None), workers=workers,
                        num_chunks=args.num_chunks, max_steps=args.max_steps,
                        progress=not args.no_progress, trackers=trackers, executor=executor)

    if args.executor == "ray":
        try:
            import ray  # noqa: F401

            from runfleet.demo.on_ray import demo_executor
        except ImportError:
            raise CliError("--executor ray needs the ray extra: pip install 'runfleet[ray]'",
                           EXIT_FAILURE) from None
        with demo_executor(args.workers, args.ray_address,
                           max_useful=6 if args.which == "rag" else 4) as executor:
            results = run(executor, None)
    else:
        results = run(None, args.workers)
    return EXIT_OK if (results["status"] == "completed").all() else EXIT_FAILURE


# -- entry point -----------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``runfleet`` command with ``argv`` (default: ``sys.argv[1:]``); return the
    exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except CliError as exc:
        return fail(str(exc), exc.code)
    except RunNotFoundError as exc:
        return fail(str(exc), EXIT_USAGE)
    except RunfleetError as exc:
        from runfleet.importers import ImportArgumentError, SourceNotFoundError

        usage = isinstance(exc, (ImportArgumentError, SourceNotFoundError))
        return fail(str(exc), EXIT_USAGE if usage else EXIT_FAILURE)
    except (sqlite3.DatabaseError, zlib.error) as exc:  # a damaged file, found while reading
        return fail(database_error_message(Home.resolve(getattr(args, "dir", None)).db_path,
                                            exc), EXIT_FAILURE)
    except BrokenPipeError:  # e.g. `runfleet export ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except OSError as exc:
        return fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc),
                     EXIT_FAILURE)
    except KeyboardInterrupt:
        return 130


_DAMAGED = ("malformed", "not a database", "corrupt", "disk image")


def database_error_message(db_path: Path, exc: BaseException) -> str:
    """One line for an error SQLite (or decoding a stored segment) raised while reading the
    database at ``db_path``: what happened, to which file, and what to do about it."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, zlib.error) or any(w in text.lower() for w in _DAMAGED):
        return (f"the runfleet database {db_path} is damaged ({text}). Restore it from a "
                f"backup, or salvage what is still readable with: sqlite3 {db_path} "
                f"'.recover' | sqlite3 recovered.db  (then use recovered.db as the "
                f"runfleet.db of another home, with --dir). Keep a copy of the damaged "
                f"file and let no runfleet process write to it meanwhile")
    return (f"cannot read the runfleet database {db_path}: {text} (if another process holds "
            f"it locked, try again when it is done)")


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        from runfleet.dashboard.server import serve
    except ImportError as exc:
        raise CliError(f"the dashboard needs extra packages ({exc.name} is missing): "
                       f"pip install 'runfleet[dashboard]'", EXIT_FAILURE) from None
    if args.port is not None and not 0 <= args.port <= 65535:
        raise CliError(f"--port must be between 0 and 65535, got {args.port}")
    return serve(home=args.dir, host=args.host, port=args.port, project=args.project,
                 no_token=args.no_token)


# -- runs ------------------------------------------------------------------------------------
def _cmd_runs(args: argparse.Namespace) -> int:
    from runfleet.api import Api

    home = open_home(args, must_exist=True)
    try:
        filters = parse_filters(args.filter)
    except FilterError as exc:
        raise CliError(str(exc)) from None
    if args.status:
        filters["status"] = args.status
    with Api(dir=home.root) as api:
        names = [str(p) for p in api.projects()]
        if args.project is not None:
            check_project(names, args.project, home)
            names = [args.project]
        try:
            runs = [r for name in names for r in api.runs(name, filters=filters,
                                                          include_deleted=True)
                    if args.status or r.status != "deleted"]
        except ValueError as exc:  # unknown filter field or operator
            raise CliError(str(exc)) from exc
        records = [_run_record(r) for r in runs]
    if args.json:
        from runfleet.export import json_safe

        print(json.dumps(json_safe(records), indent=2, allow_nan=False))
    else:
        _print_runs_table(records)
    return EXIT_OK


def _run_record(run: Any) -> dict[str, Any]:
    return {"id": run.id, "name": run.name, "project": run.project, "status": run.status,
            "group": run.group, "tags": run.tags, "notes": run.notes, "config": run.config,
            "summary": run.summary, "parent": run.parent, "created": run.created_at,
            "finished": run.finished_at, "last_step": run.last_step}


def _pick_keys(dicts: list[dict[str, Any]], limit: int, skip: tuple[str, ...] = ()) -> list[str]:
    """Up to ``limit`` keys, those whose values differ between the dicts first."""
    keys = [k for k in dict.fromkeys(k for d in dicts for k in d) if not k.startswith(skip)]

    def varies(k: str) -> bool:
        return len({json.dumps(d.get(k), sort_keys=True, default=str) for d in dicts}) > 1

    return sorted(keys, key=lambda k: not varies(k))[:limit]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _print_runs_table(records: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from runfleet.printing import print_table

    console = Console(highlight=False)
    if not records:
        console.print("no runs")
        return
    config_keys = _pick_keys([r["config"] for r in records], 4)
    summary_keys = _pick_keys([r["summary"] for r in records], 4, skip=("_", "system/"))
    table = Table(show_lines=False)
    for title in ("id", "name", "project", "status", "group", "created", "last step"):
        table.add_column(title, no_wrap=title in ("id", "created"))
    for k in config_keys:  # "config.lr" apart from a summary metric "lr"
        table.add_column(f"config.{k}", style="cyan")
    for k in summary_keys:
        table.add_column(k, style="green", justify="right")
    for r in records:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        last = "" if r["last_step"] < 0 else str(r["last_step"])
        cells = [r["id"], r["name"], r["project"], str(r["status"]), r["group"] or "", created,
                 last, *(_cell(r["config"].get(k)) for k in config_keys),
                 *(_cell(r["summary"].get(k)) for k in summary_keys)]
        table.add_row(*(Text(printable(c)) for c in cells))  # values are not markup
    print_table(table, console)  # whole: folded on a terminal, full width elsewhere


# -- export ----------------------------------------------------------------------------------
def _cmd_export(args: argparse.Namespace) -> int:
    from runfleet.api import Api
    from runfleet.export import ExportError, export_project, infer_format

    home = open_home(args, must_exist=True)
    fmt = infer_format(args.output, args.fmt)
    if fmt == "parquet" and args.output == "-":
        raise CliError("parquet export needs a file: add -o PATH")
    if args.output != "-" and not Path(args.output).parent.is_dir():
        raise CliError(f"cannot write {args.output}: folder {Path(args.output).parent} "
                       f"does not exist")
    with Api(dir=home.root) as api:
        check_project([str(p) for p in api.projects()], args.project, home)
        try:
            rows = export_project(api, args.project, runs=args.runs, fmt=fmt,
                                  path=args.output, wide=args.wide, keys=args.keys,
                                  stream=args.stream)
        except ExportError as exc:  # e.g. a metric key clashing with a wide-layout column
            raise CliError(str(exc)) from exc
        except (sqlite3.DatabaseError, zlib.error) as exc:  # damaged pages met mid-export
            message = database_error_message(home.db_path, exc)
            if args.output != "-" and Path(args.output).is_file():
                Path(args.output).unlink()  # never leave a truncated export behind
                message += f"; {args.output} was not written"
            raise CliError(message, EXIT_FAILURE) from None
    if args.output != "-":
        print(f"wrote {rows} row(s) to {args.output}", file=sys.stderr)
    return EXIT_OK


# -- import ----------------------------------------------------------------------------------
def _cmd_import_trackio(args: argparse.Namespace) -> int:
    from runfleet.importers.trackio import (
        default_trackio_dir,
        import_trackio,
        import_trackio_home,
    )

    path = Path(args.path).expanduser() if args.path else default_trackio_dir()
    if not path.exists():
        hint = "" if args.path else (" (the default trackio home: pass a path or set "
                                     "$TRACKIO_DIR)")
        raise CliError(f"no such file or folder: {path}{hint}")
    if path.is_dir():
        if args.project:
            raise CliError(f"--project applies to a single database, but {path} is a folder "
                           f"(a trackio home): its projects are imported under their own "
                           f"names")
        return _run_import(args, lambda store: import_trackio_home(store, path))
    return _run_import(args, lambda store: import_trackio(store, path, project=args.project))


def _cmd_import_tensorboard(args: argparse.Namespace) -> int:
    from runfleet.importers.tensorboard import import_tensorboard

    path = Path(args.logdir).expanduser()
    if not path.exists():
        raise CliError(f"no such folder: {path}")
    return _run_import(args, lambda store: import_tensorboard(store, path,
                                                              project=args.project))


def _cmd_import_csv(args: argparse.Namespace) -> int:
    from runfleet.importers.csv_file import import_csv

    path = Path(args.file).expanduser()
    if not path.exists():
        raise CliError(f"no such file: {path}")
    return _run_import(args, lambda store: import_csv(
        store, path, args.project, run_name=args.run_name, step_column=args.step_column,
        time_column=args.time_column))


def _run_import(args: argparse.Namespace, do_import: Any) -> int:
    """Open the home's store, run ``do_import(store)`` (one ImportResult or a list), print
    each result's summary, and report the sources that failed: exit code 1 if any did."""
    from runfleet.importers import ImportResult
    from runfleet.tracking.homes import open_store

    store = open_store(open_home(args, must_exist=False))
    try:
        outcome = do_import(store)
    finally:
        store.close()
    results: list[ImportResult] = outcome if isinstance(outcome, list) else [outcome]
    print("\n".join(r.describe() for r in results))
    if len(results) > 1:
        print(f"total: imported {sum(len(r.imported) for r in results)} run(s), "
              f"{sum(r.points for r in results)} point(s) in {len(results)} project(s); "
              f"skipped {sum(len(r.skipped) for r in results)} already imported")
    errors = [e for r in results for e in r.errors]
    for error in errors:
        print(f"runfleet: error: {error}", file=sys.stderr)
    return EXIT_FAILURE if errors else EXIT_OK
