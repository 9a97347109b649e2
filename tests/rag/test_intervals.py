"""runfleet.rag.intervals: coverage by simulation over shuffles of fixed finite populations,
hand computations for small cases, and edge cases (bounds, NaN, n == N)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runfleet.rag.intervals import Interval, anytime_interval, compare, mean_interval

stats = pytest.importorskip("scipy.stats")

N = 2000
SHUFFLES = 2000
SHARD = 50
BOUNDARIES = list(range(SHARD, N + 1, SHARD))


def populations() -> dict[str, np.ndarray]:
    """(a) a skewed continuous metric in [0, 1]; (b) a rare 0/1 metric, p = 0.05."""
    rng = np.random.default_rng(20240601)
    rare = np.zeros(N)
    rare[rng.choice(N, size=N // 20, replace=False)] = 1.0
    return {"skewed": rng.beta(0.5, 3.0, size=N), "rare01": rare}


@pytest.fixture(scope="module", params=["skewed", "rare01"])
def simulation(request) -> dict:
    """Intervals at every shard boundary of SHUFFLES shuffles (one fixed seed per population)."""
    pop = populations()[request.param]
    mu = math.fsum(pop.tolist()) / N
    rng = np.random.default_rng(7 if request.param == "skewed" else 8)
    orders = np.argsort(rng.random((SHUFFLES, N)), axis=1)  # SHUFFLES random permutations
    fixed = np.zeros((SHUFFLES, len(BOUNDARIES)), dtype=bool)
    anytime = np.zeros_like(fixed)
    widths = np.zeros(fixed.shape)
    anytime_widths = np.zeros(fixed.shape)
    for s in range(SHUFFLES):
        shuffled = pop[orders[s]]
        for j, n in enumerate(BOUNDARIES):
            iv = mean_interval(shuffled[:n], N)
            fixed[s, j] = iv.low <= mu <= iv.high
            widths[s, j] = iv.high - iv.low
            av = anytime_interval(shuffled[:n], N)
            anytime[s, j] = av.low <= mu <= av.high
            anytime_widths[s, j] = av.high - av.low
    return {"name": request.param, "pop": pop, "mu": mu, "fixed": fixed, "anytime": anytime,
            "widths": widths, "anytime_widths": anytime_widths}


def test_fixed_n_coverage_at_every_boundary(simulation):
    coverage = simulation["fixed"].mean(axis=0)
    print(f"\n{simulation['name']}: fixed-n coverage min {coverage[:-1].min():.4f} "
          f"mean {coverage[:-1].mean():.4f} at n<N; by n: "
          + " ".join(f"{n}:{c:.3f}" for n, c in zip(BOUNDARIES, coverage)))
    for n, c in zip(BOUNDARIES, coverage):
        if n >= 30:
            assert c >= 0.93, (simulation["name"], n, c)
    # not vacuous: the intervals are narrow well before the end
    assert simulation["widths"][:, BOUNDARIES.index(1000)].mean() < 0.06


def test_anytime_coverage_at_all_boundaries_at_once(simulation):
    simultaneous = simulation["anytime"].all(axis=1).mean()
    at = [BOUNDARIES.index(n) for n in (100, 500, 1000, 1900)]
    print(f"\n{simulation['name']}: anytime simultaneous coverage {simultaneous:.4f}; mean "
          "width fixed-n / anytime at n=100, 500, 1000, 1900: "
          + ", ".join(f"{simulation['widths'][:, j].mean():.4f}/"
                      f"{simulation['anytime_widths'][:, j].mean():.4f}" for j in at))
    assert simultaneous >= 0.95


def test_exact_when_every_query_is_done(simulation):
    pop, mu = simulation["pop"], simulation["mu"]
    rng = np.random.default_rng(1)
    for _ in range(5):
        shuffled = rng.permutation(pop)
        for iv in (mean_interval(shuffled, N), anytime_interval(shuffled, N)):
            assert iv.mean == iv.low == iv.high == mu
            assert (iv.n, iv.population) == (N, N)
        assert simulation["fixed"][:, -1].all() and simulation["anytime"][:, -1].all()
        assert compare(shuffled, shuffled, N) == Interval(0.0, 0.0, 0.0, N, N)


# ------------------------------------------------------------------- small cases by hand

def test_t_interval_by_hand():
    x = [0.1, 0.4, 0.7, 0.2]
    iv = mean_interval(x, 10)
    s2 = sum((v - 0.35) ** 2 for v in x) / 3
    half = stats.t.ppf(0.975, 3) * math.sqrt(s2 / 4 * (10 - 4) / (10 - 1))
    assert iv.mean == pytest.approx(0.35, abs=1e-15)
    assert (iv.low, iv.high) == pytest.approx((0.35 - half, 0.35 + half), abs=1e-12)
    assert stats.t.ppf(0.975, 3) == pytest.approx(3.182446305284263, abs=1e-12)
    # a huge population: no correction, scipy's own t interval
    lo, hi = stats.t.interval(0.9, 3, loc=np.mean(x), scale=stats.sem(x))
    iv = mean_interval(x, 10**15, confidence=0.9)
    assert (iv.low, iv.high) == pytest.approx((lo, hi), abs=1e-9)


def test_wilson_by_hand():
    # textbook Wilson 95% interval for 3 successes out of 10 (infinite population)
    iv = mean_interval([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], 10**15)
    assert (iv.low, iv.high) == pytest.approx((0.1078, 0.6032), abs=1e-4)
    assert iv == mean_interval([1.0] * 3 + [0.0] * 7, 10**15, binary=True)
    # with the correction: Wilson at n' = n (N - 1) / (N - n)
    n, big_n, p, z = 10, 40, 0.3, stats.norm.ppf(0.975)
    ne = n * (big_n - 1) / (big_n - n)
    center = (p + z * z / (2 * ne)) / (1 + z * z / ne)
    half = z / (1 + z * z / ne) * math.sqrt(p * (1 - p) / ne + z * z / (4 * ne * ne))
    iv = mean_interval([1] * 3 + [0] * 7, big_n)
    assert (iv.low, iv.high) == pytest.approx((center - half, center + half), abs=1e-12)
    # all zeros: Wilson's interval is not [0, 0]
    iv = mean_interval([0.0] * 50, 2000)
    assert iv.low == 0.0 and 0.0 < iv.high < 0.1
    # binary=False forces the t interval
    assert mean_interval([0.0] * 50, 2000, binary=False) == Interval(0.0, 0.0, 0.0, 50, 2000)


def test_hoeffding_serfling_by_hand():
    x = np.linspace(0.0, 1.0, 100)
    iv = anytime_interval(x, 2000)
    rho = min(1 - 99 / 2000, (1 - 100 / 2000) * (1 + 1 / 100))
    half = math.sqrt(rho * math.log(2 * 100 * 101 / 0.05) / 200)
    assert (iv.low, iv.high) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-12)
    # scaled bounds scale the width; past the middle of the population Bardenet-Maillard wins
    iv2 = anytime_interval(10 * x, 2000, bounds=(0.0, 10.0))
    assert iv2.high - iv2.low == pytest.approx(10 * (iv.high - iv.low))
    late = anytime_interval(np.full(1500, 0.5), 2000)
    rho = (1 - 1500 / 2000) * (1 + 1 / 1500)
    half = math.sqrt(rho * math.log(2 * 1500 * 1501 / 0.05) / 3000)
    assert late.high - 0.5 == pytest.approx(half, abs=1e-12)
    assert anytime_interval([0.3], 10) == Interval(0.3, 0.0, 1.0, 1, 10)


def test_small_n():
    iv = mean_interval([], 10)
    assert math.isnan(iv.mean) and (iv.low, iv.high, iv.n) == (-math.inf, math.inf, 0)
    iv = mean_interval([], 10, bounds=(0.0, 1.0))
    assert math.isnan(iv.mean) and (iv.low, iv.high, iv.n) == (0.0, 1.0, 0)
    assert mean_interval([0.4], 10) == Interval(0.4, -math.inf, math.inf, 1, 10)
    assert mean_interval([0.4], 10, bounds=(0, 1)) == Interval(0.4, 0.0, 1.0, 1, 10)
    assert mean_interval([1.0], 10) == Interval(1.0, 0.0, 1.0, 1, 10)  # a 0/1 metric
    assert mean_interval([0.4], 1) == Interval(0.4, 0.4, 0.4, 1, 1)
    iv = anytime_interval([], 0)
    assert math.isnan(iv.mean) and (iv.low, iv.high) == (0.0, 1.0)


def test_compare():
    rng = np.random.default_rng(5)
    a, b = rng.random(40), rng.random(40)
    iv = compare(a, b, 200)
    assert iv == mean_interval(a - b, 200, binary=False)
    assert iv.mean == pytest.approx(float(np.mean(a - b)), abs=1e-15)
    assert compare(a, a, 200) == Interval(0.0, 0.0, 0.0, 40, 200)
    ones = np.ones(40)
    assert compare(ones, ones, 200) == Interval(0.0, 0.0, 0.0, 40, 200)  # not Wilson
    with pytest.raises(ValueError):
        compare(a, b[:-1], 200)


# ------------------------------------------------------------------------------- bounds

def test_values_past_a_bound_by_rounding():
    x = [1.0000000000000002, -1e-17, 0.5, 1.0]
    for iv in (mean_interval(x, 10), mean_interval(x, 10, bounds=(0.0, 1.0)),
               anytime_interval(x, 10), compare(x, x[::-1], 10)):
        assert iv.low <= iv.mean <= iv.high
    iv = mean_interval(x, 10, bounds=(0.0, 1.0))
    assert iv.low >= 0.0 and iv.high <= 1.0
    iv = mean_interval([1.0000000000000002, 0.0, -1e-17], 10, binary=True)
    assert iv.mean == pytest.approx(1 / 3)
    assert mean_interval([1.0000000000000002] * 5, 5, bounds=(0, 1)).mean == 1.0
    assert anytime_interval([1.0000000000000002] * 5, 5).mean == 1.0


@pytest.mark.parametrize("bad", [[0.5, math.nan], [math.inf, 0.1]])
def test_nan_and_infinity_refused(bad):
    for call in (lambda: mean_interval(bad, 10), lambda: anytime_interval(bad, 10),
                 lambda: compare(bad, [0.1, 0.2], 10), lambda: compare([0.1, 0.2], bad, 10)):
        with pytest.raises(ValueError):
            call()


def test_bad_arguments_refused():
    for call in (lambda: mean_interval([0.1, 0.2], 1), lambda: mean_interval([0.1], 5, 1.0),
                 lambda: mean_interval([0.5, 1.0], 5, binary=True),
                 lambda: mean_interval([1.5, 0.5], 5, bounds=(0.0, 1.0)),
                 lambda: anytime_interval([1.5], 5), lambda: anytime_interval([0.1], 5, alpha=0),
                 lambda: anytime_interval([0.1], 5, bounds=(0.0, math.inf)),
                 lambda: mean_interval([0.1], 5, bounds=(1.0, 0.0))):
        with pytest.raises(ValueError):
            call()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, 0.5, 1.0000000000000002, -1e-17, 1e-300,
                                 0.9999999999999999, 0.123]), max_size=40),
       st.integers(0, 100), st.booleans())
def test_never_raises_and_stays_in_bounds(values, extra, binary_only):
    if binary_only:
        values = [float(v > 0.5) for v in values]
    big_n = len(values) + extra
    for iv in (mean_interval(values, big_n, bounds=(0.0, 1.0)), anytime_interval(values, big_n),
               mean_interval(values, big_n), compare(values, values[::-1], big_n)):
        assert iv.n == len(values) and iv.population == big_n
        if values:
            assert iv.low <= iv.mean <= iv.high
    for iv in (mean_interval(values, big_n, bounds=(0.0, 1.0)), anytime_interval(values, big_n)):
        assert 0.0 <= iv.low <= iv.high <= 1.0
