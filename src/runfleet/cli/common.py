"""What every ``runfleet`` command shares: exit codes, the one-line user error, the home
and run lookups."""

from __future__ import annotations

import argparse
import sys

from runfleet.home import ENV_VAR, Home

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A user-facing error: printed as one line, then the process exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code



def open_home(args: argparse.Namespace, must_exist: bool) -> Home:
    """The home named by ``--dir`` (or the default); with ``must_exist``, a usage error when
    nothing was logged to it."""
    home = Home.resolve(args.dir)
    if must_exist and not home.db_path.exists():
        raise CliError(f"no runfleet database at {home.db_path}: nothing was logged to this "
                       f"home (choose one with --dir or ${ENV_VAR})")
    return home


def check_project(projects: list[str], project: str, home: Home) -> None:
    """A usage error naming the known projects when ``project`` is not one of them."""
    if project not in projects:
        raise CliError(f"unknown project {project!r} in {home.root}; known projects: "
                       f"{', '.join(projects) or 'none'}")




def find_run(home: Home, run_id: str, project: str | None) -> tuple[str, str]:
    """``(project, id)`` of the run ``run_id`` (an id, or a name with ``project``), deleted
    runs included; a usage error if there is none or more than one."""
    from runfleet.api import Api

    with Api(home.root) as api:
        names = [str(p) for p in api.projects()]
        if project is not None:
            check_project(names, project, home)
            names = [project]
        found = [(r.project, r.id) for p in names for r in api.runs(p, include_deleted=True)
                 if r.id == run_id or (project is not None and r.name == run_id)]
    if not found:
        raise CliError(f"no run {run_id!r} in {home.root}"
                       + (f" (project {project!r})" if project else ""))
    if len(found) > 1:
        raise CliError(f"{run_id!r} names {len(found)} runs; pass the run id"
                       + ("" if project else " and --project"))
    return found[0]


def fail(message: str, code: int) -> int:
    """Print ``message`` as one ``runfleet: error:`` line on stderr; return ``code``."""
    print(f"runfleet: error: {message}", file=sys.stderr)
    return code


def printable(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (a lone surrogate stored by an older
    version or an importer) escaped, so one odd value never breaks the listing."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
