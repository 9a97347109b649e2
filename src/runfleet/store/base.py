"""The store interface: what the tracker, the Api and (later) the engine need from storage.

Contract every implementation keeps (checked by ``tests/store/test_conformance.py``):

* Writes are atomic per :class:`WriteBatch`: all of it lands or none of it does.
* A series (run, key) can be read over a step range without reading any other series.
* Values come back exactly as written (floats bit for bit, ints, bools, text, None).
* Many processes may write at once; a transient lock surfaces as
  :class:`StoreBusyError`, which callers retry; other failures are :class:`OSError`
  or :class:`runfleet.errors.StoreError`.
"""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


class StrEnum(str, enum.Enum):
    """An Enum whose members are their string values (``RunStatus.PENDING == "pending"``):
    they store, print, format and serialise as the plain value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class RunStatus(StrEnum):
    """A run's status, shared by the tracker and the engine. ``CRASHED`` is never stored:
    the read API derives it for a ``RUNNING`` run whose process is gone."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"
    DELETED = "deleted"
    CRASHED = "crashed"


class OpKind(StrEnum):
    """What a control op asks of a run."""

    STOP = "stop"
    RESUME = "resume"
    DELETE = "delete"
    CLONE = "clone"


class OpStatus(StrEnum):
    """Where a control op stands: written, then applied or rejected by the controller."""

    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"


#: Keys of system metrics (CPU, memory, GPU samples) start with this; they have their own
#: step (the sample index) and are kept apart from a run's metrics when read.
SYSTEM_PREFIX = "system/"


class StoreBusyError(Exception):
    """The database is locked by another writer right now; retry later."""


@dataclass
class RunRecord:
    """One run as stored: identity, status, config, summary and lineage."""

    rid: int
    project: str
    id: str
    name: str
    group: str | None
    status: RunStatus
    config: dict[str, Any]
    summary: dict[str, Any]
    tags: list[str]
    notes: str | None
    parent: str | None
    parent_step: int | None
    metadata: dict[str, Any]
    created: float
    updated: float
    heartbeat: float | None
    finished: float | None
    last_step: int


@dataclass
class ProjectRecord:
    """A project with its run count and last activity time."""

    name: str
    created: float
    run_count: int
    last_updated: float | None


@dataclass
class SeriesChunk:
    """Points of one (run, key) series of one value kind, in logging order."""

    run: int
    key: str
    kind: str
    steps: npt.NDArray[np.int64]
    times: npt.NDArray[np.float64]
    values: Any  # numpy array for numeric kinds, list for JSON kinds


@dataclass
class MediaRow:
    """A media file already written under the home, and where it was logged."""

    run: int
    key: str
    step: int
    type: str
    path: str  # relative to the home
    meta: dict[str, Any]
    time: float


@dataclass
class AlertRow:
    """An alert raised by a run."""

    run: int
    title: str
    text: str
    level: str
    step: int | None
    time: float


@dataclass
class WriteBatch:
    """Everything one flush writes, in one transaction."""

    series: list[SeriesChunk] = field(default_factory=list)
    run_updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    media: list[MediaRow] = field(default_factory=list)
    alerts: list[AlertRow] = field(default_factory=list)
    spill_name: str | None = None  # set when replaying a spill file, for idempotence
    created: float = field(default_factory=time.time)

    def is_empty(self) -> bool:
        """True when there is nothing to write."""
        return not (self.series or self.run_updates or self.media or self.alerts)


@dataclass
class Series:
    """A decoded series sorted by step: parallel arrays of steps, times and values."""

    key: str
    steps: npt.NDArray[np.int64]
    times: npt.NDArray[np.float64]
    values: npt.NDArray[Any]


@dataclass
class KeyInfo:
    """A metric key of a run, with its number of points and step extent."""

    key: str
    count: int
    step_min: int
    step_max: int
    kinds: list[str]


@dataclass
class SeriesExtent:
    """How many points a series holds and the step and time range they span."""

    count: int
    step_min: int
    step_max: int
    time_min: float
    time_max: float


@dataclass
class Blocks:
    """Aggregates of consecutive blocks of points of a series (for charts over many points).

    Parallel arrays, one entry per block: ``step_lo`` and ``time_lo`` (the block's smallest
    step and time), ``n`` (points), ``cnt`` (non-NaN points), ``vmin``, ``vmax`` and ``vsum``
    (min, max and sum of the non-NaN values; NaN when the block has none).
    """

    step_lo: npt.NDArray[np.int64]
    time_lo: npt.NDArray[np.float64]
    n: npt.NDArray[np.int64]
    cnt: npt.NDArray[np.int64]
    vmin: npt.NDArray[np.float64]
    vmax: npt.NDArray[np.float64]
    vsum: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.n)


@dataclass
class BlockedSeries:
    """A series over an x range, read as exact ``points`` plus (optionally) ``blocks`` that
    summarise the rest; the two never cover the same point."""

    points: Series
    blocks: Blocks | None


@dataclass
class RunState:
    """The cheap-to-read, changing part of a run: for watching a project live."""

    rid: int
    id: str
    status: RunStatus
    last_step: int
    updated: float


@dataclass
class OpRecord:
    """A control request on a run, with where it came from and what became of it."""

    id: int
    project: str
    kind: OpKind
    run: str | None
    args: dict[str, Any]
    source: str
    actor: str | None
    status: OpStatus
    reason: str | None
    result: dict[str, Any]
    created: float
    applied: float | None


class ArtifactRole(StrEnum):
    """How a run is linked to an artefact version: it logged it or it used it."""

    LOGGED = "logged"
    USED = "used"


@dataclass(frozen=True)
class ArtifactFile:
    """One file of an artefact version: its path inside the artefact, the sha256 of its
    content (the name of the stored object) and its size in bytes."""

    path: str
    sha256: str
    size: int


@dataclass
class ArtifactLink:
    """A lineage link: run ``project/run_id`` logged or used a version at ``time``.
    ``purged`` is True once that run has been purged from the store."""

    run_project: str
    run_id: str
    role: ArtifactRole
    time: float
    purged: bool


@dataclass
class ArtifactRecord:
    """One stored artefact version: identity, files, aliases and lineage."""

    id: int
    project: str
    name: str
    version: int
    type: str
    digest: str
    files: list[ArtifactFile]
    size: int
    description: str | None
    metadata: dict[str, Any]
    created: float
    aliases: list[str]
    links: list[ArtifactLink]

    @property
    def producer(self) -> ArtifactLink | None:
        """The first run that logged this version (None if logged outside a run)."""
        return next((lk for lk in self.links if lk.role == ArtifactRole.LOGGED), None)

    @property
    def users(self) -> list[ArtifactLink]:
        """The runs that used this version, first use first (one link per run)."""
        return [lk for lk in self.links if lk.role == ArtifactRole.USED]


class Store(abc.ABC):
    """Storage for projects, runs, metric series, media rows and alerts.

    Implementations are used from one thread at a time per instance (the tracker's writer
    and its init path share one instance under a lock). Updatable run columns are
    ``status, config, summary, tags, notes, grp, metadata, heartbeat, finished, name`` (and
    ``created``, which importers set to the source's start time).
    """

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    @property
    @abc.abstractmethod
    def db_id(self) -> str:
        """A random id given to the database when it was created (never reused)."""

    # -- runs ---------------------------------------------------------------------------
    @abc.abstractmethod
    def create_run(
        self,
        project: str,
        id: str,
        name: str,
        *,
        group: str | None = None,
        config: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        notes: str | None = None,
        parent: str | None = None,
        parent_step: int | None = None,
        metadata: dict[str, Any] | None = None,
        status: str = RunStatus.RUNNING,
    ) -> RunRecord:
        """Create a run (and its project when new); raise ``ValueError`` if the id exists."""

    @abc.abstractmethod
    def create_or_get_run(
        self,
        project: str,
        id: str,
        name: str,
        *,
        group: str | None = None,
        config: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        notes: str | None = None,
        parent: str | None = None,
        parent_step: int | None = None,
        metadata: dict[str, Any] | None = None,
        status: str = RunStatus.RUNNING,
    ) -> tuple[RunRecord, bool]:
        """The run ``id`` of ``project``, created as :meth:`create_run` would if it does not
        exist yet; returns ``(run, created)``. Atomic: of any number of callers (in any
        processes) asking for the same new id at once, exactly one creates it and the
        others get that run with ``created`` False; an existing run is returned unchanged."""

    @abc.abstractmethod
    def find_run(self, project: str, *, id: str | None = None, name: str | None = None
                 ) -> RunRecord | None:
        """The run with this id (or else the newest with this name) in ``project``, or None."""

    @abc.abstractmethod
    def get_run(self, rid: int) -> RunRecord:
        """The run with internal id ``rid``; raise ``RunNotFoundError`` if absent."""

    @abc.abstractmethod
    def update_run(self, rid: int, **fields: Any) -> None:
        """Set run columns (JSON columns take Python objects)."""

    @abc.abstractmethod
    def update_run_if(self, rid: int, expect_status: Collection[str], **fields: Any) -> bool:
        """Set run columns as :meth:`update_run` does, but only if the run's status is one
        of ``expect_status``, checked and written in one atomic step (so a run that changed
        status meanwhile, e.g. finished or deleted by another process, is left alone).
        Return whether the columns were set; raise ``RunNotFoundError`` if absent."""

    @abc.abstractmethod
    def projects(self) -> list[ProjectRecord]:
        """Every project, oldest first."""

    @abc.abstractmethod
    def runs(self, project: str) -> list[RunRecord]:
        """Runs of ``project`` oldest first; raise ``ValueError`` for an unknown project."""

    # -- points -------------------------------------------------------------------------
    @abc.abstractmethod
    def write(self, batch: WriteBatch) -> None:
        """Write a batch atomically; raise :class:`StoreBusyError` when locked."""

    @abc.abstractmethod
    def keys(self, rid: int) -> list[KeyInfo]:
        """Metric keys logged by a run, sorted by name."""

    @abc.abstractmethod
    def series(self, rid: int, key: str, start: float | None = None,
               end: float | None = None) -> Series:
        """Points of one series with ``start <= step <= end``, sorted by step (stable)."""

    @abc.abstractmethod
    def media(self, rid: int, key: str | None = None) -> list[MediaRow]:
        """Media rows of a run (optionally of one key), by step."""

    @abc.abstractmethod
    def alerts(self, rid: int) -> list[AlertRow]:
        """Alerts of a run, oldest first."""

    # -- control ops -----------------------------------------------------------------------
    @abc.abstractmethod
    def add_op(self, project: str, kind: str, run: str | None, args: dict[str, Any],
               source: str, actor: str | None = None) -> OpRecord:
        """Record a pending control op (``kind``: an :class:`OpKind`)."""

    @abc.abstractmethod
    def ops(self, project: str, status: str | None = None, after: int = 0,
            run: str | None = None) -> list[OpRecord]:
        """Ops of a project with id > ``after``, oldest first (optionally by status/run)."""

    @abc.abstractmethod
    def get_op(self, op_id: int) -> OpRecord:
        """One op by id; ``KeyError`` if absent."""

    @abc.abstractmethod
    def finish_op(self, op_id: int, status: str, reason: str | None = None,
                  result: dict[str, Any] | None = None) -> None:
        """Mark an op applied or rejected (with the reason)."""

    @abc.abstractmethod
    def purge_run(self, rid: int) -> None:
        """Delete a run and all its tracking data (points, media rows, alerts); its
        artefact links stay, marked purged."""

    # -- artefacts ----------------------------------------------------------------------------
    @abc.abstractmethod
    def add_artifact_version(self, project: str, name: str, type: str, digest: str,
                             files: Sequence[ArtifactFile], *, description: str | None = None,
                             metadata: dict[str, Any] | None = None,
                             aliases: Sequence[str] = (), run: int | None = None
                             ) -> tuple[ArtifactRecord, bool]:
        """Record a version of artefact ``project/name`` whose content has ``digest``;
        return ``(version, created)``. Atomic.

        A version of this name with the same digest is reused (``created`` False) and kept
        as it is, apart from the aliases; otherwise the next version number is created and
        the ``latest`` alias moves to it. Each of ``aliases`` is moved to the returned
        version. ``run`` (an internal run id) is linked as having logged it. Raises
        ``ValueError`` when ``name`` already has versions of another ``type``.
        """

    @abc.abstractmethod
    def artifact_version(self, project: str, name: str, ref: str) -> ArtifactRecord:
        """The version of ``project/name`` that ``ref`` names: ``v<N>`` or an alias
        (``latest`` included); raise ``ArtifactNotFoundError`` if there is none."""

    @abc.abstractmethod
    def artifact_versions(self, project: str | None = None,
                          name: str | None = None) -> list[ArtifactRecord]:
        """Artefact versions (of one project and name if given), by project, name and
        version."""

    @abc.abstractmethod
    def use_artifact_version(self, version_id: int, run: int) -> None:
        """Link run ``run`` (internal id) as a user of version ``version_id`` (once)."""

    @abc.abstractmethod
    def run_artifacts(self, run: int) -> list[tuple[ArtifactRole, ArtifactRecord]]:
        """The versions run ``run`` logged or used, with how, in the order it did so."""

    @abc.abstractmethod
    def delete_orphaned_artifacts(self) -> list[ArtifactRecord]:
        """Delete every version that some run logged or used, none of which is still in the
        store (all purged), and return them. Aliases of a deleted version go with it;
        ``latest`` moves to the newest remaining version of its name."""

    @abc.abstractmethod
    def is_replayed(self, spill_name: str) -> bool:
        """Whether a spill file of this name has already been written to the store."""

    # -- chart reads (defaults built on the methods above; implementations may do better) --
    def series_extents(self, rids: Sequence[int], key: str) -> dict[int, SeriesExtent]:
        """Point count and step/time extent of ``key`` for each run in ``rids`` that has it."""
        out = {}
        for rid in rids:
            s = self.series(rid, key)
            if len(s.steps):
                out[rid] = SeriesExtent(len(s.steps), int(s.steps.min()), int(s.steps.max()),
                                        float(s.times.min()), float(s.times.max()))
        return out

    def series_blocks(self, rid: int, key: str, start: float | None = None,
                      end: float | None = None, x: str = "step",
                      coarse: bool = False) -> BlockedSeries:
        """Points of one series with ``start <= x <= end`` (``x`` is ``step`` or ``time``).

        With ``coarse``, an implementation may return part of the range as :class:`Blocks`
        instead of points; this default always returns exact points.
        """
        if x == "step":
            return BlockedSeries(self.series(rid, key, start, end), None)
        if x != "time":
            raise ValueError(f"x must be 'step' or 'time', got {x!r}")
        s = self.series(rid, key)
        keep = np.ones(len(s.times), dtype=bool)
        if start is not None:
            keep &= s.times >= start
        if end is not None:
            keep &= s.times <= end
        return BlockedSeries(Series(s.key, s.steps[keep], s.times[keep], s.values[keep]), None)

    def run_states(self, project: str) -> list[RunState]:
        """Id, status, last step and update time of every run of ``project`` (cheap)."""
        return [RunState(r.rid, r.id, r.status, r.last_step, r.updated)
                for r in self.runs(project)]
