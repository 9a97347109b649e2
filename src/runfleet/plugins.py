"""Plug-ins: the implementations of runfleet's extension points, found by name.

Each extension point is an entry-point group. runfleet's own implementations are
registered in its ``pyproject.toml`` exactly as a third party registers its own, so the
engine never names an implementation by hand:

* ``runfleet.backends``: trainer backend classes (``sft``, ``torch``), chosen with
  ``GridSearch(space, trainer=NAME)``;
* ``runfleet.executors``: executor classes (``local``), ``run_fit(..., executor=NAME)``;
* ``runfleet.sinks``: tracking sink classes (``trackio``), ``Experiment(trackers=[NAME])``;
* ``runfleet.stopping``: stopping policy classes (``median``),
  ``run_fit(..., stopping={"policy": NAME, ...})``.

A package adds a trainer by declaring, in its own ``pyproject.toml``::

    [project.entry-points."runfleet.backends"]
    my-trainer = "my_package.backend:MyBackend"

Installed, ``GridSearch(space, trainer="my-trainer")`` trains with it, on every worker.
A name of the form ``"module:attribute"`` loads that object directly, without installing.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import EntryPoint, entry_points
from typing import Any

BACKENDS = "runfleet.backends"
EXECUTORS = "runfleet.executors"
SINKS = "runfleet.sinks"
STOPPING = "runfleet.stopping"

_loaded: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


class PluginNotFoundError(ValueError):
    """No installed package registers that name in that group; the message lists those
    that are registered."""


def _entry_points(group: str, name: str | None = None) -> list[EntryPoint]:
    found = entry_points(group=group) if name is None else entry_points(group=group, name=name)
    unique: dict[tuple[str, str], EntryPoint] = {}
    for ep in found:  # a package seen twice on sys.path registers the same value twice
        unique.setdefault((ep.name, ep.value), ep)
    return list(unique.values())


def names(group: str) -> list[str]:
    """The names registered in ``group`` by every installed package (in the order the
    packages declare them)."""
    return list(dict.fromkeys(ep.name for ep in _entry_points(group)))


def load(group: str, name: str, what: str = "plug-in") -> Any:
    """The object registered as ``name`` in ``group`` (imported on first use).

    ``what`` names the kind of thing in error messages (``"trainer"``, ``"tracker"``).
    Raises :class:`PluginNotFoundError` for an unknown name, ``ImportError`` saying which
    extra to install when the implementation's own dependencies are missing.
    """
    with _lock:
        if (group, name) in _loaded:
            return _loaded[(group, name)]
    found = _load(group, name, what)
    with _lock:
        _loaded[(group, name)] = found
    return found


def _load(group: str, name: str, what: str) -> Any:
    if ":" in name:
        module, _, attr = name.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    candidates = _entry_points(group, name)
    if not candidates:
        known = ", ".join(names(group)) or "none"
        raise PluginNotFoundError(f"unknown {what} {name!r}; installed: {known} (a package "
                                  f"registers more under the entry-point group {group!r})")
    if len({ep.value for ep in candidates}) > 1:
        where = ", ".join(f"{ep.value} ({_dist(ep)})" for ep in candidates)
        raise PluginNotFoundError(f"{what} {name!r} is registered more than once: {where}")
    ep = candidates[0]
    try:
        return ep.load()
    except ImportError as exc:
        extra = f"pip install '{_dist(ep)}[{','.join(ep.extras)}]'" if ep.extras else \
            f"check that {_dist(ep)} is installed completely"
        raise ImportError(f"the {name} {what} cannot be loaded ({ep.value}): {exc}; "
                          f"{extra}") from exc


def _dist(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.name) if dist is not None else "the package that registers it"
