"""Policies: which run gets the next free worker, and which runs stop early.

Both are pure decision objects: they see the runs' state as plain data and answer; they
hold no processes and are tested with fake progress (``tests/engine/test_policy_
conformance.py`` runs one contract over every implementation).

* :class:`SchedulingPolicy`: ``choose`` the run for a free worker. :class:`FairRoundRobin`
  (the default) takes the run with the fewest chunks done, ties by run order, so every
  config shows its learning curve early. A decision is O(runs).
* :class:`StoppingPolicy`: ``decide``, after each finished chunk, which runs to stop; each
  :class:`StopDecision` becomes a ``stop`` op with the policy's name as its source.
  Implementations (:mod:`runfleet.engine.stopping`) register in the ``runfleet.stopping``
  entry-point group; :func:`stopping_policy` builds one from a name.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from runfleet import plugins


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
        """The runnable, idle, unfinished run with the fewest chunks done (first by order)."""
        best: Schedulable | None = None
        for r in runs:
            if r.busy or not r.runnable or r.chunks_done >= r.num_chunks:
                continue
            if best is None or (r.chunks_done, r.index) < (best.chunks_done, best.index):
                best = r
        return best.run_id if best is not None else None


@dataclass
class RunProgress:
    """What a stopping policy knows about a run: its metric (the policy's ``metric``) at
    the end of each chunk, and every metric's last value at the end of each chunk (for
    policies that judge several, e.g. an interval's two ends)."""

    index: int
    run_id: str
    chunks_done: int
    num_chunks: int
    active: bool  # still training (not stopped, failed, completed or deleted)
    metric_by_chunk: dict[int, float]  # chunks done -> metric value at that point
    values_by_chunk: dict[int, dict[str, float]] = field(default_factory=dict)


class StopDecision(NamedTuple):
    """Stop ``run_id`` now, for ``reason`` (shown on the op and the run's alerts)."""

    run_id: str
    reason: str


class StoppingPolicy(abc.ABC):
    """Decides, at chunk boundaries, which runs to stop early.

    ``metric`` names the metric the policy judges (the controller hands it each run's value
    of that metric at the end of each chunk). ``decide`` is called after every finished
    chunk with every run's progress and returns :class:`StopDecision` s; the controller
    turns each into a ``stop`` op (so automatic stops have the same audit trail as manual
    ones). It must only name active runs, never one it already stopped (the controller
    passes ``active=False`` for those), and give a non-empty reason.
    """

    metric: str = ""

    @abc.abstractmethod
    def decide(self, runs: Sequence[RunProgress]) -> list[StopDecision]:
        """Runs to stop now, each with a human-readable reason."""


class NoStopping(StoppingPolicy):
    """Never stops a run (the default)."""

    def decide(self, runs: Sequence[RunProgress]) -> list[StopDecision]:
        """Nothing to stop."""
        return []


def stopping_policy(spec: StoppingPolicy | str | Mapping[str, Any] | None) -> StoppingPolicy:
    """A stopping policy from ``spec``: a policy object; a registered name (``"none"``); or
    a mapping ``{"policy": NAME, **arguments}``, e.g. ``{"policy": "median", "metric":
    "eval_loss"}``. None: :class:`NoStopping`."""
    if spec is None:
        return NoStopping()
    if isinstance(spec, StoppingPolicy):
        return spec
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("policy"), str):
        kwargs = {k: v for k, v in spec.items() if k != "policy"}
        name = str(spec["policy"])
    else:
        raise TypeError("stopping must be a StoppingPolicy, a registered name, or a mapping "
                        f"{{'policy': NAME, ...arguments}}, got {spec!r}")
    cls = plugins.load(plugins.STOPPING, name, what="stopping policy")
    try:
        made = cls(**kwargs)
    except TypeError as exc:
        raise TypeError(f"stopping policy {name!r}: {exc} (pass its arguments as "
                        f"{{'policy': {name!r}, ...}})") from exc
    if not isinstance(made, StoppingPolicy):
        raise TypeError(f"stopping policy {name!r} is registered as {cls!r}, which does not "
                        f"make a runfleet.engine.policy.StoppingPolicy")
    return made
