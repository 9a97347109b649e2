"""runfleet's stand-in for the ``wandb`` package, installed by :func:`runfleet.patch_wandb`.

After ``runfleet.patch_wandb()`` (or ``import runfleet`` with ``RUNFLEET_WANDB=1`` in the
environment), ``import wandb`` and ``import wandb.<submodule>`` give this package and its
submodules, whether or not wandb is installed, so code written for wandb (a script, or a
library such as transformers' ``WandbCallback`` or TRL) logs to runfleet unchanged.

What it provides: ``init`` (reads ``WANDB_PROJECT``, ``WANDB_NAME``, ``WANDB_RUN_GROUP``,
``WANDB_TAGS``, ``WANDB_NOTES``, ``WANDB_RUN_ID``, ``WANDB_RESUME``, ``WANDB_MODE`` for
arguments not given), ``log``, ``finish``, ``run``, ``config``, ``summary``,
``define_metric``, ``alert``/``AlertLevel``, ``watch``, ``save``, ``login``, ``setup``,
``Api``, ``Settings``, ``Table``, ``Image``, ``Histogram``, ``Video``, ``Audio``, ``plot``,
``sweep``/``agent`` (grid and random, in process), ``termlog``/``termwarn``/``termerror``,
``Error`` and ``errors``, ``sdk.lib.config_util.ConfigError``, ``sdk.wandb_run.Run``,
``Artifact``/``log_artifact``/``use_artifact`` (runfleet's artefacts).
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping
from typing import Any

import runfleet
from runfleet.api import Api
from runfleet.artifacts import Artifact
from runfleet.errors import RunfleetError, UsageError
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
from runfleet.tracking.disabled import DisabledRun
from runfleet.tracking.media import Audio, Histogram, Image, Table, Video
from runfleet.tracking.run import Run
from runfleet.tracking.settings import Settings
from runfleet.version import __version__ as _runfleet_version
from runfleet.wandb import env, errors, plot, sdk, sweeps
from runfleet.wandb.sweeps import agent, sweep

#: The wandb API level the stand-in follows, marked as runfleet's (PEP 440 local label).
__version__ = f"0.19.0+runfleet.{_runfleet_version}"

#: ``wandb.Error``: the base of every error runfleet raises on purpose.
Error = RunfleetError

_MODES = {"dryrun": "offline", "run": "online", "shared": "online"}
_said: set[str] = set()


class AlertLevel(enum.Enum):
    """Alert levels for :func:`alert` (``wandb.AlertLevel``)."""

    INFO = "info"
    WARN = "warn"
    ERROR = "error"


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def init(project: str | None = None, name: str | None = None, group: str | None = None,
         config: Mapping[str, Any] | Any = None, tags: Any = None, notes: str | None = None,
         id: str | None = None, resume: bool | str | None = None, dir: Any = None,
         mode: str | None = None, **kwargs: Any) -> Run | DisabledRun:
    """``wandb.init``: start a runfleet run (see :func:`runfleet.init`).

    Arguments not given come from wandb's environment variables (``WANDB_PROJECT``,
    ``WANDB_NAME``, ``WANDB_RUN_GROUP``, ``WANDB_TAGS`` comma-separated, ``WANDB_NOTES``,
    ``WANDB_RUN_ID``, ``WANDB_RESUME``, ``WANDB_MODE``: ``dryrun`` means ``offline``).
    ``dir`` (where wandb keeps its local files) is ignored with a warning: runs go to the
    runfleet home (``RUNFLEET_DIR`` or ``~/.runfleet``). Inside :func:`agent`, the trial's
    parameters are merged over ``config`` and the run joins the sweep's group.
    """
    project = project or _env("WANDB_PROJECT")
    name = name or _env("WANDB_NAME")
    group = group or _env("WANDB_RUN_GROUP")
    notes = notes or _env("WANDB_NOTES")
    id = id or _env("WANDB_RUN_ID")
    resume = resume if resume is not None else _env("WANDB_RESUME")
    if tags is None and _env("WANDB_TAGS"):
        tags = [t.strip() for t in os.environ["WANDB_TAGS"].split(",") if t.strip()]
    mode = mode or _env("WANDB_MODE")
    if mode is not None:
        mode = _MODES.get(mode.lower(), mode.lower())
    if dir is not None:
        termwarn(f"wandb.init(dir={str(dir)!r}) is ignored: runs are stored in the runfleet "
                 f"home (RUNFLEET_DIR or ~/.runfleet)", repeat=False)
    trial = sweeps.current_trial()
    if trial is not None:
        found, params = trial
        base = runfleet.Config(config).as_dict() if config is not None else {}
        config = {**base, **params}
        group = group or found.id
        project = project or found.project
    run = runfleet.init(project=project, name=name, group=group, config=config, tags=tags,
                        notes=notes, id=id, resume=resume, mode=mode, **kwargs)
    if trial is not None:
        trial[0].runs.append(run.id)
    return run


def _say(level: str, message: Any, repeat: bool, prefix: bool) -> None:
    text = str(message)
    if not repeat:
        if text in _said:
            return
        _said.add(text)
    head = f"runfleet: {level}" if prefix else ""
    print(f"{head}{text}", file=sys.stderr, flush=True)


def termlog(string: Any = "", newline: bool = True, repeat: bool = True,
            prefix: bool = True) -> None:
    """Print a message to standard error, prefixed ``runfleet: `` (``repeat=False``: only
    the first time this text is printed)."""
    _say("", string, repeat, prefix)


def termwarn(string: Any, repeat: bool = True, prefix: bool = True) -> None:
    """Print a warning to standard error, prefixed ``runfleet: WARNING ``."""
    _say("WARNING ", string, repeat, prefix)


def termerror(string: Any, repeat: bool = True, prefix: bool = True) -> None:
    """Print an error message to standard error, prefixed ``runfleet: ERROR ``."""
    _say("ERROR ", string, repeat, prefix)


def setup(settings: Any = None) -> None:
    """Accepted for wandb compatibility (runfleet has no service process to start)."""


def teardown(exit_code: int | None = None) -> None:
    """Accepted for wandb compatibility: finishes the active run, if any."""
    finish(exit_code=exit_code)


def unwatch(*args: Any, **kwargs: Any) -> None:
    """Accepted for wandb compatibility (gradients are not tracked; no-op)."""


def __getattr__(name: str) -> Any:
    """``run``, ``config`` and ``summary`` follow the active run (as ``runfleet.run`` ...;
    ``config`` and ``summary`` refuse reads and writes before ``init()``)."""
    if name in ("run", "config", "summary"):
        return getattr(runfleet, name)
    raise AttributeError(f"runfleet's wandb stand-in has no attribute {name!r}")


__all__ = [
    "AlertLevel", "Api", "Artifact", "Audio", "Error", "Histogram", "Image", "Run", "Settings",
    "Table",
    "UsageError", "Video", "__version__", "agent", "alert", "define_metric", "env", "errors",
    "finish", "init", "log", "log_artifact", "login", "plot", "save", "sdk", "setup",
    "sweep", "sweeps", "teardown", "termerror", "termlog", "termwarn", "unwatch",
    "use_artifact", "watch",
]
