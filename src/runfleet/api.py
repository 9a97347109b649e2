"""Read access to a home: projects, runs, histories, series scans and downsampling.

Example:
    >>> import runfleet
    >>> api = runfleet.Api(dir="/tmp/rf-doc")
    >>> runs = api.runs("doc", filters={"config.lr": 0.1})        # doctest: +SKIP
    >>> df = runs[0].history(keys=["loss"])                       # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import re2  # type: ignore[import-untyped]  # google-re2: linear-time matching

from runfleet import downsample as ds
from runfleet.artifacts import Artifact, use_artifact
from runfleet.errors import RunNotFoundError
from runfleet.home import Home
from runfleet.store.base import SYSTEM_PREFIX, RunRecord, RunStatus, Series, Store
from runfleet.store.sqlite import SQLiteStore
from runfleet.tracking.deletion import delete_run, process_alive, restore_run
from runfleet.tracking.media import MEDIA_TYPES
from runfleet.tracking.urls import run_url

if TYPE_CHECKING:
    import pandas as pd

X_AXES = ("step", "time", "relative")


class Project(str):
    """A project name (a ``str``) with ``run_count``, ``created`` and ``last_updated``."""

    name: str
    run_count: int
    created: float
    last_updated: float | None

    def __new__(cls, name: str, run_count: int, created: float,
                last_updated: float | None) -> Project:
        obj = super().__new__(cls, name)
        obj.name = name
        obj.run_count = run_count
        obj.created = created
        obj.last_updated = last_updated
        return obj


class Api:
    """Access to the runs in a home (``dir``, else ``RUNFLEET_DIR``, else default): reads,
    plus :meth:`ApiRun.delete` and :meth:`ApiRun.restore`."""

    def __init__(self, dir: str | os.PathLike[str] | None = None) -> None:
        self.home = Home.resolve(dir)
        if not self.home.db_path.exists():
            self.home.ensure()
        self._store: Store = SQLiteStore.open(self.home.db_path)

    def close(self) -> None:
        """Close the database connection."""
        self._store.close()

    @property
    def store(self) -> Store:
        """The store this Api reads (for readers that need more than runs and histories,
        such as the dashboard's chart queries)."""
        return self._store

    def wrap(self, record: RunRecord) -> ApiRun:
        """An :class:`ApiRun` for a stored run record of this home."""
        return ApiRun(self, record)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def projects(self) -> list[Project]:
        """Every project in the home, oldest first."""
        return [Project(p.name, p.run_count, p.created, p.last_updated)
                for p in self._store.projects()]

    def runs(self, project: str, filters: Mapping[str, Any] | None = None,
             order: str | None = None, include_deleted: bool = False) -> list[ApiRun]:
        """Runs of ``project`` matching ``filters``, oldest first unless ``order`` is given.

        Filters map a field to a value (equality) or to operators ``$eq $ne $gt $gte $lt
        $lte $in $nin $regex $exists``. Fields: ``config.<key>``, ``summary.<key>``,
        ``status``, ``name``, ``id``, ``group``, ``tags`` (a run matches if it has the tag),
        ``parent``. ``order`` is a field, ``-field`` for descending (e.g. ``-summary.acc``).
        Raises ``ValueError`` for an unknown project.
        """
        runs = [ApiRun(self, r) for r in self._store.runs(project)]
        if not include_deleted:
            runs = [r for r in runs if r.status != "deleted"]
        if filters:
            _check_filters(filters)
            runs = [r for r in runs if all(_matches(r._field(k), cond)
                                           for k, cond in filters.items())]
        if order:
            desc = order.startswith("-")
            field = order.lstrip("-+")
            present = [r for r in runs if r._field(field) is not _MISSING]
            missing = [r for r in runs if r._field(field) is _MISSING]
            present.sort(key=lambda r: _sort_key(r._field(field)), reverse=desc)
            runs = present + missing
        return runs

    def run(self, path: str, id: str | None = None) -> ApiRun:
        """One run by ``"project/id"`` (or ``run(project, id)``); raises ``RunNotFoundError``.

        wandb's ``"entity/project/id"`` works too: the entity is ignored when no project
        is named ``entity/project``."""
        if id is None:
            if "/" not in path:
                raise ValueError(f"run() needs 'project/id', got {path!r}")
            path, id = path.rsplit("/", 1)
        record = self._store.find_run(path, id=id)
        if record is None and "/" in path:  # wandb's entity/project/id
            record = self._store.find_run(path.split("/", 1)[1], id=id)
            if record is not None:
                path = record.project
        if record is None:
            raise RunNotFoundError(f"no run {id!r} in project {path!r}")
        return ApiRun(self, record)

    def artifact(self, name: str, type: str | None = None) -> Artifact:
        """The artefact version ``"project/name:version_or_alias"`` (``:latest`` when no
        version is given), for reading outside a run: ``.download()``, ``.file()``,
        ``.producer``, ``.users``. Records no lineage (use ``run.use_artifact`` for that).
        Raises ``ArtifactNotFoundError``, or ``ValueError`` if it is not of ``type``."""
        if "/" not in name.partition(":")[0]:
            raise ValueError(f"artifact() needs 'project/name[:version]', got {name!r}")
        return use_artifact(self._store, self.home, "", name, type=type)

    def artifacts(self, project: str | None = None) -> list[Artifact]:
        """Every artefact version (of ``project`` if given), by project, name and version."""
        return [Artifact.from_record(r, self.home)
                for r in self._store.artifact_versions(project)]


_MISSING = object()
_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex", "$exists")


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    """``tree[dotted]`` (flat dotted keys, as the engine stores them), else a walk through
    nested dicts (``{"opt": {"lr": 0.1}}`` for ``"opt.lr"``), else missing."""
    if dotted in tree:
        return tree[dotted]
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _check_filters(filters: Mapping[str, Any]) -> None:
    for field, cond in filters.items():
        if isinstance(cond, Mapping) and cond and all(str(k).startswith("$") for k in cond):
            bad = [op for op in cond if op not in _OPERATORS]
            if bad:
                raise ValueError(f"unknown filter operator {bad[0]!r} for {field!r}; use "
                                 f"{' '.join(_OPERATORS)}")
            if "$regex" in cond:
                compile_pattern(str(cond["$regex"]))  # refused before any run is read


MAX_PATTERN = 1000
"""Longest regular expression accepted by ``$regex`` filters and the dashboard's search."""


class PatternError(ValueError):
    """A regular expression runfleet refuses: too long, or not in RE2's syntax (for
    example a backreference or a lookaround). The message says which and why."""


def compile_pattern(pattern: str, ignore_case: bool = False) -> Any:
    """``pattern`` compiled by RE2 (the ``google-re2`` package), for :func:`pattern_search`.

    RE2 runs in time linear in the text, whatever the pattern: a pattern such as
    ``(.*.*.*)*Z``, which makes a backtracking engine (Python's ``re``) run for hours, costs
    RE2 a single pass. Its syntax is Python's except backreferences, lookaround and ``\\Z``
    (write ``\\z``). Raises :class:`PatternError` for a pattern over :data:`MAX_PATTERN`
    characters or one RE2 cannot compile.

    Example:
        >>> pattern_search(compile_pattern("^run-[0-9]+$"), "run-12")
        True
    """
    if len(pattern) > MAX_PATTERN:
        raise PatternError(f"regular expression of {len(pattern)} characters: at most "
                           f"{MAX_PATTERN} are accepted")
    return _compile(pattern, ignore_case)


@functools.lru_cache(maxsize=64)
def _compile(pattern: str, ignore_case: bool) -> Any:
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, options)
    except UnicodeEncodeError:
        raise PatternError("regular expression holds a lone surrogate (not text)") from None
    except re2.error as exc:
        why = exc.args[0] if exc.args else exc
        if isinstance(why, bytes):
            why = why.decode("utf-8", "replace")
        raise PatternError(f"unsupported regular expression {pattern!r}: {why} (patterns "
                           f"run on RE2, in linear time: no backreferences or lookaround; "
                           f"\\z for the end of text)") from None


def pattern_search(compiled: Any, text: str) -> bool:
    """Whether the pattern of :func:`compile_pattern` matches somewhere in ``text``. A lone
    surrogate in ``text`` (not valid Unicode) is matched as ``?``."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
    return compiled.search(data) is not None


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value) if value == value else (2, 0)
    return (1, str(value))


def _matches(value: Any, cond: Any) -> bool:
    if isinstance(cond, Mapping) and cond and all(str(k).startswith("$") for k in cond):
        return all(_op(value, op, arg) for op, arg in cond.items())
    if isinstance(value, (list, tuple)) and not isinstance(cond, (list, tuple)):
        return cond in value
    return value is not _MISSING and bool(value == cond)


def _op(value: Any, op: str, arg: Any) -> bool:
    if op == "$exists":
        return (value is not _MISSING) == bool(arg)
    if value is _MISSING:
        return op in ("$ne", "$nin")
    try:
        if op == "$eq":
            return bool(value == arg)
        if op == "$ne":
            return bool(value != arg)
        if op == "$gt":
            return bool(value > arg)
        if op == "$gte":
            return bool(value >= arg)
        if op == "$lt":
            return bool(value < arg)
        if op == "$lte":
            return bool(value <= arg)
        if op == "$in":
            return value in arg
        if op == "$nin":
            return value not in arg
        if op == "$regex":
            return pattern_search(compile_pattern(str(arg)), str(value))
    except TypeError:
        return False
    raise ValueError(f"unknown filter operator {op!r}; use $eq $ne $gt $gte $lt $lte $in "
                     f"$nin $regex $exists")


class ApiRun:
    """A stored run: metadata attributes plus :meth:`history`, :meth:`scan` and friends."""

    def __init__(self, api: Api, record: RunRecord) -> None:
        self._api = api
        self._record = record

    # -- metadata ---------------------------------------------------------------------------
    @property
    def id(self) -> str:
        """The run id."""
        return self._record.id

    @property
    def rid(self) -> int:
        """The store's internal id of the run (unique within a home)."""
        return self._record.rid

    @property
    def updated_at(self) -> float:
        """When the run's row last changed (seconds since the epoch)."""
        return self._record.updated

    @property
    def name(self) -> str:
        """The display name."""
        return self._record.name

    @property
    def project(self) -> str:
        """The project name."""
        return self._record.project

    @property
    def path(self) -> str:
        """``project/id``."""
        return f"{self.project}/{self.id}"

    @property
    def group(self) -> str | None:
        """The group label, if any."""
        return self._record.group

    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration."""
        return dict(self._record.config)

    @property
    def summary(self) -> dict[str, Any]:
        """The run's summary (last value per metric, or as ``define_metric`` says)."""
        return dict(self._record.summary)

    @property
    def tags(self) -> list[str]:
        """Tags."""
        return list(self._record.tags)

    @property
    def notes(self) -> str | None:
        """Notes."""
        return self._record.notes

    @property
    def parent(self) -> str | None:
        """The id of the run this one was cloned from, if any."""
        return self._record.parent

    @property
    def parent_step(self) -> int | None:
        """The parent's step at the time of cloning."""
        return self._record.parent_step

    @property
    def created_at(self) -> float:
        """Creation time (seconds since the epoch)."""
        return self._record.created

    @property
    def finished_at(self) -> float | None:
        """Finish time, if finished."""
        return self._record.finished

    @property
    def metadata(self) -> dict[str, Any]:
        """Host, pid, argv, metric definitions and other bookkeeping."""
        return dict(self._record.metadata)

    @property
    def last_step(self) -> int:
        """The largest step logged (-1 when nothing was logged)."""
        return self._record.last_step

    @property
    def status(self) -> str:
        """``running``, ``completed``, ``failed``, ``stopped``, ``crashed`` (a running run
        whose process is gone), or an engine status."""
        r = self._record
        if r.status == RunStatus.RUNNING and self._looks_dead():
            return RunStatus.CRASHED
        return r.status

    def _looks_dead(self) -> bool:
        return not process_alive(self._record)

    def delete(self) -> ApiRun:
        """Delete this run softly: hidden from listings, kept until ``runfleet gc`` purges
        it, recoverable meanwhile with :meth:`restore` (see
        :mod:`runfleet.tracking.deletion`). Raises
        :class:`~runfleet.tracking.deletion.DeleteRefusedError` for a run still running or
        a run of an engine experiment (delete those with ``Experiment.delete``)."""
        self._record = delete_run(self._api._store, self._api.home, self._record)
        return self

    def restore(self) -> ApiRun:
        """Undo :meth:`delete`: the run gets back its previous status and shows again."""
        self._record = restore_run(self._api._store, self._api.home, self._record)
        return self

    def _field(self, name: str) -> Any:
        head, _, rest = name.partition(".")
        if head == "config" and rest:
            return _lookup(self._record.config, rest)
        if head == "summary" and rest:
            return _lookup(self._record.summary, rest)
        simple = {"status": self.status, "name": self.name, "id": self.id, "group": self.group,
                  "tags": self.tags, "parent": self.parent, "created": self.created_at,
                  "notes": self.notes, "last_step": self.last_step}
        if name in simple:
            return simple[name]
        raise ValueError(f"unknown run field {name!r}: use config.<key>, summary.<key>, "
                         f"status, name, id, group, tags, parent, created, last_step")

    @property
    def summary_metrics(self) -> dict[str, Any]:
        """The summary (wandb's name for it): same as :attr:`summary`."""
        return self.summary

    @property
    def url(self) -> str:
        """The run's page in the dashboard ``runfleet show`` serves (see
        :func:`runfleet.tracking.urls.run_url`; ``RUNFLEET_DASHBOARD_URL`` overrides the
        default ``http://127.0.0.1:7760/``)."""
        return run_url(self.project, self.id)

    def refresh(self) -> ApiRun:
        """Re-read the run's metadata from the store."""
        self._record = self._api._store.get_run(self._record.rid)
        return self

    def __repr__(self) -> str:
        return f"<ApiRun {self.path} name={self.name!r} status={self.status}>"

    # -- series -------------------------------------------------------------------------------
    def keys(self, stream: str = "default") -> list[str]:
        """Metric keys; ``stream="system"`` lists system metrics, ``"all"`` both."""
        infos = self._api._store.keys(self._record.rid)
        return [i.key for i in infos if _in_stream(i.key, stream)]

    def series(self, key: str, start: float | None = None, end: float | None = None) -> Series:
        """The raw series of one key with ``start <= step <= end`` (numpy arrays)."""
        return self._api._store.series(self._record.rid, key, start, end)

    def history(self, keys: list[str] | None = None, x: str = "step",
                samples: int | None = None, stream: str = "default") -> pd.DataFrame:
        """All points as a DataFrame: one row per step, one column per key, exact values.

        Columns ``_step``, ``_timestamp`` and ``_runtime`` (seconds since the run started)
        come first. ``x`` picks the index-like column to sort by: ``step``, ``time``, or
        another metric (rows are then sorted by it). ``samples`` returns at most that many
        evenly spaced rows. ``stream="system"`` returns system metrics instead.
        """
        import pandas as pd

        names = list(keys) if keys is not None else self.keys(stream)
        by_metric = x not in ("step", "_step", "time", "relative")
        if by_metric and x not in self.keys("all"):
            raise ValueError(f"x={x!r} is neither step, time, relative nor a logged key")
        if by_metric and x not in names:
            names.append(x)  # the x metric is needed as a column to sort by
        series = [self.series(k) for k in names]
        frame = _wide_frame(series)
        frame.insert(2, "_runtime", frame["_timestamp"] - self._record.created)
        if x not in ("step", "_step"):
            column = {"time": "_timestamp", "relative": "_runtime"}.get(x, x)
            frame = frame.sort_values(column, kind="stable", ignore_index=True)
        if samples is not None and len(frame) > samples > 0:
            pick = np.unique(np.linspace(0, len(frame) - 1, samples).round().astype(int))
            frame = frame.iloc[pick].reset_index(drop=True)
        return pd.DataFrame(frame)

    def scan(self, keys: list[str] | None = None, start: float | None = None,
             end: float | None = None, x: str = "step") -> pd.DataFrame:
        """Points with ``start <= x <= end`` in long form: columns ``key, step, time, value``.

        ``x`` is ``step`` (read only the segments in range), ``time`` or ``relative``.
        """
        import pandas as pd

        _check_x(x)
        names = keys if keys is not None else self.keys()
        parts = []
        for key in names:
            if x == "step":
                s = self.series(key, start, end)
                sel = slice(None)
                xs: Any = s.steps
            else:
                s = self.series(key)
                xs = _x_values(s, x, self._record.created)
                sel = (xs >= (-np.inf if start is None else start)) & \
                    (xs <= (np.inf if end is None else end))
            parts.append(pd.DataFrame({"key": key, "step": s.steps[sel], "time": s.times[sel],
                                       "value": s.values[sel]}))
        if not parts:
            return pd.DataFrame({"key": [], "step": [], "time": [], "value": []})
        return pd.concat(parts, ignore_index=True)

    def scan_history(self, keys: list[str] | None = None, page_size: int = 1000,
                     min_step: int | None = None, max_step: int | None = None
                     ) -> Iterator[dict[str, Any]]:
        """Every logged step as a dict row, oldest first, read ``page_size`` steps at a time
        (wandb's ``scan_history``).

        Each row has ``_step``, ``_timestamp`` (the latest time of its values) and the
        metrics logged at that step; without ``keys`` every metric (not system metrics) is
        read and a row holds those present at its step; with ``keys`` only rows where
        every one of them is present are returned, holding those keys and ``_step``. Values
        are exact (ints stay ints). A step logged twice gives one row per occurrence.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        names = list(keys) if keys is not None else self.keys()
        first = 0 if min_step is None else max(0, int(min_step))
        last = self.last_step if max_step is None else min(int(max_step), self.last_step)
        for lo in range(first, last + 1, page_size):
            hi = min(lo + page_size - 1, last)
            rows: dict[tuple[int, int], dict[str, Any]] = {}
            for name in names:
                s = self.series(name, lo, hi)
                occurrence = _occurrence(s.steps)
                for step, occ, when, value in zip(s.steps.tolist(), occurrence.tolist(),
                                                  s.times.tolist(), s.values.tolist(),
                                                  strict=True):
                    row = rows.setdefault((step, occ), {"_step": step})
                    row[name] = value
                    row["_timestamp"] = max(row.get("_timestamp", when), when)
            for _, row in sorted(rows.items()):
                if keys is not None:
                    if not all(k in row for k in names):
                        continue
                    row.pop("_timestamp", None)
                yield row

    def downsample(self, key: str, buckets: int = 1000, start: float | None = None,
                   end: float | None = None, x: str = "step") -> pd.DataFrame:
        """Min and max per bucket of one series over ``[start, end]`` (for charts).

        Returns columns ``x`` (bucket start, or the point's x when exact), ``min``, ``max``,
        ``first``, ``last`` and ``count``. When the range holds at most ``buckets`` points
        they come back exactly (``min == max == value``, ``count == 1``), so spikes are
        never lost at any zoom level.
        """
        import pandas as pd

        _check_x(x)
        s = self.series(key, start, end) if x == "step" else self.series(key)
        xs = _x_values(s, x, self._record.created)
        return pd.DataFrame(ds.min_max_buckets(xs, s.values, buckets, start, end))

    # -- media and alerts ---------------------------------------------------------------------
    def media(self, key: str | None = None, load: bool = True) -> list[dict[str, Any]]:
        """Media logged by the run: dicts with ``key, step, type, path, meta`` and, with
        ``load``, ``value`` (a PIL image, a DataFrame, or a :class:`Histogram`)."""
        out = []
        for m in self._api._store.media(self._record.rid, key):
            path = (self._api.home.root / m.path).resolve()
            item: dict[str, Any] = {"key": m.key, "step": m.step, "type": m.type,
                                    "path": str(path), "meta": m.meta, "time": m.time}
            if load:
                cls = MEDIA_TYPES.get(m.type)
                item["value"] = cls.load(Path(path), m.meta) if cls else None
            out.append(item)
        return out

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts raised by the run, oldest first."""
        return [{"title": a.title, "text": a.text, "level": a.level, "step": a.step,
                 "time": a.time} for a in self._api._store.alerts(self._record.rid)]


def _in_stream(key: str, stream: str) -> bool:
    if stream == "all":
        return True
    if stream == "system":
        return key.startswith(SYSTEM_PREFIX)
    if stream == "default":
        return not key.startswith(SYSTEM_PREFIX)
    raise ValueError(f"stream must be 'default', 'system' or 'all', got {stream!r}")


def _check_x(x: str) -> None:
    if x not in X_AXES:
        raise ValueError(f"x must be one of {X_AXES}, got {x!r}")


def _x_values(s: Series, x: str, created: float) -> Any:
    if x == "step":
        return s.steps
    if x == "time":
        return s.times
    return s.times - created


def _wide_frame(series: list[Series]) -> pd.DataFrame:
    """Join series on step into one row per step (a repeated step gets extra rows)."""
    import pandas as pd

    if not series:
        return pd.DataFrame({"_step": np.empty(0, np.int64), "_timestamp": np.empty(0)})
    first = series[0].steps
    aligned = all(len(s.steps) == len(first) and np.array_equal(s.steps, first)
                  for s in series)
    unique = len(first) < 2 or bool(np.all(first[1:] > first[:-1]))
    if aligned and unique:
        data: dict[str, Any] = {"_step": first, "_timestamp": series[0].times}
        for s in series:
            # object columns stay object: pandas would turn text + None into NaN strings
            data[s.key] = pd.Series(s.values, dtype=object) if s.values.dtype == object \
                else s.values
        return pd.DataFrame(data)
    frames = []
    for s in series:
        occurrence = _occurrence(s.steps)
        # Nullable dtypes keep ints and bools exact where other keys add rows without them.
        values: Any = s.values
        if values.dtype.kind in "iu":
            values = pd.array(values, dtype="Int64")
        elif values.dtype.kind == "b":
            values = pd.array(values, dtype="boolean")
        elif values.dtype == object:
            values = pd.Series(values, dtype=object)
        frames.append(pd.DataFrame({"_step": s.steps, "_occ": occurrence,
                                    "_t_" + s.key: s.times, s.key: values}))
    merged = frames[0]
    for f in frames[1:]:
        merged = merged.merge(f, on=["_step", "_occ"], how="outer", sort=False)
    # one block per column after many merges: consolidate before inserting columns
    merged = merged.sort_values(["_step", "_occ"], kind="stable", ignore_index=True).copy()
    tcols = [c for c in merged.columns if str(c).startswith("_t_")]
    stamps = merged[tcols].to_numpy(dtype=np.float64)
    with np.errstate(all="ignore"):
        merged.insert(1, "_timestamp", np.nanmax(stamps, axis=1) if len(merged) else [])
    out = merged.drop(columns=[*tcols, "_occ"])
    return out


def _occurrence(steps: Any) -> Any:
    """0 for the first point at a step, 1 for the second, ... (steps sorted)."""
    n = len(steps)
    if n == 0:
        return np.empty(0, np.int64)
    starts = np.r_[0, np.flatnonzero(steps[1:] != steps[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    return np.arange(n) - run_start
