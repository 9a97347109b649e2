"""A trainer from outside runfleet: fit one number to the mean of the rows' ``y`` by SGD
with momentum and gradient noise (so optimizer state and RNG both matter for exactness)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from runfleet.engine.backend import Backend, NonFiniteLossError, RunPlan
from runfleet.engine.chunking import StepPlan, eval_every
from runfleet.fit.configs import ConfigError, OpenConfig


class MeanConfig(OpenConfig):
    """``learning_rate``, ``batch_size``, ``max_steps``, ``noise``, ``eval_steps``."""

    default_trainer: ClassVar[str | None] = "example-mean"


class MeanBackend(Backend):
    """Trains ``value`` to minimise the mean squared error to the rows' ``y``."""

    @classmethod
    def plan(cls, config: Any, num_examples: int, num_chunks: int, seed: int) -> RunPlan:
        if not isinstance(config, MeanConfig):
            raise ConfigError(f"example-mean needs a MeanConfig, got {type(config).__name__}")
        if not float(config["learning_rate"]) > 0:
            raise ConfigError(f"learning_rate must be > 0, got {config['learning_rate']}")
        steps = StepPlan.build(num_examples=num_examples, batch_size=int(config["batch_size"]),
                               epochs=1.0, max_steps=int(config["max_steps"]),
                               num_chunks=num_chunks, seed=seed)
        return RunPlan(steps, eval_every(config.get("eval_steps"), steps.total_steps))

    def open(self, state: dict[str, Any] | None) -> None:
        cfg = self.spec.config
        if state is None:
            torch.manual_seed(self.spec.seed)
            self.value = torch.zeros((), requires_grad=True)
            with torch.no_grad():
                self.value.add_(torch.randn(()))
        else:
            self.value = state["value"].clone().requires_grad_(True)
        self.optimizer = torch.optim.SGD([self.value], lr=float(cfg["learning_rate"]),
                                         momentum=0.9)
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            if state.get("warm_start"):
                torch.manual_seed(self.spec.seed)
            else:
                torch.set_rng_state(state["rng"])

    def train_step(self, step: int, indices: list[int]) -> dict[str, Any]:
        ys = torch.tensor([float(self.resources.train_dataset[i]["y"]) for i in indices])
        loss = ((self.value - ys) ** 2).mean()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {float(loss)} at step {step}")
        self.optimizer.zero_grad()
        loss.backward()
        assert self.value.grad is not None
        self.value.grad.add_(float(self.spec.config.get("noise", 0.0)) * torch.randn(()))
        self.optimizer.step()
        return {"loss": float(loss.detach()), "value": float(self.value.detach())}

    def evaluate(self) -> dict[str, Any]:
        data = self.resources.eval_dataset
        if not data:
            return {}
        ys = torch.tensor([float(row["y"]) for row in data])
        with torch.no_grad():
            return {"eval_loss": float(((self.value - ys) ** 2).mean())}

    def state(self) -> dict[str, Any]:
        return {"value": self.value.detach().clone(),
                "optimizer": self.optimizer.state_dict(), "rng": torch.get_rng_state()}

    def close(self) -> None:
        self.__dict__.pop("value", None)
        self.__dict__.pop("optimizer", None)
