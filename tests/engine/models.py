"""Tiny models and data for engine tests (importable by spawned worker processes)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import torch

from runfleet.fit import TorchConfig


class Regressor(torch.nn.Module):
    """An MLP with dropout, so RNG handling matters for exact replays."""

    def __init__(self, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Tanh(),
                                       torch.nn.Dropout(dropout), torch.nn.Linear(hidden, 1))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.mse_loss(self.net(batch["x"]).squeeze(-1), batch["y"])


class SlowRegressor(Regressor):
    """A Regressor whose every forward waits ``delay`` seconds (time to act on a run)."""

    def __init__(self, hidden: int, delay: float) -> None:
        super().__init__(hidden)
        self.delay = delay

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        time.sleep(self.delay)
        return super().forward(batch)


def make_model(config: TorchConfig) -> torch.nn.Module:
    """create_model_fn for the torch backend; fails on purpose for hidden == -1; with a
    ``delay`` key, every forward sleeps that long."""
    if config["hidden"] == -1:
        raise ValueError("hidden=-1 is not a valid layer size")
    if config.get("delay"):
        return SlowRegressor(int(config["hidden"]), float(config["delay"]))
    return Regressor(int(config["hidden"]), float(config.get("dropout", 0.1)))


class KillingRegressor(Regressor):
    """Kills its own worker process with SIGKILL in the middle of a chunk, once: on its
    ``kill_at``-th forward call while the file ``marker`` exists (the file is removed)."""

    def __init__(self, hidden: int, marker: str, kill_at: int) -> None:
        super().__init__(hidden)
        self.marker, self.kill_at, self.calls = marker, kill_at, 0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.kill_at and os.path.exists(self.marker):
            os.remove(self.marker)
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(batch)


def make_model_killing_worker(config: TorchConfig) -> torch.nn.Module:
    """create_model_fn whose model kills its worker mid-chunk once (see KillingRegressor)."""
    return KillingRegressor(int(config["hidden"]), str(config["kill_marker"]),
                            int(config["kill_at"]))


def regression_data(n: int = 256, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of x (4 features) and y = sum(x) + noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(1) + 0.1 * torch.randn(n, generator=g)
    return [{"x": x[i], "y": y[i]} for i in range(n)]


def make_model_after_gate(config: TorchConfig) -> torch.nn.Module:
    """create_model_fn that blocks until the file ``config["gate"]`` exists, as a worker
    still loading a large base model would."""
    while not os.path.exists(str(config["gate"])):
        time.sleep(0.02)
    return Regressor(int(config["hidden"]), dropout=0.0)


class UnloadableInWorkers(list[Any]):
    """A dataset that cannot be unpickled in another process (as if it named a module only
    the caller has): every worker dies before it is ready."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load_only_in, (os.getpid(), list(self)))


def _load_only_in(pid: int, rows: list[Any]) -> UnloadableInWorkers:
    if os.getpid() != pid:
        raise RuntimeError("this dataset cannot be loaded in a worker process")
    return UnloadableInWorkers(rows)


# -- held models: training frozen mid-chunk until the test lets go ---------------------------
# ``hold`` is how a test freezes training mid-chunk without a fixed sleep: while the file
# named by a run's ``hold`` config key exists, its model blocks in every forward but the
# first of a chunk (so each held chunk has reported a step), after touching
# ``<hold>.<pid>`` to say that the worker process ``pid`` is now held. With ``hold_after=n``
# the first ``n`` models a worker process builds (one per chunk it trains) are never held.
GUARD_S = 300.0  # a held model gives up after this long (only against a hang)
_built = 0  # models built by this process


class HeldRegressor(Regressor):
    """A :class:`Regressor` that may sleep ``delay`` seconds per forward
    and block while the file ``hold`` exists (see the comment above)."""

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


def make_held_model(config: TorchConfig) -> torch.nn.Module:
    """create_model_fn for ``trainer="torch"``: keys ``hidden``, optional ``dropout``
    (default 0.1), ``delay`` (seconds per forward), ``hold`` (a file path) and
    ``hold_after`` (see the comment above)."""
    global _built
    _built += 1
    hold = config.get("hold") if _built > int(config.get("hold_after") or 0) else None
    return HeldRegressor(int(config["hidden"]), float(config.get("dropout", 0.1)),
                         float(config.get("delay") or 0.0), hold)

