"""Run summaries and metric definitions (``define_metric``).

The summary of a run maps each metric to one value: by default the last logged value; a
``define_metric(pattern, summary="min|max|mean|last|first")`` changes that for the keys the
glob pattern matches (several modes, comma-separated, give a dict). Users may also set
summary entries directly. Running aggregates (count, sum, min, max, first) are kept for
every numeric key so a definition added late, or a resumed run, still summarises all points.
"""

from __future__ import annotations

import fnmatch
import math
import threading
from collections.abc import Iterator, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from runfleet.tracking.config import to_config_value
from runfleet.tracking.text import check_text

SUMMARY_MODES = ("min", "max", "mean", "last", "first", "none")
_KEEP = object()  # "no new value": keep the current last value


@dataclass
class MetricDefinition:
    """What ``define_metric`` recorded for a key pattern."""

    pattern: str
    step_metric: str | None = None
    summary: tuple[str, ...] = ()
    goal: str | None = None
    hidden: bool = False

    def matches(self, key: str) -> bool:
        """True if ``key`` matches this definition's glob pattern."""
        return key == self.pattern or fnmatch.fnmatchcase(key, self.pattern)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (stored in the run's metadata)."""
        d = asdict(self)
        d["summary"] = list(self.summary)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MetricDefinition:
        """Inverse of :meth:`to_json`."""
        return cls(pattern=d["pattern"], step_metric=d.get("step_metric"),
                   summary=tuple(d.get("summary") or ()), goal=d.get("goal"),
                   hidden=bool(d.get("hidden", False)))


def parse_summary_modes(summary: str | None) -> tuple[str, ...]:
    """Split ``"min,max"`` into modes, raising ValueError for an unknown one."""
    if summary is None:
        return ()
    modes = tuple(m.strip().lower() for m in summary.split(",") if m.strip())
    for m in modes:
        if m not in SUMMARY_MODES:
            raise ValueError(f"unknown summary mode {m!r}; use one of {', '.join(SUMMARY_MODES)}")
    return modes


class Summary(MutableMapping[str, Any]):
    """The summary of a run: item and attribute access, ``update``, persisted on flush.

    Example:
        >>> s = Summary()
        >>> s["best_acc"] = 0.93
        >>> s.best_acc
        0.93
    """

    def __init__(self, values: dict[str, Any] | None = None,
                 aggregates: dict[str, list[Any]] | None = None,
                 definitions: list[MetricDefinition] | None = None) -> None:
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_values", dict(values or {}))
        # key -> [count, sum, min, max, first] over non-NaN numeric values
        object.__setattr__(self, "_agg", {k: list(v) for k, v in (aggregates or {}).items()})
        object.__setattr__(self, "_defs", list(definitions or []))
        object.__setattr__(self, "_dirty", False)

    # -- mapping interface ----------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        with self._lock:
            return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(key, str):
            check_text(f"summary key {key!r}", key)
        # numpy/torch scalars become plain numbers; lone surrogates and deep nesting raise
        value = to_config_value(value, str(key), what="summary")
        with self._lock:
            self._values[key] = value
            object.__setattr__(self, "_dirty", True)

    def __delitem__(self, key: str) -> None:
        with self._lock:
            del self._values[key]
            object.__setattr__(self, "_dirty", True)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._values))

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"summary has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __repr__(self) -> str:
        return f"Summary({self.as_dict()!r})"

    def as_dict(self) -> dict[str, Any]:
        """A plain-dict copy."""
        with self._lock:
            return dict(self._values)

    # -- used by the writer and define_metric ----------------------------------------------
    def define(self, definition: MetricDefinition) -> None:
        """Add a metric definition and recompute the keys it covers from the aggregates."""
        with self._lock:
            self._defs.append(definition)
            for key in list(self._agg):
                if definition.matches(key):
                    self._set_from_agg(key, _KEEP)
            object.__setattr__(self, "_dirty", True)

    def definitions(self) -> list[MetricDefinition]:
        """Metric definitions so far, oldest first."""
        with self._lock:
            return list(self._defs)

    def modes_for(self, key: str) -> tuple[str, ...]:
        """The summary modes of ``key``: the newest matching definition's, else ``last``."""
        for d in reversed(self._defs):
            if d.summary and d.matches(key):
                return d.summary
        return ("last",)

    def apply(self, key: str, values: Any, last: Any) -> None:
        """Fold newly written values of ``key`` (in logging order) into the summary."""
        with self._lock:
            if isinstance(values, np.ndarray) and values.dtype.kind in "fiub" and values.size:
                arr = values.astype(np.float64, copy=False)
                valid = arr[~np.isnan(arr)]
                agg = self._agg.get(key)
                if valid.size:
                    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf is NaN
                        vsum = float(valid.sum())
                    vmin, vmax = float(valid.min()), float(valid.max())
                    first = float(valid[0])
                    if agg is None:
                        self._agg[key] = [int(valid.size), vsum, vmin, vmax, first]
                    else:
                        agg[0] += int(valid.size)
                        agg[1] += vsum
                        agg[2] = min(agg[2], vmin)
                        agg[3] = max(agg[3], vmax)
            self._set_from_agg(key, last)
            object.__setattr__(self, "_dirty", True)

    def _set_from_agg(self, key: str, last: Any) -> None:
        modes = self.modes_for(key)
        if modes == ("none",):
            self._values.pop(key, None)
            return
        agg = self._agg.get(key)
        out: dict[str, Any] = {}
        for mode in modes:
            if mode == "last":
                if last is not _KEEP:
                    out[mode] = last
                else:
                    cur = self._values.get(key)
                    out[mode] = cur.get("last") if isinstance(cur, dict) else cur
            elif agg is None:
                out[mode] = math.nan
            elif mode == "min":
                out[mode] = agg[2]
            elif mode == "max":
                out[mode] = agg[3]
            elif mode == "mean":
                out[mode] = agg[1] / agg[0] if agg[0] else math.nan
            elif mode == "first":
                out[mode] = agg[4]
        if len(out) == 1:
            self._values[key] = next(iter(out.values()))
        elif out:
            self._values[key] = out

    def take_dirty(self) -> tuple[dict[str, Any], dict[str, list[Any]]] | None:
        """If changed since the last call, the values and aggregates to persist."""
        with self._lock:
            if not self._dirty:
                return None
            object.__setattr__(self, "_dirty", False)
            return dict(self._values), {k: list(v) for k, v in self._agg.items()}
