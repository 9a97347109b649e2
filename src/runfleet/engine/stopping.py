"""Stopping policies: which runs to stop early, decided at chunk boundaries.

Like the scheduling policies these are pure decision objects: ``decide`` sees every run's
progress (:class:`~runfleet.engine.policy.RunProgress`) and returns stop decisions
(:class:`~runfleet.engine.policy.StopDecision`), which the controller turns into ``stop``
ops. The only state kept is which decisions were already made, so a sequence of calls
always gives the same answers. Both register in the ``runfleet.stopping`` entry-point
group (``successive-halving``, ``median``).

A run a policy has stopped is never returned by that policy again and no longer holds up a
decision: a stop that is still pending is not repeated, and a user who resumes such a run
overrides the policy for it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from runfleet.engine.policy import RunProgress, StopDecision, StoppingPolicy

_MODES = ("min", "max")


def _check(metric: str, mode: str, min_chunks: int) -> None:
    if not metric:
        raise ValueError("metric must be a non-empty metric name")
    if mode not in _MODES:
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if min_chunks < 1:
        raise ValueError(f"min_chunks must be >= 1, got {min_chunks}")


def _value(run: RunProgress, chunk: int) -> float | None:
    """The run's metric after ``chunk`` chunks; None if missing or NaN."""
    v = run.metric_by_chunk.get(chunk)
    return None if v is None or math.isnan(v) else v


def _fmt(v: float | None) -> str:
    return "missing" if v is None else f"{v:.4g}"


class SuccessiveHalving(StoppingPolicy):
    """Synchronous successive halving over chunk rungs (ASHA's rule, decided once per rung).

    Rungs are at ``min_chunks * eta**k`` chunks (k = 0, 1, ...); a rung only concerns runs
    with more chunks than that (a run's last chunk is no rung for it). Rung ``r`` is decided
    once, at the first call where no concerned run that is active, and not already stopped by
    this policy, has fewer than ``r`` chunks done. The pool is every concerned run with at
    least ``r`` chunks done, whatever its status (a run stopped by hand, failed or completed
    counts if it reached ``r``), except runs this policy cut at a lower rung: they lost
    already, even if a pending stop let them train on. The pool is ranked by the metric value
    recorded after chunk ``r``: best first (lower for ``mode="min"``, higher for
    ``"max"``), missing or NaN values last, ties by run index. The first
    ``ceil(n / eta)`` of the ``n`` pooled runs survive; every other run in the pool that is
    still active is stopped. Rungs are decided in increasing order, and runs stopped at one
    rung count as stopped for the next within the same call.

    >>> policy = SuccessiveHalving("eval_loss", eta=2)  # 8 runs -> 4 at chunk 1 -> 2 at 2
    """

    def __init__(self, metric: str, mode: str = "min", eta: int = 2,
                 min_chunks: int = 1) -> None:
        _check(metric, mode, min_chunks)
        if eta < 2:
            raise ValueError(f"eta must be an integer >= 2, got {eta}")
        self.metric, self.mode, self.eta, self.min_chunks = metric, mode, eta, min_chunks
        self._decided: set[int] = set()  # rungs (chunk counts) already decided
        self._stopped: set[str] = set()

    def __repr__(self) -> str:
        return (f"SuccessiveHalving(metric={self.metric!r}, mode={self.mode!r}, "
                f"eta={self.eta}, min_chunks={self.min_chunks})")

    def decide(self, runs: Sequence[RunProgress]) -> list[StopDecision]:
        """Decide every rung that became decidable; return the runs it stops, with reasons."""
        stops: list[StopDecision] = []
        horizon = max((r.num_chunks for r in runs), default=0)
        rung = self.min_chunks
        while rung < horizon:
            if rung not in self._decided:
                concerned = [r for r in runs if r.num_chunks > rung]
                if any(r.active and r.run_id not in self._stopped and r.chunks_done < rung
                       for r in concerned):
                    break  # rungs are decided in order
                self._decided.add(rung)
                pool = [r for r in concerned
                        if r.chunks_done >= rung and r.run_id not in self._stopped]
                stops += self._cut(rung, pool)
            rung *= self.eta
        return stops

    def _cut(self, rung: int, pool: list[RunProgress]) -> list[StopDecision]:
        sign = 1.0 if self.mode == "min" else -1.0

        def rank(r: RunProgress) -> tuple[bool, float, int]:
            v = _value(r, rung)
            return (v is None, 0.0 if v is None else sign * v, r.index)

        ranked = sorted(pool, key=rank)
        keep = math.ceil(len(ranked) / self.eta)
        cutoff = _fmt(_value(ranked[keep - 1], rung)) if ranked else "missing"
        stops = []
        for r in ranked[keep:]:
            if r.active:
                self._stopped.add(r.run_id)
                stops.append(StopDecision(r.run_id, (
                    f"successive halving: {self.metric}={_fmt(_value(r, rung))} at chunk "
                    f"{rung} is not in the best {keep} of {len(ranked)} (cutoff {cutoff})")))
        return stops


class MedianStopping(StoppingPolicy):
    """Stop a run whose metric is strictly worse than the median of the other runs'.

    Each (run, chunk ``c``) pair is judged at most once, at the first call where: the run is
    active and not already stopped by this policy, ``min_chunks <= c < num_chunks``, the run
    has a value (not NaN) at ``c``, and at least ``min_runs`` other runs (any status) have a
    value at ``c``. The run is stopped if its value is strictly worse (greater for
    ``mode="min"``, smaller for ``"max"``) than the median of those other values. Chunks of
    a run are judged in increasing order, so a slow run is compared with what faster runs
    logged at the same chunk; a pair without enough others waits for them.

    >>> policy = MedianStopping("eval_loss", min_chunks=2, min_runs=3)
    """

    def __init__(self, metric: str, mode: str = "min", min_chunks: int = 1,
                 min_runs: int = 3) -> None:
        _check(metric, mode, min_chunks)
        if min_runs < 1:
            raise ValueError(f"min_runs must be >= 1, got {min_runs}")
        self.metric, self.mode = metric, mode
        self.min_chunks, self.min_runs = min_chunks, min_runs
        self._judged: set[tuple[str, int]] = set()
        self._stopped: set[str] = set()

    def __repr__(self) -> str:
        return (f"MedianStopping(metric={self.metric!r}, mode={self.mode!r}, "
                f"min_chunks={self.min_chunks}, min_runs={self.min_runs})")

    def decide(self, runs: Sequence[RunProgress]) -> list[StopDecision]:
        """Judge every (run, chunk) pair that became judgeable; return the runs to stop."""
        stops: list[StopDecision] = []
        for run in runs:
            if not run.active or run.run_id in self._stopped:
                continue
            for c in range(self.min_chunks, min(run.chunks_done, run.num_chunks - 1) + 1):
                v = _value(run, c)
                if (run.run_id, c) in self._judged or v is None:
                    continue
                others = [o for o in (_value(r, c) for r in runs if r is not run)
                          if o is not None]
                if len(others) < self.min_runs:
                    continue
                self._judged.add((run.run_id, c))
                median = statistics.median(others)
                if (v > median) if self.mode == "min" else (v < median):
                    self._stopped.add(run.run_id)
                    stops.append(StopDecision(run.run_id, (
                        f"median stopping: {self.metric}={_fmt(v)} at chunk {c} is worse "
                        f"than the median {_fmt(median)} of {len(others)} other runs")))
                    break
        return stops


class IntervalStopping(StoppingPolicy):
    """Stop an eval run whose interval for ``metric`` lies wholly on the wrong side of the
    best run's: its upper end below the best lower end (``mode="max"``: higher is better),
    or its lower end above the best upper end (``"min"``).

    It judges the anytime-valid intervals (``eval/<metric>_cs_low|high``, valid at every
    shard boundary at once), never the fixed-n ones, so watching them shard after shard
    and stopping early keeps their guarantee. Each run's latest chunk end is compared with
    the other runs' latest; a run needs ``min_chunks`` chunks before it is judged or sets
    the bar.

    >>> policy = IntervalStopping("ndcg@10")          # stop configs clearly worse than the best
    """

    def __init__(self, metric: str, mode: str = "max", min_chunks: int = 1) -> None:
        _check(metric, mode, min_chunks)
        self.metric, self.mode, self.min_chunks = metric, mode, min_chunks
        self._stopped: set[str] = set()

    def __repr__(self) -> str:
        return (f"IntervalStopping(metric={self.metric!r}, mode={self.mode!r}, "
                f"min_chunks={self.min_chunks})")

    def _bounds(self, run: RunProgress) -> tuple[float, float] | None:
        values = run.values_by_chunk.get(run.chunks_done, {})
        low = values.get(f"eval/{self.metric}_cs_low")
        high = values.get(f"eval/{self.metric}_cs_high")
        if run.chunks_done < self.min_chunks or low is None or high is None \
                or math.isnan(low) or math.isnan(high):
            return None
        return low, high

    def decide(self, runs: Sequence[RunProgress]) -> list[StopDecision]:
        """Stop the active runs whose interval is wholly worse than the best run's."""
        bounds = {r.run_id: b for r in runs if (b := self._bounds(r)) is not None}
        if len(bounds) < 2:
            return []
        if self.mode == "max":
            best_id, (bar, _) = max(bounds.items(), key=lambda kv: kv[1][0])
        else:
            best_id, (_, bar) = min(bounds.items(), key=lambda kv: kv[1][1])
        stops = []
        for r in runs:
            if not r.active or r.run_id in self._stopped or r.run_id not in bounds \
                    or r.run_id == best_id:
                continue
            low, high = bounds[r.run_id]
            if (high < bar) if self.mode == "max" else (low > bar):
                self._stopped.add(r.run_id)
                side = "below" if self.mode == "max" else "above"
                stops.append(StopDecision(r.run_id, (
                    f"interval stopping: {self.metric} in [{_fmt(low)}, {_fmt(high)}] (anytime "
                    f"95%) after {r.chunks_done} shard(s) lies wholly {side} the best run's "
                    f"bound {_fmt(bar)}")))
        return stops
