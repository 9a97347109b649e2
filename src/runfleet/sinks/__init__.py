"""Tracking sinks: send runs to trackio, MLflow, TensorBoard or another runfleet home too.

runfleet's store always keeps every run (it is the source of truth for control); a sink is
an extra destination, fed in the background (:mod:`runfleet.sinks.fanout`). Name them in
``Experiment(..., trackers=("runfleet", "trackio"))`` or ``runfleet.init(..., sinks=[...])``,
as strings (default settings) or as configured objects:

* ``"trackio"``: :class:`runfleet.sinks.trackio.TrackioSink` (``runfleet[trackio]``)
* ``"mlflow"``: :class:`runfleet.sinks.mlflow.MLflowSink` (``runfleet[mlflow]``)
* ``"tensorboard"``: :class:`runfleet.sinks.tensorboard.TensorBoardSink`
  (``runfleet[tensorboard]``)
* object only: :class:`runfleet.sinks.runfleet.RunfleetSink` mirrors into another home

``"runfleet"`` names the store itself and adds nothing. Writing a new sink means
subclassing :class:`Sink` and passing an instance.

Example:
    >>> import runfleet
    >>> from runfleet.sinks.trackio import TrackioSink
    >>> run = runfleet.init(project="p", sinks=[TrackioSink()])   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from typing import Any

from runfleet.sinks.base import RunInfo, Sink, SinkRun

__all__ = ["SINK_CLASSES", "RunInfo", "Sink", "SinkRun", "describe", "rebuild", "resolve_sinks",
           "sink_class"]

#: Sink names accepted as strings, and where their classes live.
SINK_CLASSES = {
    "trackio": ("runfleet.sinks.trackio", "TrackioSink", "trackio"),
    "mlflow": ("runfleet.sinks.mlflow", "MLflowSink", "mlflow"),
    "tensorboard": ("runfleet.sinks.tensorboard", "TensorBoardSink", "tensorboard"),
}
STORE_NAME = "runfleet"

_defaults: dict[str, Sink] = {}
_lock = threading.Lock()


def sink_class(name: str) -> type[Sink]:
    """The class registered under ``name`` (``trackio``, ``mlflow``, ``tensorboard``)."""
    try:
        module, cls, extra = SINK_CLASSES[name]
    except KeyError:
        known = ", ".join([STORE_NAME, *SINK_CLASSES])
        raise ValueError(f"unknown tracker {name!r}; known: {known}, or a Sink object") from None
    try:
        found: type[Sink] = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise ImportError(f"the {name} tracker needs the {extra!r} package "
                          f"(pip install 'runfleet[{extra}]'): {exc}") from exc
    return found


def describe(tracker: str | Sink) -> str | dict[str, Any]:
    """A JSON-able record of a tracker: its name, or a sink's class and :meth:`Sink.settings`
    (what :func:`rebuild` turns back into the same sink in another process)."""
    if isinstance(tracker, str):
        return tracker
    cls = type(tracker)
    return {"name": tracker.name, "class": f"{cls.__module__}:{cls.__qualname__}",
            "settings": tracker.settings()}


def rebuild(record: str | dict[str, Any]) -> str | Sink:
    """The tracker a :func:`describe` record stands for (a name stays a name)."""
    if isinstance(record, str):
        return record
    module, _, qualname = str(record["class"]).partition(":")
    try:
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        sink = cls(**record.get("settings", {}))
    except Exception as exc:
        raise ValueError(f"cannot rebuild the {record.get('name')!r} tracker "
                         f"({record['class']}) recorded for this experiment: {exc}; pass "
                         f"trackers=... to Experiment.attach()") from exc
    if not isinstance(sink, Sink):
        raise ValueError(f"{record['class']} is not a runfleet.sinks.Sink")
    return sink


def resolve_sinks(trackers: Iterable[Any] | None) -> list[Sink]:
    """Turn tracker names and :class:`Sink` objects into sink objects (``runfleet`` dropped).

    A name gives the process's shared default instance of that sink, so every run of the
    process that names it feeds one sink. Unknown names and wrong types raise ``ValueError``
    / ``TypeError`` naming them; a missing optional package raises ``ImportError`` saying
    which extra to install.
    """
    if trackers is None:
        return []
    if isinstance(trackers, (str, Sink)):
        trackers = [trackers]
    out: list[Sink] = []
    for item in trackers:
        if isinstance(item, Sink):
            sink = item
        elif isinstance(item, str):
            name = item.lower()
            if name == STORE_NAME:
                continue
            with _lock:
                sink = _defaults.get(name) or _defaults.setdefault(name, sink_class(name)())
        else:
            raise TypeError(f"a tracker must be a name ({', '.join(SINK_CLASSES)}) or a "
                            f"runfleet.sinks.Sink, got {type(item).__name__}")
        if not any(s is sink for s in out):
            out.append(sink)
    return out
