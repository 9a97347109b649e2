"""Scheduling policies: which run gets the next free worker.

A policy is a pure decision object: it sees the runs' scheduling state and answers; it
holds no processes and is tested with plain data. :class:`FairRoundRobin` is the default:
the run with the fewest chunks done goes first, ties broken by run order, so every config
shows its learning curve early. A decision is O(runs). Stopping policies (successive
halving, median stopping) will plug in next to it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Schedulable:
    """What a scheduling policy knows about a run."""

    index: int  # position in the experiment (run order)
    run_id: str
    chunks_done: int
    num_chunks: int
    busy: bool  # a chunk of it is on a worker right now
    runnable: bool  # pending or running (not stopped, failed, completed, deleted)


class SchedulingPolicy(abc.ABC):
    """Chooses the run to put on a free worker (``choose`` must be side-effect free)."""

    @abc.abstractmethod
    def choose(self, runs: Sequence[Schedulable], worker: int) -> str | None:
        """The run id to train next on ``worker``, or None if nothing can run now."""


class FairRoundRobin(SchedulingPolicy):
    """Fewest chunks done first; ties by run order."""

    def choose(self, runs: Sequence[Schedulable], worker: int) -> str | None:
        best: Schedulable | None = None
        for r in runs:
            if r.busy or not r.runnable or r.chunks_done >= r.num_chunks:
                continue
            if best is None or (r.chunks_done, r.index) < (best.chunks_done, best.index):
                best = r
        return best.run_id if best is not None else None


@dataclass
class RunProgress:
    """What a stopping policy knows about a run: its metric at the end of each chunk."""

    index: int
    run_id: str
    chunks_done: int
    num_chunks: int
    active: bool  # still training (not stopped, failed, completed or deleted)
    metric_by_chunk: dict[int, float]  # chunks done -> metric value at that point


class StoppingPolicy(abc.ABC):
    """Decides, at chunk boundaries, which runs to stop early.

    ``decide`` is called after every finished chunk with every run's progress and returns
    ``(run_id, reason)`` pairs; the controller turns each into a ``stop`` op (so automatic
    stops have the same audit trail as manual ones). It must not repeat a decision for a run
    it already stopped (the controller passes ``active=False`` for those).
    """

    @abc.abstractmethod
    def decide(self, runs: Sequence[RunProgress]) -> list[tuple[str, str]]:
        """Runs to stop now, each with a human-readable reason."""


class NoStopping(StoppingPolicy):
    """Never stops a run (the default)."""

    def decide(self, runs: Sequence[RunProgress]) -> list[tuple[str, str]]:
        return []
