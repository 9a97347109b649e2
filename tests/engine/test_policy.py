"""Scheduling policies are pure decisions, tested without processes."""

from __future__ import annotations

from runfleet.engine.policy import FairRoundRobin, Schedulable


def runs(done: list[int], busy: frozenset[int] | set[int] = frozenset(),
         stopped: frozenset[int] | set[int] = frozenset(),
         num_chunks: int = 4) -> list[Schedulable]:
    return [Schedulable(i, f"r{i}", d, num_chunks, i in busy, i not in stopped)
            for i, d in enumerate(done)]


def test_fewest_chunks_first_ties_by_run_order() -> None:
    policy = FairRoundRobin()
    assert policy.choose(runs([1, 0, 0]), 0) == "r1"
    assert policy.choose(runs([1, 0, 0], busy={1}), 0) == "r2"
    assert policy.choose(runs([2, 2, 1], stopped={2}), 0) == "r0"
    assert policy.choose(runs([4, 4]), 0) is None
    assert policy.choose(runs([0], busy={0}), 0) is None


def test_round_robin_order_over_a_whole_experiment() -> None:
    policy = FairRoundRobin()
    done = [0, 0, 0]
    order = []
    for _ in range(9):
        pick = policy.choose(runs(done, num_chunks=3), 0)
        assert pick is not None
        order.append(pick)
        done[int(pick[1:])] += 1
    assert order == ["r0", "r1", "r2"] * 3


def test_64_runs_on_8_workers_get_distinct_fair_picks() -> None:
    policy = FairRoundRobin()
    done = [i % 4 for i in range(64)]
    busy: set[int] = set()
    for worker in range(8):
        pick = policy.choose(runs(done, busy=busy), worker)
        assert pick is not None
        busy.add(int(pick[1:]))
    assert sorted(busy) == [0, 4, 8, 12, 16, 20, 24, 28]  # all with 0 chunks, in run order
