"""The dashboard's reads of a home: runs, chart data, media and exports, as JSON-ready dicts.

Everything here is plain Python over :class:`runfleet.Api` and its store: no HTTP. Errors a
user can cause (unknown project, run, key; a bad filter) raise
:class:`~runfleet.dashboard.spec.ApiError` with a 4xx status and a message.

Chart data (:meth:`Query.chart`): for one key and many runs, the points of each run in the
x range, either exactly (when the range holds at most ``buckets`` points) or as min, max,
mean and count per bucket on one grid shared by all runs of the chart. Over long ranges the
store answers from per-block summaries (see ``store/codec.py``), so the cost follows the
number of blocks, not points; a one-point spike still shows, as the max of its bucket.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from runfleet.api import X_AXES, Api, ApiRun, PatternError, compile_pattern, pattern_search
from runfleet.dashboard import jsonio
from runfleet.dashboard.cursor import encode_cursor
from runfleet.dashboard.spec import ApiError
from runfleet.downsample import GridBuckets
from runfleet.errors import RunNotFoundError
from runfleet.store.base import SYSTEM_PREFIX, OpRecord, Series
from runfleet.store.codec import SUMMARY_BLOCK
from runfleet.version import __version__

# Use block summaries when a bucket holds at least this many blocks' worth of points: the
# bucket a block falls in is then decided by its first point, at most 1/2 bucket off.
COARSE_BLOCKS_PER_BUCKET = 2
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".webp": "image/webp", ".json": "application/json",
               ".mp4": "video/mp4", ".webm": "video/webm", ".wav": "audio/wav",
               ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".flac": "audio/flac"}


@dataclass
class MediaFile:
    """A media file resolved inside the home, ready to be served."""

    path: Path
    media_type: str
    type: str


def run_json(run: ApiRun) -> dict[str, Any]:
    """The JSON form of a run's metadata (as listed by ``/api/runs``)."""
    return jsonio.safe({
        "id": run.id, "name": run.name, "project": run.project, "status": run.status,
        "group": run.group, "tags": run.tags, "notes": run.notes, "config": run.config,
        "summary": run.summary, "parent": run.parent, "parent_step": run.parent_step,
        "created": run.created_at, "finished": run.finished_at, "updated": run.updated_at,
        "last_step": run.last_step})


def op_json(op: OpRecord) -> dict[str, Any]:
    """The JSON form of a control op (as listed by ``GET /api/ops`` and sent on the live
    stream)."""
    return jsonio.safe({
        "id": op.id, "project": op.project, "kind": op.kind, "run": op.run, "args": op.args,
        "source": op.source, "actor": op.actor, "status": op.status, "reason": op.reason,
        "result": op.result, "created": op.created, "applied": op.applied})


def _family(run_id: str, runs: list[ApiRun]) -> list[dict[str, Any]]:
    """The clone family of ``run_id``: its oldest ancestor in ``runs`` and every descendant
    of that ancestor, parents before children (each with its parent and parent step)."""
    by_id = {r.id: r for r in runs}
    root, seen = run_id, {run_id}
    while (parent := by_id[root].parent if root in by_id else None) in by_id:
        if parent in seen:  # a cycle cannot be made by the engine; never loop on one
            break
        root = parent
        seen.add(root)
    children: dict[str, list[ApiRun]] = {}
    for r in runs:
        if r.parent:
            children.setdefault(r.parent, []).append(r)
    out: list[dict[str, Any]] = []
    todo, done = [root], set()
    while todo:
        rid = todo.pop(0)
        if rid in done or rid not in by_id:
            continue
        done.add(rid)
        r = by_id[rid]
        out.append({"id": r.id, "name": r.name, "status": r.status,
                    "parent": r.parent if r.id != root else None,
                    "parent_step": r.parent_step})
        todo.extend(c.id for c in children.get(rid, []))
    return out


def _varying_first(dicts: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> list[str]:
    """Keys of ``dicts`` holding a plain value (number, text, bool) in some run: those whose
    values differ between runs first, each group sorted. Media references and other nested
    values are left out (they are not columns to sort or plot)."""
    flat = [flatten(d) for d in dicts]
    keys = sorted({k for d in flat for k, v in d.items()
                   if not k.startswith(skip) and isinstance(v, (int, float, str, bool))})
    dicts = flat

    def varies(k: str) -> bool:
        return len({repr(d.get(k)) for d in dicts}) > 1

    return sorted(keys, key=lambda k: not varies(k))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: ``{"opt": {"lr": 1}}`` -> ``{"opt.lr": 1}``. Empty dicts
    and media references (dicts with ``_type``) stay values. The page's config and summary
    columns, and the config keys a clone may change (``control.py``), are these keys."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v and "_type" not in v:
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _numeric(values: npt.NDArray[Any]) -> npt.NDArray[np.float64] | None:
    """``values`` as float64 when every value is a number or bool (or None), else None."""
    if values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    try:
        out = np.array([np.nan if v is None else v for v in values.tolist()],
                       dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out


class Query:
    """The dashboard's read (and notes/tags edit) operations on one home.

    Example:
        >>> q = Query("/tmp/rf-doc")                    # doctest: +SKIP
        >>> q.runs("my-exp", sort="-summary.acc")      # doctest: +SKIP
    """

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self._home = home
        self._api: Api | None = None
        self._lock = threading.Lock()
        self.home_root = self.api.home.root.resolve()
        self.db_path = self.api.home.db_path

    @property
    def api(self) -> Api:
        """The home's :class:`Api`, opened on first use (again after :meth:`close`)."""
        with self._lock:
            if self._api is None:
                self._api = Api(dir=self._home)
            return self._api

    def close(self) -> None:
        """Close the database connection (the next use opens it again)."""
        with self._lock:
            if self._api is not None:
                self._api.close()
                self._api = None

    # -- projects and runs --------------------------------------------------------------------
    def projects(self) -> list[dict[str, Any]]:
        """Every project with its run count and times."""
        return [{"name": p.name, "run_count": p.run_count, "created": p.created,
                 "last_updated": p.last_updated} for p in self.api.projects()]

    def check_project(self, project: str) -> None:
        """:class:`ApiError` 404 unless ``project`` exists."""
        if project not in {p.name for p in self.api.store.projects()}:
            raise ApiError(404, f"unknown project {project!r}")

    def _project_runs(self, project: str, filters: dict[str, Any] | None = None,
                      order: str | None = None, include_deleted: bool = False
                      ) -> list[ApiRun]:
        self.check_project(project)
        try:
            return self.api.runs(project, filters=filters, order=order,
                                 include_deleted=include_deleted)
        except PatternError as exc:
            raise ApiError(400, f"bad regular expression in filter: {exc}") from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None

    def runs(self, project: str, *, search: str | None = None, regex: bool = False,
             status: Sequence[str] = (), filters: dict[str, Any] | None = None,
             sort: str | None = None, limit: int = 1000, offset: int = 0,
             include_deleted: bool = False) -> dict[str, Any]:
        """Runs of ``project`` matching the search (name or id; a regex with ``regex``),
        statuses and filters, sorted on the server; with the config and summary keys
        (those that vary between runs first) and a live-update cursor. Deleted runs are
        left out unless ``include_deleted`` (or ``status`` asks for them)."""
        runs = self._project_runs(project, filters, sort,
                                  include_deleted or "deleted" in status)
        if status:
            runs = [r for r in runs if r.status in status]
        if search:
            if regex:
                try:
                    pattern = compile_pattern(search, ignore_case=True)
                except PatternError as exc:
                    raise ApiError(400, f"bad regular expression in search: {exc}") from None
                runs = [r for r in runs
                        if pattern_search(pattern, r.name) or pattern_search(pattern, r.id)]
            else:
                needle = search.lower()
                runs = [r for r in runs if needle in r.name.lower() or needle in r.id.lower()]
        total = len(runs)
        page = runs[offset:offset + limit]
        return {
            "project": project, "total": total, "offset": offset,
            "runs": [run_json(r) for r in page],
            "config_keys": _varying_first([r.config for r in runs]),
            "summary_keys": _varying_first([r.summary for r in runs], skip=("_",)),
            "cursor": encode_cursor({r.id: r.last_step for r in runs}),
        }

    def _runs_by_id(self, project: str, ids: Sequence[str]) -> list[ApiRun]:
        runs = {r.id: r for r in self._project_runs(project)}
        missing = [i for i in ids if i not in runs]
        if missing:
            raise ApiError(404, f"unknown run {missing[0]!r} in project {project!r}")
        return [runs[i] for i in dict.fromkeys(ids)]

    def run(self, project: str, run_id: str) -> ApiRun:
        """One run; :class:`ApiError` 404 when unknown."""
        try:
            return self.api.run(project, run_id)
        except (RunNotFoundError, ValueError):
            raise ApiError(404, f"unknown run {run_id!r} in project {project!r}") from None

    def run_detail(self, project: str, run_id: str) -> dict[str, Any]:
        """Everything the run page shows: metadata, keys, lineage, alerts and media."""
        run = self.run(project, run_id)
        infos = self.api.store.keys(run.rid)
        everyone = self.api.runs(project, include_deleted=True)
        children = [{"id": r.id, "name": r.name, "status": r.status,
                     "parent_step": r.parent_step} for r in everyone if r.parent == run.id]
        parent = next(({"id": r.id, "name": r.name, "status": r.status}
                       for r in everyone if run.parent and r.id == run.parent), None)
        tree = _family(run.id, everyone)
        return {
            **run_json(run),
            "metadata": jsonio.safe(run.metadata),
            "keys": [{"key": i.key, "count": i.count, "step_min": i.step_min,
                      "step_max": i.step_max, "kinds": i.kinds,
                      "system": i.key.startswith(SYSTEM_PREFIX)} for i in infos],
            "lineage": {"parent": parent, "children": children, "tree": tree},
            "alerts": jsonio.safe(run.alerts()),
            "media": self.media(project, run_id),
        }

    def keys(self, project: str, run_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Metric keys logged by any of the runs (all runs of the project when empty): name,
        whether it can be charted, and in how many runs it appears."""
        runs = self._runs_by_id(project, run_ids) if run_ids else self._project_runs(project)
        found: dict[str, dict[str, Any]] = {}
        for r in runs:
            for info in self.api.store.keys(r.rid):
                entry = found.setdefault(info.key, {"key": info.key, "runs": 0,
                                                    "chartable": True, "points": 0,
                                                    "system": info.key.startswith(
                                                        SYSTEM_PREFIX)})
                entry["runs"] += 1
                entry["points"] += info.count
                if not set(info.kinds) <= {"f", "i", "b"}:
                    entry["chartable"] = False
        return sorted(found.values(), key=lambda e: (e["system"], e["key"]))

    def update_run(self, project: str, run_id: str, notes: str | None,
                   tags: list[str] | None) -> dict[str, Any]:
        """Set a run's notes and/or tags (the one write the dashboard makes to runs)."""
        run = self.run(project, run_id)
        fields: dict[str, Any] = {}
        if notes is not None:
            fields["notes"] = notes
        if tags is not None:
            fields["tags"] = tags
        if fields:
            self.api.store.update_run(run.rid, **fields)
        return run_json(run.refresh())

    # -- charts ---------------------------------------------------------------------------------
    def chart(self, project: str, key: str, run_ids: Sequence[str], x: str = "step",
              start: float | None = None, end: float | None = None, buckets: int = 1000,
              encoding: str = "json") -> dict[str, Any]:
        """Chart data of ``key`` for ``run_ids`` against ``x`` (``step``, ``time``,
        ``relative`` or another logged key) over ``[start, end]`` (default: all)."""
        runs = self._runs_by_id(project, run_ids)
        if start is not None and end is not None and start > end:
            raise ApiError(400, f"start ({start:g}) is after end ({end:g})")
        if x in X_AXES:
            return self._chart_axis(runs, key, x, start, end, buckets, encoding)
        return self._chart_metric(runs, key, x, start, end, buckets, encoding)

    def _chart_axis(self, runs: list[ApiRun], key: str, x: str, start: float | None,
                    end: float | None, buckets: int, encoding: str) -> dict[str, Any]:
        store = self.api.store
        extents = store.series_extents([r.rid for r in runs], key)
        by_time = x != "step"
        offset = {r.rid: (r.created_at if x == "relative" else 0.0) for r in runs}
        spans = {rid: ((e.time_min, e.time_max) if by_time else (e.step_min, e.step_max))
                 for rid, e in extents.items()}
        lo = start if start is not None else min(
            (s[0] - offset[rid] for rid, s in spans.items()), default=None)
        hi = end if end is not None else max(
            (s[1] - offset[rid] for rid, s in spans.items()), default=None)
        out = self._chart_frame(key, x, lo, hi, buckets, encoding)
        if lo is None or hi is None or lo > hi:
            out["series"] = [_exact(r, np.empty(0), np.empty(0), encoding) for r in runs]
            return out
        grid: GridBuckets | None = None
        series = []
        for r in runs:
            ext = extents.get(r.rid)
            if ext is None:
                series.append(_exact(r, np.empty(0), np.empty(0), encoding))
                continue
            off = offset[r.rid]
            q_lo, q_hi = lo + off, hi + off
            s_lo, s_hi = spans[r.rid]
            overlap = max(0.0, min(q_hi, s_hi) - max(q_lo, s_lo))
            share = overlap / (s_hi - s_lo) if s_hi > s_lo else 1.0
            coarse = ext.count * share >= buckets * COARSE_BLOCKS_PER_BUCKET * SUMMARY_BLOCK
            got = store.series_blocks(r.rid, key, None if start is None else q_lo,
                                      None if end is None else q_hi,
                                      "time" if by_time else "step", coarse)
            pts = got.points
            xs = (pts.times - off) if by_time else pts.steps
            if got.blocks is None and len(pts.steps) <= buckets:
                series.append(_exact(r, xs, pts.values, encoding))
                continue
            ys = _numeric(pts.values)
            if ys is None:
                series.append(_exact_thinned(r, xs, pts.values, buckets, encoding))
                continue
            grid = grid or GridBuckets(lo, hi, buckets)
            acc = GridBuckets(lo, hi, buckets)
            acc.add_points(xs, ys)
            if got.blocks is not None:
                b = got.blocks
                bx = (b.time_lo - off) if by_time else b.step_lo
                acc.add_blocks(bx, b.n, b.cnt, b.vmin, b.vmax, b.vsum)
            series.append(_bucketed(r, acc, encoding))
        out["series"] = series
        if grid is not None:
            out["grid"] = {"lo": lo, "hi": hi, "buckets": buckets}
        return out

    def _chart_metric(self, runs: list[ApiRun], key: str, x_key: str, start: float | None,
                      end: float | None, buckets: int, encoding: str) -> dict[str, Any]:
        store = self.api.store
        pairs: list[tuple[ApiRun, npt.NDArray[Any], npt.NDArray[Any]]] = []
        seen_x = False
        for r in runs:
            xs_series = store.series(r.rid, x_key)
            seen_x = seen_x or len(xs_series.steps) > 0
            xs, ys = _join_on_step(xs_series, store.series(r.rid, key))
            keep = np.ones(len(xs), dtype=bool)
            if start is not None:
                keep &= xs >= start
            if end is not None:
                keep &= xs <= end
            xs, ys = xs[keep], ys[keep]
            order = np.argsort(xs, kind="stable")
            pairs.append((r, xs[order], ys[order]))
        if not seen_x:
            raise ApiError(400, f"x={x_key!r} is neither step, time, relative nor a key "
                                f"logged by these runs")
        lo = start if start is not None else min(
            (float(p[1][0]) for p in pairs if len(p[1])), default=None)
        hi = end if end is not None else max(
            (float(p[1][-1]) for p in pairs if len(p[1])), default=None)
        out = self._chart_frame(key, x_key, lo, hi, buckets, encoding)
        series = []
        bucketed = False
        for r, xs, ys in pairs:
            if len(xs) <= buckets or lo is None or hi is None:
                series.append(_exact(r, xs, ys, encoding))
                continue
            num = _numeric(ys)
            if num is None:
                series.append(_exact_thinned(r, xs, ys, buckets, encoding))
                continue
            acc = GridBuckets(lo, hi, buckets)
            acc.add_points(xs, num)
            series.append(_bucketed(r, acc, encoding))
            bucketed = True
        out["series"] = series
        if bucketed:
            out["grid"] = {"lo": lo, "hi": hi, "buckets": buckets}
        return out

    @staticmethod
    def _chart_frame(key: str, x: str, lo: float | None, hi: float | None, buckets: int,
                     encoding: str) -> dict[str, Any]:
        return {"key": key, "x": x, "start": lo, "end": hi, "buckets": buckets,
                "encoding": encoding, "grid": None, "series": []}

    # -- media ----------------------------------------------------------------------------------
    def media(self, project: str, run_id: str, key: str | None = None) -> list[dict[str, Any]]:
        """Media rows of a run: index (for :meth:`media_file`), key, step, type, meta."""
        run = self.run(project, run_id)
        rows = self.api.store.media(run.rid)
        return [{"index": i, "key": m.key, "step": m.step, "type": m.type, "time": m.time,
                 "meta": jsonio.safe(m.meta)}
                for i, m in enumerate(rows) if key is None or m.key == key]

    def media_file(self, project: str, run_id: str, index: int) -> MediaFile:
        """The file of media row ``index``; refused (403) if its path leaves the home."""
        run = self.run(project, run_id)
        rows = self.api.store.media(run.rid)
        if not 0 <= index < len(rows):
            raise ApiError(404, f"run {run_id!r} has no media item {index}")
        row = rows[index]
        path = (self.home_root / row.path).resolve()
        if not path.is_relative_to(self.home_root):
            raise ApiError(403, "media path points outside the runfleet home")
        if not path.is_file():
            raise ApiError(404, f"media file of item {index} is missing")
        suffix = path.suffix.lower()
        return MediaFile(path, MEDIA_TYPES.get(suffix, "application/octet-stream"), row.type)

    # -- export ---------------------------------------------------------------------------------
    def export_csv(self, project: str, run_ids: Sequence[str], keys: Sequence[str] | None,
                   fh: IO[str]) -> int:
        """Write the long-layout CSV of the runs (all when empty) to ``fh``; return rows."""
        from runfleet.export import export_runs

        runs = self._runs_by_id(project, run_ids) if run_ids else self._project_runs(project)
        return export_runs(runs, fmt="csv", path=fh, keys=keys or None, stream="all",
                           meta=False)

    def health(self) -> dict[str, Any]:
        """Version and home, for the page header and for checks."""
        return {"ok": True, "version": __version__, "home": str(self.home_root)}


# -- series shaping -----------------------------------------------------------------------------
def _exact(run: ApiRun, xs: npt.NDArray[Any], ys: npt.NDArray[Any],
           encoding: str) -> dict[str, Any]:
    xs, ys = np.asarray(xs), np.asarray(ys)
    if encoding == "base64" and ys.dtype.kind in "fiub":
        x_out = jsonio.floats(xs, encoding)
        y_out = jsonio.floats(ys.astype(np.float64), encoding)
    else:
        x_out = xs.tolist() if xs.dtype.kind in "iu" else jsonio.floats(xs)
        y_out = jsonio.values(ys)
    return {"run": run.id, "mode": "exact", "count": len(xs), "x": x_out, "y": y_out}


def _exact_thinned(run: ApiRun, xs: npt.NDArray[Any], ys: npt.NDArray[Any], buckets: int,
                   encoding: str) -> dict[str, Any]:
    """Text values cannot be bucketed: send at most ``buckets`` evenly spaced points."""
    pick = np.unique(np.linspace(0, len(xs) - 1, buckets).round().astype(int))
    out = _exact(run, xs[pick], ys[pick], "json")
    out["total"] = len(xs)
    return out


def _bucketed(run: ApiRun, acc: GridBuckets, encoding: str) -> dict[str, Any]:
    res = acc.result()
    empty = res["count"] == 0
    return {"run": run.id, "mode": "buckets", "count": int(res["count"].sum()),
            "min": jsonio.floats(res["min"], encoding, empty),
            "max": jsonio.floats(res["max"], encoding, empty),
            "mean": jsonio.floats(res["mean"], encoding, empty),
            "n": jsonio.ints(res["count"], encoding)}


def _join_on_step(x: Series, y: Series) -> tuple[npt.NDArray[np.float64], npt.NDArray[Any]]:
    """Pair each point of ``y`` with the numeric value of ``x`` logged at the same step (the
    last one when a step repeats); points without such a value are dropped."""
    xv = _numeric(x.values)
    if xv is None or not len(x.steps) or not len(y.steps):
        return np.empty(0), np.empty(0)
    pos = np.searchsorted(x.steps, y.steps, side="right") - 1
    ok = pos >= 0
    ok[ok] = x.steps[pos[ok]] == y.steps[ok]
    xs = xv[pos[ok]]
    ys = y.values[ok]
    finite = ~np.isnan(xs)
    return xs[finite], ys[finite]
