"""Confidence intervals for the mean of a metric over a finite eval set, seen in part.

The N queries of an eval set are shuffled once and scored shard by shard; after n of them
these intervals bound the mean over all N (a finite population sampled without
replacement), so every interval shrinks to the exact mean when n == N.

- ``mean_interval``: fixed-n 95% interval (Student t with the finite-population correction,
  Wilson score for 0/1 metrics); valid at any one n chosen in advance.
- ``anytime_interval``: valid at every n at once (a confidence sequence), so it may be
  watched after every shard and used to stop early.
- ``compare``: interval for the mean per-query difference of two runs.

Inputs with NaN are refused (ValueError); values past a bound by rounding (1.0000000000000002,
-1e-17) are clipped; nothing here can raise a math domain error.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["Interval", "Values", "anytime_interval", "compare", "mean_interval"]

#: Per-query metric values: a sequence of floats or a 1-D numpy array.
Values: TypeAlias = Sequence[float] | npt.NDArray[Any]

_INF = math.inf


@dataclass(frozen=True)
class Interval:
    """An interval [low, high] for the mean over ``population`` items, after ``n`` of them.

    ``mean`` is the mean of the n values seen (NaN when n == 0).
    """

    mean: float
    low: float
    high: float
    n: int
    population: int


@lru_cache(maxsize=4096)
def _t_quantile(q: float, dof: int) -> float:
    stats = importlib.import_module("scipy.stats")  # imported on first use (no stubs)
    return float(stats.t.ppf(q, dof))


def _check(values: Values, population: int, bounds: tuple[float, float] | None) -> np.ndarray:
    """Values as a float array, clipped to ``bounds``; refuses NaN, far-out values, bad N."""
    x = np.asarray(values, dtype=float).reshape(-1)
    if np.isnan(x).any():
        raise ValueError("values contain NaN")
    if not np.isfinite(x).all():
        raise ValueError("values contain infinities")
    if not 0 <= x.size <= population:
        raise ValueError(f"population ({population}) must be >= the number of values ({x.size})")
    if bounds is not None:
        lo, hi = float(bounds[0]), float(bounds[1])
        if math.isnan(lo) or math.isnan(hi) or lo > hi:
            raise ValueError(f"bounds must satisfy low <= high, got {bounds}")
        finite = [abs(b) for b in (lo, hi) if math.isfinite(b)]
        tol = 1e-9 * max([1.0, *finite])
        if x.size and (x.min() < lo - tol or x.max() > hi + tol):
            raise ValueError(f"values outside bounds {bounds}: [{x.min()}, {x.max()}]")
        x = np.clip(x, lo, hi)
    return x


def _mean(x: np.ndarray) -> float:
    """Correctly rounded mean: independent of the order the values came in."""
    return math.fsum(x.tolist()) / x.size


def _check_level(level: float, name: str) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {level}")


def mean_interval(
    values: Values,
    population: int,
    confidence: float = 0.95,
    binary: bool | None = None,
    bounds: tuple[float, float] | None = None,
) -> Interval:
    """Fixed-n confidence interval for the mean over a finite population of N items.

    With n values x_i drawn without replacement from the N (``population``), mean m, sample
    variance s^2 (ddof=1) and finite-population factor f^2 = (N - n) / (N - 1):

    - continuous metrics: m +/- t_{(1+c)/2, n-1} * sqrt(f^2 * s^2 / n) (Student t, n-1 dof);
    - 0/1 metrics (``binary=True``, or auto-detected when ``binary`` is None and every value
      is 0 or 1): the Wilson score interval with the FPC, i.e. Wilson at the effective size
      n' = n / f^2 (the solutions p of (m - p)^2 = z^2 f^2 p (1 - p) / n):
      (m + z^2/(2n')) / (1 + z^2/n') +/- z / (1 + z^2/n') * sqrt(m(1-m)/n' + z^2/(4n'^2)),
      z = Phi^{-1}((1+c)/2).

    Edge cases: n == N gives exactly [m, m]; n == 0 gives mean NaN and the widest interval;
    n == 1 < N gives the widest interval. The widest interval is ``bounds`` when given, else
    [0, 1] for 0/1 metrics and (-inf, inf) otherwise. Results are clipped to ``bounds``;
    values past them by rounding are clipped first, values far past them are refused.
    """
    _check_level(confidence, "confidence")
    x = _check(values, population, bounds if bounds is not None or not binary else (0.0, 1.0))
    n, big_n = int(x.size), int(population)
    is01 = bool(np.all((x == 0.0) | (x == 1.0)))
    if binary and not is01:
        raise ValueError("binary=True needs every value to be 0 or 1")
    if binary is None:
        binary = is01 and n > 0
    lo, hi = bounds if bounds is not None else ((0.0, 1.0) if binary else (-_INF, _INF))
    if n == 0:
        return Interval(math.nan, lo, hi, 0, big_n)
    mean = min(hi, max(lo, _mean(x)))
    if n == big_n:
        return Interval(mean, mean, mean, n, big_n)
    if n < 2:
        return Interval(mean, lo, hi, n, big_n)
    f2 = (big_n - n) / (big_n - 1)
    if binary:
        z = NormalDist().inv_cdf((1.0 + confidence) / 2.0)
        n_eff = n / f2
        shrink = 1.0 + z * z / n_eff
        center = (mean + z * z / (2.0 * n_eff)) / shrink
        half = z / shrink * math.sqrt(max(0.0, mean * (1.0 - mean)) / n_eff
                                      + z * z / (4.0 * n_eff * n_eff))
    else:
        var = max(0.0, float(np.var(x, ddof=1)))
        center = mean
        half = _t_quantile((1.0 + confidence) / 2.0, n - 1) * math.sqrt(f2 * var / n)
    low, high = min(mean, center - half), max(mean, center + half)
    return Interval(mean, max(lo, low), min(hi, high), n, big_n)


def anytime_interval(
    values: Values,
    population: int,
    bounds: tuple[float, float] = (0.0, 1.0),
    alpha: float = 0.05,
) -> Interval:
    """Anytime-valid interval (confidence sequence) for the mean of a finite population.

    For values in [a, b] = ``bounds`` sampled without replacement from N items, the
    Hoeffding-Serfling inequality (Bardenet & Maillard 2015, "Concentration inequalities for
    sampling without replacement", Bernoulli 21(3), Corollary 2.5, with Serfling's 1974
    factor) gives, for a fixed n and each side, P(m_n - mu >= (b - a) sqrt(rho_n log(1/d)
    / (2n))) <= d with rho_n = min(1 - (n-1)/N, (1 - n/N)(1 + 1/n)). This function uses it
    two-sided at level d_n = alpha / (n (n+1)):

        m_n +/- (b - a) * sqrt(rho_n * log(2 / d_n) / (2 n)),

    and since sum_{n>=1} d_n = alpha a union bound makes the intervals hold at every n
    simultaneously with probability >= 1 - alpha. rho_N = 0, so at n == N the interval is
    exactly [mean, mean]. n == 0 gives mean NaN and [a, b]. Results are clipped to [a, b].
    """
    _check_level(alpha, "alpha")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"anytime_interval needs finite bounds, got {bounds}")
    x = _check(values, population, (lo, hi))
    n, big_n = int(x.size), int(population)
    if n == 0:
        return Interval(math.nan, lo, hi, 0, big_n)
    mean = min(hi, max(lo, _mean(x)))
    if n == big_n:
        return Interval(mean, mean, mean, n, big_n)
    rho = min(1.0 - (n - 1) / big_n, (1.0 - n / big_n) * (1.0 + 1.0 / n))
    delta_n = alpha / (n * (n + 1.0))
    half = (hi - lo) * math.sqrt(max(0.0, rho) * math.log(2.0 / delta_n) / (2.0 * n))
    return Interval(mean, max(lo, mean - half), min(hi, mean + half), n, big_n)


def compare(
    a: Values, b: Values, population: int, confidence: float = 0.95
) -> Interval:
    """Interval for the mean per-query difference a_i - b_i of two runs on the same queries.

    ``a`` and ``b`` are the metric values of the same n queries in the same order; the
    result is ``mean_interval`` of the differences as a continuous metric (Student t with
    the finite-population correction, unbounded): identical runs give exactly [0, 0].
    """
    xa, xb = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if xa.shape != xb.shape:
        raise ValueError(f"a and b must have the same length, got {xa.size} and {xb.size}")
    if np.isnan(xa).any() or np.isnan(xb).any():
        raise ValueError("values contain NaN")
    return mean_interval(xa - xb, population, confidence, binary=False)
