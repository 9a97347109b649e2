"""Stopping policies are pure decisions, tested with plain RunProgress lists."""

from __future__ import annotations

import math

import pytest

from runfleet.engine.policy import RunProgress, StoppingPolicy
from runfleet.engine.stopping import MedianStopping, SuccessiveHalving

# eval_loss of run i after chunk c (8 runs, 4 chunks each).
LOSS = [
    [0.90, 0.80, 0.70, 0.60],
    [0.50, 0.20, 0.15, 0.10],
    [0.70, 0.10, 0.05, 0.01],  # would have become the best, but is cut at chunk 1
    [0.30, 0.35, 0.34, 0.33],
    [0.80, 0.70, 0.60, 0.50],
    [0.60, 0.25, 0.20, 0.15],
    [0.40, 0.30, 0.28, 0.27],
    [0.95, 0.90, 0.85, 0.80],
]


def progress(values: list[list[float]], done: list[int], inactive: set[int] | None = None,
             num_chunks: int = 4) -> list[RunProgress]:
    return [RunProgress(i, f"r{i}", d, num_chunks, i not in (inactive or set()),
                        {c + 1: v for c, v in enumerate(values[i][:d])})
            for i, d in enumerate(done)]


def simulate(policy: StoppingPolicy, values: list[list[float]],
             num_chunks: int) -> list[tuple[int, int, set[int]]]:
    """Round-robin one chunk at a time, as the controller would; (run, chunk, stopped) log."""
    done = [0] * len(values)
    stopped: set[int] = set()
    log = []
    for chunk in range(1, num_chunks + 1):
        for i in range(len(values)):
            if i in stopped:
                continue
            done[i] = chunk
            finished = {j for j, d in enumerate(done) if d == num_chunks}
            new = policy.decide(progress(values, done, stopped | finished, num_chunks))
            assert not {int(rid[1:]) for rid, _ in new} & stopped, "stopped twice"
            stopped |= {int(rid[1:]) for rid, _ in new}
            log.append((i, chunk, set(stopped)))
    return log


def test_eight_runs_halve_at_chunk_1_and_2() -> None:
    log = simulate(SuccessiveHalving("eval_loss", eta=2), LOSS, 4)
    stopped_after = {(i, c): s for i, c, s in log}
    # Nothing is decided before the last run finishes chunk 1.
    assert all(not s for i, c, s in log if (c, i) < (1, 7))
    assert stopped_after[(7, 1)] == {0, 2, 4, 7}  # best 4 at chunk 1: r3, r6, r1, r5
    assert stopped_after[(5, 2)] == {0, 2, 4, 7}
    assert stopped_after[(6, 2)] == {0, 2, 3, 4, 6, 7}  # best 2 of those at chunk 2: r1, r5
    assert log[-1][2] == {0, 2, 3, 4, 6, 7}  # no rung at the last chunk
    assert [i for i, c, _ in log if c == 4] == [1, 5]


def test_reason_names_value_rank_and_cutoff() -> None:
    policy = SuccessiveHalving("eval_loss")
    stops = dict(policy.decide(progress(LOSS, [1] * 8)))
    assert stops["r2"] == ("successive halving: eval_loss=0.7 at chunk 1 "
                           "is not in the best 4 of 8 (cutoff 0.6)")


def test_no_decision_until_every_active_run_reached_the_rung() -> None:
    policy = SuccessiveHalving("eval_loss")
    assert policy.decide(progress(LOSS, [1] * 7 + [0])) == []
    # Fast runs may be past the rung already; the rung's values are what count.
    assert policy.decide(progress(LOSS, [2, 2, 2, 2, 1, 1, 1, 0])) == []
    stops = policy.decide(progress(LOSS, [2, 2, 2, 2, 1, 1, 1, 1]))
    assert sorted(rid for rid, _ in stops) == ["r0", "r2", "r4", "r7"]


def test_inactive_run_that_never_reached_the_rung_neither_blocks_nor_counts() -> None:
    policy = SuccessiveHalving("eval_loss")
    # r7 was stopped by hand before chunk 1: pool of 7, keep ceil(7/2) = 4.
    stops = policy.decide(progress(LOSS, [1] * 7 + [0], inactive={7}))
    assert sorted(rid for rid, _ in stops) == ["r0", "r2", "r4"]
    assert "best 4 of 7" in stops[0][1]


def test_inactive_run_that_reached_the_rung_counts_but_is_not_stopped() -> None:
    policy = SuccessiveHalving("eval_loss")
    # r3 (best) and r0 (worst) finished chunk 1 and were stopped by hand.
    stops = policy.decide(progress(LOSS, [1] * 8, inactive={0, 3}))
    assert sorted(rid for rid, _ in stops) == ["r2", "r4", "r7"]


def test_each_rung_decided_once_and_runs_not_stopped_twice() -> None:
    policy = SuccessiveHalving("eval_loss")
    first = policy.decide(progress(LOSS, [1] * 8))
    assert len(first) == 4
    # The stop ops are still pending (runs still active): nothing is repeated, and the runs
    # cut at chunk 1 stay out of the chunk-2 pool even though they trained on.
    assert policy.decide(progress(LOSS, [1] * 8)) == []
    assert policy.decide(progress(LOSS, [2] * 8)) == [
        ("r6", "successive halving: eval_loss=0.3 at chunk 2 is not in the best 2 of 4 "
               "(cutoff 0.25)"),
        ("r3", "successive halving: eval_loss=0.35 at chunk 2 is not in the best 2 of 4 "
               "(cutoff 0.25)"),
    ]


def test_mode_max_keeps_the_highest() -> None:
    accuracy = [[-v for v in row] for row in LOSS]
    log = simulate(SuccessiveHalving("accuracy", mode="max"), accuracy, 4)
    assert log[-1][2] == {0, 2, 3, 4, 6, 7}
    stops = SuccessiveHalving("accuracy", mode="max").decide(progress(accuracy, [1] * 8))
    assert sorted(rid for rid, _ in stops) == ["r0", "r2", "r4", "r7"]


def test_missing_or_nan_metric_is_worst() -> None:
    values = [[0.1], [0.2], [0.3], [0.4]]
    runs = progress(values, [1] * 4, num_chunks=2)
    runs[0].metric_by_chunk = {}
    runs[1].metric_by_chunk = {1: math.nan}
    stops = SuccessiveHalving("eval_loss").decide(runs)
    assert sorted(rid for rid, _ in stops) == ["r0", "r1"]
    assert "eval_loss=missing at chunk 1" in stops[0][1]


def test_ties_broken_by_run_index() -> None:
    stops = SuccessiveHalving("m").decide(progress([[1.0]] * 4, [1] * 4, num_chunks=2))
    assert [rid for rid, _ in stops] == ["r2", "r3"]


def test_rungs_follow_min_chunks_times_eta_powers() -> None:
    # 9 runs, eta=3, min_chunks=2, 20 chunks: rungs at 2, 6, 18 -> 3, 1, 1 survivors.
    values = [[float((i * 5) % 9 + c / 100) for c in range(20)] for i in range(9)]
    log = simulate(SuccessiveHalving("m", eta=3, min_chunks=2), values, 20)
    first_stop = {c for _, c, s in log if s}
    assert min(first_stop) == 2
    counts = {c: 9 - len(s) for _, c, s in log}
    assert counts[1] == 9 and counts[2] == 3 and counts[5] == 3 and counts[6] == 1
    assert counts[20] == 1
    assert [i for i, c, _ in log if c == 20] == [0]  # value (0*5)%9 = 0 is the best


def test_median_stops_runs_strictly_worse_than_the_others_median() -> None:
    values = [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [10.0, 10.0], [2.0, 2.0]]
    policy = MedianStopping("eval_loss", min_runs=3)
    # r0..r3 at chunk 1: r3 (10 vs median 2) and r2 (3 vs median 2) are worse.
    stops = policy.decide(progress(values, [1, 1, 1, 1, 0], num_chunks=3))
    assert stops == [
        ("r2", "median stopping: eval_loss=3 at chunk 1 is worse than the median 2 "
               "of 3 other runs"),
        ("r3", "median stopping: eval_loss=10 at chunk 1 is worse than the median 2 "
               "of 3 other runs"),
    ]
    # Judged once, stopped once: nothing new for the same data.
    assert policy.decide(progress(values, [1, 1, 1, 1, 0], num_chunks=3)) == []
    # r4 = 2.0 vs others 1, 2, 3, 10: median 2.5 -> kept (equal or better is kept).
    assert policy.decide(progress(values, [1, 1, 1, 1, 1], {2, 3}, num_chunks=3)) == []


def test_median_waits_for_enough_other_runs_then_judges_earlier_chunks() -> None:
    values = [[5.0, 5.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]  # ties are kept
    policy = MedianStopping("eval_loss", min_runs=3)
    assert policy.decide(progress(values, [2, 1, 1, 0], num_chunks=3)) == []
    stops = policy.decide(progress(values, [2, 1, 1, 1], num_chunks=3))
    assert [rid for rid, _ in stops] == ["r0"]
    assert "at chunk 1" in stops[0][1]


def test_median_respects_min_chunks_mode_and_last_chunk() -> None:
    values = [[9.0, 9.0, 9.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]]
    runs = progress(values, [1] * 4, num_chunks=3)
    assert MedianStopping("m", min_chunks=2).decide(runs) == []
    assert [r for r, _ in MedianStopping("m", mode="max").decide(runs)] == ["r1", "r2"]
    # The run's last chunk is no decision point (it has finished anyway).
    assert MedianStopping("m").decide(progress(values, [1] * 4, num_chunks=1)) == []
    # Inactive runs are not stopped, but their values count (r3: 3 vs median of 9, 1, 2).
    stops = MedianStopping("m").decide(progress(values, [1] * 4, {0}, num_chunks=3))
    assert [r for r, _ in stops] == ["r3"]


def test_median_ignores_missing_values() -> None:
    values = [[9.0], [1.0], [2.0], [3.0]]
    runs = progress(values, [1] * 4, num_chunks=2)
    runs[1].metric_by_chunk = {}
    assert MedianStopping("m").decide(runs) == []  # only 2 other values for r0


@pytest.mark.parametrize("make, message", [
    (lambda: SuccessiveHalving("m", mode="lowest"), "mode"),
    (lambda: SuccessiveHalving("m", eta=1), "eta"),
    (lambda: SuccessiveHalving("m", min_chunks=0), "min_chunks"),
    (lambda: SuccessiveHalving(""), "metric"),
    (lambda: MedianStopping("m", mode="MIN"), "mode"),
    (lambda: MedianStopping("m", min_chunks=0), "min_chunks"),
    (lambda: MedianStopping("m", min_runs=0), "min_runs"),
])
def test_invalid_arguments(make, message) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_repr() -> None:
    assert repr(SuccessiveHalving("eval_loss", eta=3)) == (
        "SuccessiveHalving(metric='eval_loss', mode='min', eta=3, min_chunks=1)")
    assert repr(MedianStopping("acc", mode="max")) == (
        "MedianStopping(metric='acc', mode='max', min_chunks=1, min_runs=3)")


def test_interval_stopping_stops_runs_wholly_below_the_best_anytime_interval() -> None:
    from runfleet.engine.policy import RunProgress
    from runfleet.engine.stopping import IntervalStopping

    def run(i: int, low: float, high: float, active: bool = True) -> RunProgress:
        values = {"eval/ndcg@10_cs_low": low, "eval/ndcg@10_cs_high": high,
                  "eval/ndcg@10_ci_low": low + 0.1, "eval/ndcg@10_ci_high": high - 0.1}
        return RunProgress(i, f"r{i}", 2, 8, active, {}, {2: values})

    policy = IntervalStopping("ndcg@10")
    runs = [run(0, 0.50, 0.70), run(1, 0.30, 0.49), run(2, 0.45, 0.60), run(3, 0.1, 0.2, False)]
    stops = policy.decide(runs)
    assert [d.run_id for d in stops] == ["r1"]  # r2 overlaps the best; r3 is not active
    assert "lies wholly below the best run's bound 0.5" in stops[0].reason
    assert policy.decide(runs) == []  # never the same run twice
    # fixed-n intervals alone never stop anything
    fixed_only = [RunProgress(i, f"r{i}", 2, 8, True, {}, {2: {
        "eval/ndcg@10_ci_low": lo, "eval/ndcg@10_ci_high": hi}}) for i, (lo, hi) in
        enumerate([(0.5, 0.7), (0.1, 0.2)])]
    assert IntervalStopping("ndcg@10").decide(fixed_only) == []
    lower_is_better = IntervalStopping("latency", mode="min")
    slow = [RunProgress(0, "fast", 1, 4, True, {}, {1: {"eval/latency_cs_low": 1.0,
                                                        "eval/latency_cs_high": 2.0}}),
            RunProgress(1, "slow", 1, 4, True, {}, {1: {"eval/latency_cs_low": 3.0,
                                                        "eval/latency_cs_high": 4.0}})]
    assert [d.run_id for d in lower_is_better.decide(slow)] == ["slow"]
