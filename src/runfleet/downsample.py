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
