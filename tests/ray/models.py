"""Models and model factories the Ray tests' workers import (by reference, through Ray):
nothing here imports the test suite's fixtures.

``hold`` is how a test freezes training mid-chunk without a fixed sleep: while the file
named by a run's ``hold`` config key exists, its model blocks in every forward but the
first of a chunk (so each held chunk has reported a step), after touching
``<hold>.<pid>`` to say that the worker process ``pid`` is now held. With ``hold_after=n``
the first ``n`` models a worker process builds (one per chunk it trains) are never held.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from runfleet.fit import TorchConfig
from tests.engine.models import Regressor

GUARD_S = 300.0  # a held model gives up after this long (only against a hang)
_built = 0  # models built by this process


class HeldRegressor(Regressor):
    """:class:`~tests.engine.models.Regressor` that may sleep ``delay`` seconds per forward
    and block while the file ``hold`` exists (see the module docstring)."""

    def __init__(self, hidden: int, dropout: float, delay: float, hold: str | None) -> None:
        super().__init__(hidden, dropout)
        self.delay, self.hold, self.calls = delay, hold, 0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        if self.hold and self.calls > 1 and os.path.exists(self.hold):
            Path(f"{self.hold}.{os.getpid()}").touch()
            deadline = time.monotonic() + GUARD_S
            while os.path.exists(self.hold) and time.monotonic() < deadline:
                time.sleep(0.02)
        if self.delay:
            time.sleep(self.delay)
        return super().forward(batch)


def make_model(config: TorchConfig) -> torch.nn.Module:
    """create_model_fn for ``trainer="torch"``: keys ``hidden``, optional ``dropout``
    (default 0.1), ``delay`` (seconds per forward), ``hold`` (a file path) and
    ``hold_after`` (see the module docstring)."""
    global _built
    _built += 1
    hold = config.get("hold") if _built > int(config.get("hold_after") or 0) else None
    return HeldRegressor(int(config["hidden"]), float(config.get("dropout", 0.1)),
                         float(config.get("delay") or 0.0), hold)

