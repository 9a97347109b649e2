"""Min/max-per-bucket downsampling of a series, the query behind every chart.

A bucket keeps the minimum and the maximum of its points, so a one-point spike survives any
zoom level, unlike random or reservoir sampling. When the range holds no more points than
buckets, the points are returned exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def min_max_buckets(xs: npt.NDArray[Any], values: npt.NDArray[Any], buckets: int,
                    start: float | None = None, end: float | None = None) -> dict[str, Any]:
    """Bucket ``values`` by ``xs`` (sorted) into ``buckets`` equal x-intervals over
    ``[start, end]``; return columns ``x, min, max, first, last, count`` as arrays.

    Non-numeric values cannot be bucketed: they are returned exactly (up to ``buckets``
    evenly spaced points). NaN points are ignored by min and max; a bucket of only NaN
    has NaN min and max.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    xs = np.asarray(xs)
    values = np.asarray(values)
    if len(xs) > 1 and np.any(xs[1:] < xs[:-1]):
        order = np.argsort(xs, kind="stable")
        xs, values = xs[order], values[order]
    lo = xs[0] if start is None and len(xs) else start
    hi = xs[-1] if end is None and len(xs) else end
    if len(xs) and (start is not None or end is not None):
        keep = (xs >= lo) & (xs <= hi)
        xs, values = xs[keep], values[keep]
    if values.dtype == object and len(values) and all(
            isinstance(v, (int, float, np.integer, np.floating)) for v in values):
        values = values.astype(np.float64)  # a key mixing ints and floats is numeric too
    numeric = values.dtype.kind in "fiub"
    if len(xs) <= buckets or not numeric:
        if len(xs) > buckets:
            pick = np.unique(np.linspace(0, len(xs) - 1, buckets).round().astype(int))
            xs, values = xs[pick], values[pick]
        ones = np.ones(len(xs), dtype=np.int64)
        return {"x": xs, "min": values, "max": values, "first": values, "last": values,
                "count": ones}
    v = values.astype(np.float64, copy=False)
    edges = np.linspace(float(lo), float(hi), buckets + 1)  # type: ignore[arg-type]
    idx = np.searchsorted(xs, edges[:-1], side="left")
    idx[0] = 0
    counts = np.diff(np.r_[idx, len(xs)])
    nonempty = counts > 0
    starts = idx[nonempty]
    with np.errstate(invalid="ignore"):
        vmin = np.fmin.reduceat(v, starts)
        vmax = np.fmax.reduceat(v, starts)
    ends = np.r_[starts[1:], len(xs)] - 1
    return {"x": xs[starts], "min": vmin, "max": vmax, "first": v[starts], "last": v[ends],
            "count": counts[nonempty]}


class GridBuckets:
    """Min, max, mean and count per bucket on a grid shared by many series.

    The grid splits ``[lo, hi]`` into ``buckets`` equal intervals; bucket ``i`` covers
    ``[lo + i*w, lo + (i+1)*w)`` and the last one also holds ``hi``. Points and block
    summaries (see :class:`runfleet.store.base.Blocks`) can be added in any order; a block
    counts in the bucket holding its first x. NaN values are ignored by min, max and mean.

    Example:
        >>> g = GridBuckets(0.0, 10.0, 2)
        >>> g.add_points(np.array([1.0, 2.0, 9.0]), np.array([5.0, -1.0, 3.0]))
        >>> g.result()["max"].tolist()
        [5.0, 3.0]
    """

    def __init__(self, lo: float, hi: float, buckets: int) -> None:
        if buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {buckets}")
        self.lo, self.hi, self.buckets = float(lo), float(hi), int(buckets)
        self.vmin = np.full(buckets, np.nan)
        self.vmax = np.full(buckets, np.nan)
        self.vsum = np.zeros(buckets)
        self.cnt = np.zeros(buckets, dtype=np.int64)
        self.count = np.zeros(buckets, dtype=np.int64)

    def _index(self, xs: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
        xs = np.asarray(xs, dtype=np.float64)
        keep = (xs >= self.lo) & (xs <= self.hi)
        width = self.hi - self.lo
        if width <= 0:
            idx = np.zeros(int(keep.sum()), dtype=np.int64)
        else:
            idx = ((xs[keep] - self.lo) * (self.buckets / width)).astype(np.int64)
            np.minimum(idx, self.buckets - 1, out=idx)
        return idx, keep

    def add_points(self, xs: npt.NDArray[Any], values: npt.NDArray[Any]) -> None:
        """Add points (numeric ``values``; bools count as 0 and 1)."""
        idx, keep = self._index(xs)
        v = np.asarray(values, dtype=np.float64)[keep]
        present = ~np.isnan(v)
        self._add(idx, np.ones(len(idx), dtype=np.int64), present.astype(np.int64), v, v,
                  np.where(present, v, 0.0))

    def add_blocks(self, xs: npt.NDArray[Any], n: npt.NDArray[Any], cnt: npt.NDArray[Any],
                   vmin: npt.NDArray[Any], vmax: npt.NDArray[Any],
                   vsum: npt.NDArray[Any]) -> None:
        """Add block summaries, each placed by its first x."""
        idx, keep = self._index(xs)
        self._add(idx, n[keep], cnt[keep], vmin[keep], vmax[keep], vsum[keep])

    def _add(self, idx: npt.NDArray[np.int64], n: npt.NDArray[Any], cnt: npt.NDArray[Any],
             vmin: npt.NDArray[Any], vmax: npt.NDArray[Any], vsum: npt.NDArray[Any]) -> None:
        if not len(idx):
            return
        np.fmin.at(self.vmin, idx, vmin)
        np.fmax.at(self.vmax, idx, vmax)
        np.add.at(self.vsum, idx, vsum)
        np.add.at(self.cnt, idx, cnt)
        np.add.at(self.count, idx, n)

    def result(self) -> dict[str, npt.NDArray[Any]]:
        """Arrays ``min, max, mean`` (NaN where a bucket has no non-NaN value) and
        ``count`` (points per bucket, NaN included; 0 marks an empty bucket)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self.cnt > 0, self.vsum / np.maximum(self.cnt, 1), np.nan)
        return {"min": self.vmin, "max": self.vmax, "mean": mean, "count": self.count}

    def edges(self) -> npt.NDArray[np.float64]:
        """The ``buckets + 1`` bucket edges."""
        return np.linspace(self.lo, self.hi, self.buckets + 1)
