"""The tracking-sink interface: where a run's start, metrics, status and end are forwarded.

runfleet's own store always gets everything first (it is the source of truth for control);
sinks are *extra* destinations: trackio, MLflow, TensorBoard, or another runfleet home.
A sink sees each run as a sequence of calls, always in this order and always from one
background thread (see :mod:`runfleet.sinks.fanout`), so implementations need no locking:

1. :meth:`Sink.start_run` once per run and process (``RunInfo.resumed`` tells a run that
   existed before, e.g. resumed after a crash, from one started now);
2. any number of :meth:`Sink.log` (batches of rows with their steps), :meth:`Sink.set_status`
   and :meth:`Sink.update_config` calls;
3. :meth:`Sink.finish_run` with the final status (``completed``, ``failed``, ``stopped``,
   ``deleted``), after which the sink must have handed everything to its target.

:meth:`Sink.close` ends the sink (finishing runs still open). A sink may raise: the fan-out
records a warning on the run and keeps going; it never stops training or the other sinks.
:meth:`Sink.read_project` reads a project back from the target (used by
``Experiment.results(source=...)`` and the conformance tests).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

Row = tuple[int, float, Mapping[str, Any]]
"""One ``log()`` call: ``(step, unix time, {key: value})``. Values are what runfleet stores:
``int``, ``float`` (NaN and infinities included), ``bool``, ``str``, JSON-like values, or media
objects; each sink forwards what its target can hold (see :func:`numeric`)."""

#: Statuses a sink is told about: those of :mod:`runfleet.store.base`.
FINAL_STATUSES = ("completed", "failed", "stopped", "deleted")


@dataclass(frozen=True)
class RunInfo:
    """What a sink learns when a run starts.

    ``config`` is the run's flattened config (``peft_config.r``, ``training_args.learning_rate``
    ...); ``parent`` and ``parent_step`` give the lineage of a cloned run (``None`` otherwise);
    ``resumed`` is true when the run already existed (resumed in this process); ``status``
    is the run's status as it starts (the sink also gets it as a first :meth:`Sink.set_status`
    call, so sinks that only follow ``set_status`` need not read it).
    """

    project: str
    run_id: str
    name: str
    group: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    parent: str | None = None
    parent_step: int | None = None
    tags: tuple[str, ...] = ()
    resumed: bool = False
    home: str | None = None
    status: str | None = None

    def lineage(self) -> dict[str, Any]:
        """Parent and warm-start information as flat config entries (empty for a root run)."""
        out: dict[str, Any] = {}
        if self.parent is not None:
            out["parent"] = self.parent
            out["parent_step"] = self.parent_step
        return out


@dataclass
class SinkRun:
    """A run as read back from a sink's target (see :meth:`Sink.read_project`).

    ``points`` maps each metric key to its ``(step, value)`` pairs in step order; ``status``
    is the last status the target shows (``None`` where it cannot tell).
    """

    run_id: str | None
    name: str
    group: str | None
    config: dict[str, Any]
    status: str | None
    points: dict[str, list[tuple[int, Any]]]


class Sink(abc.ABC):
    """A destination for tracked runs besides runfleet's own store.

    Subclasses set :attr:`name` (the string accepted in ``Experiment(trackers=...)`` and
    ``runfleet.init(sinks=...)``) and implement the five abstract methods. Every call for a
    run comes from one background thread, in the order the run produced it.
    """

    name: ClassVar[str] = "sink"

    @abc.abstractmethod
    def start_run(self, run: RunInfo) -> None:
        """Open (or reopen, when ``run.resumed``) the target's run for ``run``."""

    @abc.abstractmethod
    def log(self, run_id: str, rows: Sequence[Row]) -> None:
        """Forward a batch of rows of one run, in logging order."""

    @abc.abstractmethod
    def set_status(self, run_id: str, status: str) -> None:
        """Show a status change (``running``, ``stopped`` ...) of a run that goes on."""

    @abc.abstractmethod
    def finish_run(self, run_id: str, status: str) -> None:
        """End the run with its final ``status``; everything must reach the target."""

    @abc.abstractmethod
    def close(self) -> None:
        """Finish the runs still open (with their last status) and release the target."""

    def update_config(self, run_id: str, config: Mapping[str, Any]) -> None:  # noqa: B027
        """The run's config changed (``run.config.update``); ``config`` is the whole new one.

        The default does nothing; sinks whose target can add config values override it.
        """

    def settings(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this sink in another process (JSON values).

        ``Experiment`` records them so that ``Experiment.attach(name).resume_all()`` sends
        resumed runs to the same place. The default (no arguments) suits sinks without
        settings; sinks with settings override it.
        """
        return {}

    def read_project(self, project: str) -> list[SinkRun]:
        """Read every run of ``project`` back from the target, metrics included."""
        raise NotImplementedError(f"the {self.name} sink cannot read runs back")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def numeric(value: Any) -> float | None:
    """``value`` as a float if it is a number or a bool (NaN and infinities kept), else None.

    Sinks whose targets hold only numbers (MLflow metrics, TensorBoard scalars) forward
    these and leave strings and media out.
    """
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an int beyond float range
            return math.copysign(math.inf, value)
    return None
