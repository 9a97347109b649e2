"""``python -m runfleet.wandb script.py [args...]``: run a wandb script unchanged, logging
to runfleet (``import wandb`` in it, and in everything it imports, gives runfleet's
stand-in). ``python -m runfleet.wandb -m package.module [args...]`` runs a module instead."""

from __future__ import annotations

import os
import runpy
import sys

from runfleet.wandb.patch import patch_wandb

USAGE = "usage: python -m runfleet.wandb SCRIPT.py [ARGS...] | -m MODULE [ARGS...]"


def main(argv: list[str]) -> int:
    """Patch wandb, then run the script (or ``-m`` module) in ``argv`` as ``__main__`` with
    ``sys.argv`` set to it and its arguments; returns 2 (with the usage) when none is
    given."""
    if not argv or argv[0] in ("-h", "--help") or (argv[0] == "-m" and len(argv) < 2):
        print(USAGE, file=sys.stderr)
        return 2
    patch_wandb()
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))  # as `python script.py`
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
