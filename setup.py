"""Build hook: a wheel of runfleet carries the dashboard's built front end.

Everything else about the package is in pyproject.toml. When
``src/runfleet/dashboard/static/index.html`` is missing, ``build_py`` runs ``npm ci`` and
``npm run build`` in ``frontend/`` (TypeScript + uPlot bundled by esbuild) before copying
the package, so ``pip wheel .`` and ``python -m build`` need Node.js and npm. Editable
installs skip it (``make frontend`` builds the page in a checkout); set
``RUNFLEET_SKIP_FRONTEND=1`` to build a wheel without the page (the API still works).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
FRONTEND = ROOT / "frontend"
PAGE = ROOT / "src" / "runfleet" / "dashboard" / "static" / "index.html"


class BuildPyWithFrontend(build_py):
    """``build_py`` that first builds the dashboard page when it is missing."""

    def run(self) -> None:
        wanted = not PAGE.exists() and (FRONTEND / "package.json").exists()
        if wanted and not getattr(self, "editable_mode", False) and \
                not os.environ.get("RUNFLEET_SKIP_FRONTEND"):
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError("building runfleet's dashboard needs Node.js and npm "
                                   "(or set RUNFLEET_SKIP_FRONTEND=1 to leave it out)")
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True)
            subprocess.run([npm, "run", "build"], cwd=FRONTEND, check=True)
        super().run()


setup(cmdclass={"build_py": BuildPyWithFrontend})
