"""A stopping policy from outside runfleet: stop a run once its metric passes a bound."""

from __future__ import annotations

from collections.abc import Sequence

from runfleet.engine.policy import RunProgress, StopDecision, StoppingPolicy


class AboveThreshold(StoppingPolicy):
    """Stop every active run whose ``metric`` after its latest chunk is above ``threshold``."""

    def __init__(self, metric: str, threshold: float) -> None:
        self.metric, self.threshold = metric, float(threshold)
        self._stopped: set[str] = set()

    def decide(self, runs: Sequence[RunProgress]) -> list[StopDecision]:
        out = []
        for r in runs:
            value = r.metric_by_chunk.get(r.chunks_done)
            if r.active and r.run_id not in self._stopped and value is not None \
                    and value > self.threshold:
                self._stopped.add(r.run_id)
                out.append(StopDecision(r.run_id, f"{self.metric}={value:.4g} after chunk "
                                                  f"{r.chunks_done} is above {self.threshold}"))
        return out
