"""Module-level functions (``runfleet.log`` ...) that act on the active run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runfleet.tracking import session
from runfleet.tracking.config import Config
from runfleet.tracking.disabled import DisabledRun
from runfleet.tracking.preinit import PreInitObject
from runfleet.tracking.run import Run
from runfleet.tracking.summary import Summary

_preinit_config = PreInitObject("runfleet.config")
_preinit_summary = PreInitObject("runfleet.summary")


def current_run() -> Run | DisabledRun | None:
    """The active run or None (``runfleet.run``)."""
    return session.active_run()


def current_config() -> Config | PreInitObject:
    """The active run's config; before ``init()`` an object whose every read and write
    raises :class:`~runfleet.errors.UsageError` (as wandb does)."""
    run = session.active_run()
    return run.config if run is not None else _preinit_config


def current_summary() -> Summary | PreInitObject:
    """The active run's summary; before ``init()`` an object whose every read and write
    raises :class:`~runfleet.errors.UsageError` (as wandb does)."""
    run = session.active_run()
    return run.summary if run is not None else _preinit_summary


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """Log metrics to the active run; see :meth:`Run.log`."""
    run = session._active
    if run is None:
        run = session.require_run("log")
    run.log(data, step=step, commit=commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the active run, if any (flushes everything to disk)."""
    run = session.active_run()
    if run is not None:
        run.finish(exit_code=exit_code, quiet=quiet)


def define_metric(name: str, step_metric: str | None = None, summary: str | None = None,
                  goal: str | None = None, hidden: bool = False,
                  step_sync: bool | None = None, overwrite: bool | None = None) -> Any:
    """Declare a metric's x-axis and summary on the active run; see :meth:`Run.define_metric`."""
    return session.require_run("define_metric").define_metric(
        name, step_metric=step_metric, summary=summary, goal=goal, hidden=hidden,
        step_sync=step_sync, overwrite=overwrite)


def alert(title: str, text: str, level: Any = "info", wait_duration: Any = None) -> None:
    """Record an alert on the active run; see :meth:`Run.alert`."""
    session.require_run("alert").alert(title, text, level=level, wait_duration=wait_duration)


def log_artifact(artifact_or_path: Any, name: str | None = None, type: str | None = None,
                 aliases: list[str] | None = None) -> Any:
    """Log an artefact on the active run; see :meth:`Run.log_artifact`."""
    return session.require_run("log_artifact").log_artifact(
        artifact_or_path, name=name, type=type, aliases=aliases)


def use_artifact(artifact_or_name: Any, type: str | None = None,
                 aliases: list[str] | None = None) -> Any:
    """Use a stored artefact version on the active run; see :meth:`Run.use_artifact`."""
    return session.require_run("use_artifact").use_artifact(artifact_or_name, type=type,
                                                            aliases=aliases)


def watch(*args: Any, **kwargs: Any) -> None:
    """Accepted for wandb compatibility; does nothing (gradients are not tracked)."""


def save(*args: Any, **kwargs: Any) -> None:
    """Accepted for wandb compatibility; does nothing (runs are local, nothing is uploaded)."""


def login(*args: Any, **kwargs: Any) -> bool:
    """Accepted for wandb compatibility; runfleet needs no login. Returns True."""
    return True
