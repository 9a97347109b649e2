"""One contract per policy seam, every implementation (see :mod:`runfleet.engine.policy`).

Policies are pure decisions, so they are fed made-up progress, as Ray Tune's schedulers
are tested: random run tables for scheduling policies, random learning curves played out
chunk by chunk for stopping policies (a run a policy stops is then marked inactive, as the
controller does). Stopping policies are built the way users name them: an object, or a
registered name with arguments (a third party's among them).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runfleet.engine.policy import (
    FairRoundRobin,
    NoStopping,
    RunProgress,
    Schedulable,
    SchedulingPolicy,
    StopDecision,
    StoppingPolicy,
    stopping_policy,
)
from runfleet.engine.stopping import IntervalStopping, MedianStopping, SuccessiveHalving

# The fixtures give factories, and every example builds a fresh policy from one.
FACTORY_FIXTURE = [HealthCheck.function_scoped_fixture]

SCHEDULING: dict[str, Callable[[], SchedulingPolicy]] = {"fair-round-robin": FairRoundRobin}

STOPPING: dict[str, Callable[[], StoppingPolicy]] = {
    "none": NoStopping,
    "successive-halving": lambda: SuccessiveHalving("loss", eta=2),
    "successive-halving-max": lambda: SuccessiveHalving("acc", mode="max", eta=3),
    "median": lambda: MedianStopping("loss", min_runs=2),
    "median-by-name": lambda: stopping_policy({"policy": "median", "metric": "loss",
                                               "min_runs": 1}),
    "successive-halving-by-name": lambda: stopping_policy(
        {"policy": "successive-halving", "metric": "loss"}),
    "interval": lambda: IntervalStopping("loss", mode="min"),
    "interval-by-name": lambda: stopping_policy({"policy": "interval", "metric": "acc"}),
    "example-threshold": lambda: stopping_policy(
        {"policy": "example-threshold", "metric": "loss", "threshold": 0.5}),
}


@pytest.fixture(params=list(SCHEDULING))
def make_scheduler(request: pytest.FixtureRequest) -> Callable[[], SchedulingPolicy]:
    return SCHEDULING[request.param]


@pytest.fixture(params=list(STOPPING))
def make_stopper(request: pytest.FixtureRequest) -> Callable[[], StoppingPolicy]:
    if request.param.startswith("example-"):
        request.getfixturevalue("example_plugin")
    return STOPPING[request.param]


# -- scheduling -------------------------------------------------------------------------------
schedulables = st.lists(st.tuples(st.integers(0, 4), st.integers(1, 4), st.booleans(),
                                  st.booleans()), max_size=12).map(
    lambda rows: [Schedulable(i, f"r{i}", min(done, total), total, busy, runnable)
                  for i, (done, total, busy, runnable) in enumerate(rows)])


@settings(max_examples=200, deadline=None, suppress_health_check=FACTORY_FIXTURE)
@given(runs=schedulables, worker=st.integers(0, 3))
def test_a_scheduler_picks_a_runnable_idle_unfinished_run_or_none(
        make_scheduler: Callable[[], SchedulingPolicy], runs: list[Schedulable],
        worker: int) -> None:
    policy = make_scheduler()
    before = copy.deepcopy(runs)
    choice = policy.choose(runs, worker)
    eligible = {r.run_id for r in runs
                if r.runnable and not r.busy and r.chunks_done < r.num_chunks}
    assert (choice is None) == (not eligible)
    assert choice is None or choice in eligible
    assert policy.choose(runs, worker) == choice  # the same question, the same answer
    assert runs == before  # and nothing changed


# -- stopping ---------------------------------------------------------------------------------
curves = st.lists(st.lists(st.floats(0.0, 2.0), min_size=4, max_size=4), min_size=1,
                  max_size=8)
speeds = st.lists(st.integers(1, 3), min_size=8, max_size=8)


def intervals(value: float, chunk: int, num_chunks: int) -> dict[str, float]:
    """Every metric an eval run logs at a shard end: intervals narrowing with the shards."""
    half = 0.5 * (num_chunks - chunk) / num_chunks
    return {f"eval/{m}{end}": value + sign * half for m in ("loss", "acc")
            for end, sign in (("_cs_low", -1), ("_cs_high", 1))}


def play(policy: StoppingPolicy, curves: list[list[float]], speeds: list[int]
         ) -> list[list[StopDecision]]:
    """Runs advance ``speeds[i]`` chunks per round; after each round the policy decides;
    a run it stops stops training. Returns every call's decisions."""
    num_chunks = len(curves[0])
    done = [0] * len(curves)
    stopped: set[str] = set()
    calls: list[list[StopDecision]] = []
    while any(d < num_chunks and f"r{i}" not in stopped for i, d in enumerate(done)):
        for i in range(len(curves)):
            if f"r{i}" not in stopped:
                done[i] = min(num_chunks, done[i] + speeds[i % len(speeds)])
        progress = [RunProgress(i, f"r{i}", done[i], num_chunks,
                                f"r{i}" not in stopped and done[i] < num_chunks,
                                {c: curves[i][c - 1] for c in range(1, done[i] + 1)},
                                {c: intervals(curves[i][c - 1], c, num_chunks)
                                 for c in range(1, done[i] + 1)})
                    for i in range(len(curves))]
        decisions = policy.decide(progress)
        active = {p.run_id for p in progress if p.active}
        for d in decisions:
            assert isinstance(d, StopDecision)
            assert d.run_id in active, f"{d.run_id} is not active"
            assert isinstance(d.reason, str) and d.reason.strip()
        stopped |= {d.run_id for d in decisions}
        calls.append(decisions)
    return calls


@settings(max_examples=60, deadline=None, suppress_health_check=FACTORY_FIXTURE)
@given(curves=curves, speeds=speeds)
def test_a_stopping_policy_stops_active_runs_once_with_a_reason(
        make_stopper: Callable[[], StoppingPolicy], curves: list[list[float]],
        speeds: list[int]) -> None:
    policy = make_stopper()
    assert isinstance(policy.metric, str)
    calls = play(policy, curves, speeds)
    named = [d.run_id for decisions in calls for d in decisions]
    assert len(named) == len(set(named))  # never the same run twice
    assert play(make_stopper(), curves, speeds) == calls  # the same story, the same stops


def test_stopping_policies_are_found_by_name(example_plugin: Any) -> None:
    assert isinstance(stopping_policy("none"), NoStopping)
    assert isinstance(stopping_policy(None), NoStopping)
    median = stopping_policy({"policy": "median", "metric": "eval_loss", "min_runs": 2})
    assert isinstance(median, MedianStopping) and median.metric == "eval_loss"
    with pytest.raises(ValueError, match=r"unknown stopping policy 'nope'; installed: .*median"):
        stopping_policy("nope")
    with pytest.raises(TypeError, match=r"stopping policy 'median'.*metric"):
        stopping_policy("median")  # its metric is required
