"""runfleet: local-first experiment tracking and hyper-parallel fine-tuning.

Tracking (wandb/trackio compatible: ``import runfleet as wandb`` works)::

    import runfleet
    run = runfleet.init(project="my-exp", config={"lr": 1e-3})
    runfleet.log({"loss": 0.5})
    runfleet.finish()

Reading back::

    runs = runfleet.Api().runs("my-exp")
    runs[0].history()

Existing wandb code, unchanged: ``runfleet.patch_wandb()`` (or ``RUNFLEET_WANDB=1`` in the
environment, read when ``runfleet`` is imported) makes ``import wandb`` give runfleet.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

from runfleet.api import Api, ApiRun, Project
from runfleet.artifacts import Artifact
from runfleet.errors import RunfleetError, RunNotFoundError, StoreError
from runfleet.tracking import api_functions as _fn
from runfleet.tracking.api_functions import (
    alert,
    define_metric,
    finish,
    log,
    log_artifact,
    login,
    save,
    use_artifact,
    watch,
)
from runfleet.tracking.config import Config
from runfleet.tracking.media import Audio, Histogram, Image, Table, Video
from runfleet.tracking.run import Run
from runfleet.tracking.session import init
from runfleet.tracking.settings import Settings
from runfleet.tracking.summary import Summary

if TYPE_CHECKING:
    from runfleet.dashboard.server import show
    from runfleet.engine import Experiment, GridSearch, List, RandomSearch, Range

from runfleet.version import __version__

__all__ = [
    "Api",
    "ApiRun",
    "Artifact",
    "Audio",
    "Config",
    "Experiment",
    "GridSearch",
    "Histogram",
    "Image",
    "List",
    "Project",
    "RandomSearch",
    "Range",
    "Run",
    "RunNotFoundError",
    "RunfleetError",
    "Settings",
    "StoreError",
    "Summary",
    "Table",
    "Video",
    "__version__",
    "alert",
    "config",
    "define_metric",
    "finish",
    "init",
    "log",
    "log_artifact",
    "login",
    "patch_wandb",
    "run",
    "save",
    "show",
    "summary",
    "use_artifact",
    "watch",
]


_ENGINE_NAMES = ("Experiment", "GridSearch", "List", "RandomSearch", "Range")


def __getattr__(name: str) -> Any:
    """``runfleet.run``, ``runfleet.config`` and ``runfleet.summary`` follow the active run;
    the engine's names (``Experiment``, ``List`` ...) and ``show`` (the dashboard, which
    needs the ``dashboard`` extra) load on first use."""
    if name in _ENGINE_NAMES:
        import runfleet.engine

        return getattr(runfleet.engine, name)
    if name == "show":
        try:
            from runfleet.dashboard.server import show
        except ImportError:  # no dashboard extra: the name exists, calling it says why not
            return _show_without_dashboard
        return show
    if name == "run":
        return _fn.current_run()
    if name == "config":
        return _fn.current_config()
    if name == "summary":
        return _fn.current_summary()
    raise AttributeError(f"module 'runfleet' has no attribute {name!r}")


def _show_without_dashboard(*args: Any, **kwargs: Any) -> None:
    """``runfleet.show`` when the dashboard extra is missing: raises the ImportError that
    names the missing package."""
    import runfleet.dashboard.server  # noqa: F401 - fails: starlette or uvicorn is missing


def patch_wandb() -> ModuleType:
    """Make ``import wandb`` and ``import wandb.<submodule>`` give runfleet's stand-in
    (:mod:`runfleet.wandb`) for the rest of the process, whether or not wandb is installed,
    so existing wandb code (transformers' ``report_to="wandb"``, TRL) logs to runfleet
    unchanged. Returns the stand-in module. Call it before importing code that imports
    wandb; ``RUNFLEET_WANDB=1`` in the environment makes ``import runfleet`` call it."""
    from runfleet.wandb.patch import patch_wandb as _patch

    return _patch()


if os.environ.get("RUNFLEET_WANDB", "").strip().lower() in ("1", "true", "yes", "on"):
    patch_wandb()
