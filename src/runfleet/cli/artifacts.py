"""``runfleet artifacts``: list the artefact versions of a home, or show one."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from runfleet.cli.common import EXIT_OK, CliError, open_home, printable


def add_artifacts(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``artifacts`` to the subparsers."""
    p = sub.add_parser(
        "artifacts", parents=[common], help="list artefact versions, or show one",
        description="List artefact versions: project, name, version, aliases, type, size, "
        "number of files, the run that logged it and the runs that used it. "
        "'runfleet artifacts show NAME[:VERSION|:ALIAS]' shows one version's files, "
        "metadata and lineage (PROJECT/NAME:VERSION for another project).",
        epilog="JSON output is a list of objects with the keys project, name, version, "
        "aliases, type, size, files (path, sha256, size), description, metadata, created, "
        "logged_by and used_by (run paths PROJECT/ID).")
    p.add_argument("target", nargs="*", metavar="PROJECT | show NAME[:VER]",
                   help="only this project's artefacts; or 'show' and a version to show")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_artifacts)


def _cmd_artifacts(args: argparse.Namespace) -> int:
    from runfleet.api import Api
    from runfleet.artifacts import parse_ref

    home = open_home(args, must_exist=True)
    show = bool(args.target) and args.target[0] == "show"
    if show and len(args.target) != 2:
        raise CliError("usage: runfleet artifacts show NAME[:VERSION] (or PROJECT/NAME:VER)")
    if not show and len(args.target) > 1:
        raise CliError(f"runfleet artifacts takes at most one PROJECT, got {args.target}")
    with Api(dir=home.root) as api:
        store = api.store
        if show:
            ref = args.target[1]
            project = ref.partition(":")[0].rpartition("/")[0]
            if not project:
                names = sorted({v.project for v in store.artifact_versions()
                                if v.name == ref.partition(":")[0]})
                if len(names) != 1:
                    raise CliError(f"artefact {ref!r} is in {len(names)} projects "
                                   f"({', '.join(names) or 'none'}); name it "
                                   f"PROJECT/NAME:VERSION")
                project = names[0]
            try:
                records = [store.artifact_version(*parse_ref(ref, project))]
            except (ValueError, LookupError) as exc:  # a bad name, or no such version
                raise CliError(str(exc)) from None
        else:
            project = args.target[0] if args.target else None
            records = store.artifact_versions(project)
            if project is not None and not records and \
                    project not in {p.name for p in store.projects()}:
                known = sorted({v.project for v in store.artifact_versions()})
                raise CliError(f"unknown project {project!r} in {home.root}; "
                               f"projects with artefacts: {', '.join(known) or 'none'}")
    rows = [_artifact_row(r) for r in records]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    elif show:
        _print_artifact(rows[0])
    else:
        _print_artifacts_table(rows)
    return EXIT_OK


def _artifact_row(record: Any) -> dict[str, Any]:
    def paths(links: list[Any]) -> list[str]:
        return [f"{lk.run_project}/{lk.run_id}" + (" (purged)" if lk.purged else "")
                for lk in links]

    return {"project": record.project, "name": record.name, "version": f"v{record.version}",
            "aliases": record.aliases, "type": record.type, "size": record.size,
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size}
                      for f in record.files],
            "description": record.description, "metadata": record.metadata,
            "created": record.created,
            "logged_by": paths([lk for lk in record.links if lk.role == "logged"]),
            "used_by": paths(record.users)}


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _print_artifacts_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 200)
    if not rows:
        console.print("no artefacts")
        return
    table = Table()
    for title in ("project", "name", "version", "aliases", "type", "size", "files",
                  "logged by", "used by"):
        table.add_column(title, justify="right" if title in ("size", "files") else "left")
    for r in rows:
        users = r["used_by"]
        table.add_row(*(printable(c) for c in (
            r["project"], r["name"], r["version"], ", ".join(r["aliases"]), r["type"],
            _human_size(r["size"]), str(len(r["files"])), ", ".join(r["logged_by"][:1]),
            ", ".join(users[:3]) + (f" +{len(users) - 3}" if len(users) > 3 else ""))))
    console.print(table)


def _print_artifact(row: dict[str, Any]) -> None:
    lines = [f"{row['project']}/{row['name']}:{row['version']}  type {row['type']}  "
             f"{_human_size(row['size'])} in {len(row['files'])} file(s)",
             f"aliases:   {', '.join(row['aliases']) or '-'}",
             f"created:   {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(row['created']))}",
             f"logged by: {', '.join(row['logged_by']) or '-'}",
             f"used by:   {', '.join(row['used_by']) or '-'}"]
    if row["description"]:
        lines.append(f"description: {row['description']}")
    if row["metadata"]:
        lines.append(f"metadata:  {json.dumps(row['metadata'], default=str)}")
    lines.append("files:")
    lines += [f"  {f['path']}  {_human_size(f['size'])}  sha256:{f['sha256'][:16]}"
              for f in row["files"]]
    print("\n".join(printable(line) for line in lines))

