"""Importers: bring runs logged elsewhere (trackio, TensorBoard, CSV files) into a home.

The trackio and CSV importers read their sources with the standard library only; the
TensorBoard importer needs the ``tensorboard`` package (``pip install
'runfleet[tensorboard]'``). Every importer writes through the
:class:`~runfleet.store.base.Store` interface. A run is created as ``pending`` and its points,
alerts, summary and final status land together in one atomic batch, so an interrupted import
leaves no half-written run: importing again finishes it, and a run imported completely is
skipped (importers derive stable run ids from the source).

Example:
    >>> from runfleet.home import Home
    >>> from runfleet.tracking.homes import open_store
    >>> from runfleet.importers.trackio import import_trackio, import_trackio_home
    >>> store = open_store(Home.resolve("/tmp/rf-doc"))               # doctest: +SKIP
    >>> import_trackio(store, "~/.cache/huggingface/trackio/my-exp.db")  # doctest: +SKIP
    >>> import_trackio_home(store)        # every project of $TRACKIO_DIR   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runfleet.errors import RunfleetError
from runfleet.store import codec
from runfleet.store.base import (
    SYSTEM_PREFIX,
    AlertRow,
    RunStatus,
    SeriesChunk,
    Store,
    StoreBusyError,
    WriteBatch,
)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_BUSY_RETRY_S = 60.0


class ImportSourceError(RunfleetError):
    """The file to import cannot be read or is not in the expected format."""


class SourceNotFoundError(ImportSourceError):
    """The file to import does not exist."""


class MissingDependencyError(ImportSourceError):
    """Reading this kind of source needs a package that is not installed."""


class ImportArgumentError(RunfleetError, ValueError):
    """An import option does not fit the source (e.g. a step column the file lacks)."""


@dataclass
class ImportResult:
    """What an import did: runs imported and skipped, points written, notes, and errors.

    ``errors`` lists the sources that could not be imported (e.g. a corrupt database in a
    trackio home, or a TensorBoard run folder without readable events) when the importer
    went on with the others; ``ok`` is False when there is any.
    """

    project: str
    imported: list[str] = field(default_factory=list)  # "id (name)"
    skipped: list[str] = field(default_factory=list)
    points: int = 0
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every source of this import could be read."""
        return not self.errors

    def describe(self) -> str:
        """A human-readable, multi-line summary."""
        if self.errors and not (self.imported or self.skipped):
            head = f"project {self.project!r}: nothing imported"
        else:
            head = (f"project {self.project!r}: imported {len(self.imported)} run(s), "
                    f"{self.points} point(s); skipped {len(self.skipped)} already imported")
        lines = [head]
        lines += [f"  imported {r}" for r in self.imported]
        lines += [f"  skipped {r} (already imported)" for r in self.skipped]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


@dataclass
class Points:
    """The points of one metric key, in logging order (any mix of value types)."""

    steps: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def add(self, step: int, when: float, value: Any) -> None:
        """Append one point."""
        self.steps.append(step)
        self.times.append(when)
        self.values.append(value)


@dataclass
class RunData:
    """Everything an importer collected for one run, ready for :func:`write_run`.

    ``created`` and ``finished`` are the source's own times when it has them (else the
    first and last point); ``summary`` None means the last value of each key; ``status``
    None means completed.
    """

    id: str
    name: str
    group: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    points: dict[str, Points] = field(default_factory=dict)
    alerts: list[tuple[str, str, str, int | None, float]] = field(default_factory=list)
    created: float | None = None
    finished: float | None = None
    summary: dict[str, Any] | None = None
    status: str | None = None
    tags: list[str] | None = None
    notes: str | None = None

    def add(self, key: str, step: int, when: float, value: Any) -> None:
        """Append one point of ``key``."""
        self.points.setdefault(key, Points()).add(step, when, value)

    @property
    def point_count(self) -> int:
        """Number of points over all keys."""
        return sum(len(p.steps) for p in self.points.values())

    @property
    def first_time(self) -> float | None:
        """The earliest point or alert time, if any."""
        times = [min(p.times) for p in self.points.values() if p.times]
        times += [a[4] for a in self.alerts]
        return min(times) if times else None

    def lifetime(self, now: float) -> tuple[float, float]:
        """``(created, finished)`` of the imported run, ``created <= finished`` always: the
        source's own times when known, else its first and last points (else ``now``). A
        source whose times disagree (a point before the recorded start, a finish before the
        start) is read as the widest span its times cover."""
        known = [t for t in (self.created, self.first_time) if t is not None
                 and math.isfinite(t)]
        created = min(known) if known else now
        ends = [t for t in (self.finished, self.last_time) if t is not None
                and math.isfinite(t)]
        return created, max([created, *ends])

    @property
    def last_time(self) -> float | None:
        """The latest point or alert time, if any."""
        times = [max(p.times) for p in self.points.values() if p.times]
        times += [a[4] for a in self.alerts]
        return max(times) if times else None


def stable_id(*parts: str) -> str:
    """A 12-character run id derived from ``parts`` (same source -> same id)."""
    digest = hashlib.sha1("\0".join(parts).encode("utf-8")).hexdigest()
    return digest[:12]


def kind_of(value: Any) -> str:
    """The store kind of one imported Python value: floats, int64 ints and bools are
    numeric kinds; text, None, big ints, lists and dicts are kept as JSON."""
    if isinstance(value, bool):
        return codec.BOOL
    if isinstance(value, int):
        return codec.INT if _INT64_MIN <= value <= _INT64_MAX else codec.JSON
    if isinstance(value, float):
        return codec.FLOAT
    return codec.JSON


def series_chunks(rid: int, key: str, points: Points) -> list[SeriesChunk]:
    """One :class:`SeriesChunk` per value kind of ``points``, each in logging order."""
    kinds = [kind_of(v) for v in points.values]
    steps = np.asarray(points.steps, dtype=np.int64)
    times = np.asarray(points.times, dtype=np.float64)
    chunks = []
    dtypes = {codec.FLOAT: np.float64, codec.INT: np.int64, codec.BOOL: bool}
    for kind in dict.fromkeys(kinds):
        sel = [i for i, k in enumerate(kinds) if k == kind]
        vals: Any = [points.values[i] for i in sel]
        if kind in dtypes:
            vals = np.asarray(vals, dtype=dtypes[kind])
        chunks.append(SeriesChunk(rid, key, kind, steps[sel], times[sel], vals))
    return chunks


def last_values(points: dict[str, Points]) -> dict[str, Any]:
    """The summary of an imported run: the last scalar value logged per non-system key."""
    summary = {}
    for key, p in points.items():
        if key.startswith(SYSTEM_PREFIX):
            continue
        scalars = [v for v in p.values if v is None or isinstance(v, (bool, int, float, str))]
        if scalars:
            summary[key] = scalars[-1]
    return summary


def write_run(store: Store, project: str, run: RunData) -> bool:
    """Create ``run`` in ``project`` and write all its data in one batch.

    Returns False (writing nothing) when a run with this id was already imported
    completely; a ``pending`` run left by an interrupted import is completed instead.
    """
    existing = store.find_run(project, id=run.id)
    if existing is not None and existing.status != RunStatus.PENDING:
        return False
    if existing is None:
        record = store.create_run(project, run.id, run.name, group=run.group,
                                  config=run.config, tags=run.tags, notes=run.notes,
                                  metadata=run.metadata, status=RunStatus.PENDING)
    else:
        record = existing
    rid = record.rid
    created, finished = run.lifetime(time.time())
    summary = last_values(run.points) if run.summary is None else run.summary
    batch = WriteBatch(run_updates={rid: {
        "status": run.status or RunStatus.COMPLETED, "summary": summary, "created": created,
        "finished": finished, "heartbeat": finished}})
    for key, p in run.points.items():
        batch.series.extend(series_chunks(rid, key, p))
    batch.alerts = [AlertRow(run=rid, title=t, text=x, level=lv, step=s, time=w)
                    for t, x, lv, s, w in run.alerts]
    _write_with_retry(store, batch)
    return True


def _write_with_retry(store: Store, batch: WriteBatch) -> None:
    deadline = time.monotonic() + _BUSY_RETRY_S
    delay = 0.05
    while True:
        try:
            store.write(batch)
            return
        except StoreBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


__all__ = [
    "ImportArgumentError",
    "ImportResult",
    "ImportSourceError",
    "MissingDependencyError",
    "Points",
    "RunData",
    "SourceNotFoundError",
    "kind_of",
    "last_values",
    "series_chunks",
    "stable_id",
    "write_run",
]
