"""Tracking sinks: send runs to trackio, MLflow, TensorBoard or another runfleet home too.

runfleet's store always keeps every run (it is the source of truth for control); a sink is
an extra destination, fed in the background (:mod:`runfleet.sinks.fanout`). Name them in
``Experiment(..., trackers=("runfleet", "trackio"))`` or ``runfleet.init(..., sinks=[...])``,
as strings (default settings) or as configured objects:

* ``"trackio"``: :class:`runfleet.sinks.trackio.TrackioSink` (``runfleet[trackio]``)
* ``"mlflow"``: :class:`runfleet.sinks.mlflow.MLflowSink` (``runfleet[mlflow]``)
* ``"tensorboard"``: :class:`runfleet.sinks.tensorboard.TensorBoardSink`
  (``runfleet[tensorboard]``)
* object only: :class:`runfleet.tracking.mirror.RunfleetSink` mirrors into another home

``"runfleet"`` names the store itself and adds nothing. Names are looked up in the
``runfleet.sinks`` entry-point group (:mod:`runfleet.plugins`), so a package that
registers a :class:`Sink` subclass there adds a tracker name; an instance of any
:class:`Sink` subclass works without registering.

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

from runfleet import plugins
from runfleet.sinks.base import RunInfo, Sink, SinkRun

__all__ = ["RunInfo", "Sink", "SinkRun", "describe", "rebuild", "resolve_sinks", "sink_class",
           "sink_names"]

STORE_NAME = "runfleet"

_defaults: dict[str, Sink] = {}
_lock = threading.Lock()


def sink_names() -> list[str]:
    """The tracker names that can be given as strings: the store itself and every sink
    registered in the ``runfleet.sinks`` entry-point group."""
    return [STORE_NAME, *plugins.names(plugins.SINKS)]


def sink_class(name: str) -> type[Sink]:
    """The sink class registered under ``name`` (``trackio``, ``mlflow``, ``tensorboard``
    or a third party's); ``ValueError`` for an unknown name, ``ImportError`` naming the
    extra to install when its package is missing."""
    try:
        found = plugins.load(plugins.SINKS, name, what="tracker")
    except plugins.PluginNotFoundError:
        raise ValueError(f"unknown tracker {name!r}; known: {', '.join(sink_names())}, "
                         f"or a Sink object") from None
    if not (isinstance(found, type) and issubclass(found, Sink)):
        raise TypeError(f"tracker {name!r} is registered as {found!r}, which is not a "
                        f"runfleet.sinks.Sink subclass")
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
            raise TypeError(f"a tracker must be a name ({', '.join(sink_names())}) or a "
                            f"runfleet.sinks.Sink, got {type(item).__name__}")
        if not any(s is sink for s in out):
            out.append(sink)
    return out
