"""A plain PyTorch training loop for custom models (``trainer="torch"``).

Contract: ``create_model_fn(config)`` returns a ``torch.nn.Module`` whose
``forward(batch)`` returns a scalar loss tensor, or a dict with ``"loss"`` and other scalar
metrics. ``batch`` is built from the dataset rows of a step by ``config.collate_fn``
(default: ``torch.utils.data.default_collate``). The config is a
:class:`runfleet.fit.TorchConfig`; all of its weights train.
"""

from __future__ import annotations

import math
from typing import Any

from runfleet.backends.optim import (
    clip_and_step,
    load_optimizer_state,
    make_optimizer,
    make_scheduler,
)
from runfleet.backends.state import cpu_copy, rng_state, seed_everything, set_rng_state
from runfleet.engine.backend import Backend, NonFiniteLossError, RunPlan
from runfleet.engine.chunking import StepPlan, eval_every
from runfleet.fit.configs import TRAINING_BOUNDS, ConfigError, TorchConfig, check_bounds


class TorchLoopBackend(Backend):
    """Full training of a custom ``nn.Module``; the model is rebuilt per run on the worker."""

    @classmethod
    def plan(cls, config: Any, num_examples: int, num_chunks: int, seed: int) -> RunPlan:
        """Check ``config`` is a :class:`~runfleet.fit.TorchConfig` with a positive learning
        rate; plan ``max_steps`` (or ``num_train_epochs``) steps of ``per_device_train_batch
        _size x gradient_accumulation_steps`` examples."""
        if not isinstance(config, TorchConfig):
            raise ConfigError(f"trainer='torch' needs a TorchConfig, got {type(config).__name__}")
        check_bounds(config, TRAINING_BOUNDS)
        batch = int(config["per_device_train_batch_size"]) * int(
            config["gradient_accumulation_steps"])
        steps = StepPlan.build(num_examples=num_examples, batch_size=batch,
                               epochs=float(config["num_train_epochs"]),
                               max_steps=int(config["max_steps"]), num_chunks=num_chunks,
                               seed=seed)
        return RunPlan(steps, eval_every(config["eval_steps"], steps.total_steps))

    def open(self, state: dict[str, Any] | None) -> None:
        """Build the model and optimizer: fresh (``state`` None), resumed from a saved
        state, or, for a state with ``"warm_start": True`` (a warm clone), from the parent's
        weights and optimizer state with this run's own fresh LR schedule and seeded RNG."""
        import torch

        cfg = self.spec.config
        warm = bool(state is not None and state.get("warm_start"))
        if state is None:
            seed_everything(self.spec.seed)  # the model's initialisation draws random numbers
        self.model = self.resources.create_model_fn(cfg).to(self.resources.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg, self.spec.plan.total_steps)
        if state is not None:
            self.model.load_state_dict(state["model"])
            load_optimizer_state(self.optimizer, state["optimizer"], warm_start=warm)
        if warm:
            seed_everything(self.spec.seed)  # a run of its own: fresh schedule (above) and RNG
        elif state is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
        self.collate = cfg.get("collate_fn") or torch.utils.data.default_collate
        self.model.train()

    def _forward(self, rows: list[Any]) -> dict[str, Any]:
        batch = self.collate(rows)
        batch = _to_device(batch, self.resources.device)
        out = self.model(batch)
        return out if isinstance(out, dict) else {"loss": out}

    def train_step(self, step: int, indices: list[int]) -> dict[str, Any]:
        """Forward/backward ``indices`` in ``gradient_accumulation_steps`` micro-batches,
        clip, step; the model's other outputs are averaged into the metrics."""
        cfg = self.spec.config
        accum = int(cfg.get("gradient_accumulation_steps", 1))
        data = self.resources.train_dataset
        micro = _split(indices, accum)
        totals: dict[str, float] = {}
        for part in micro:
            out = self._forward([data[i] for i in part])
            loss = out["loss"]
            (loss / len(micro)).backward()
            for k, v in out.items():
                value = v.detach() if hasattr(v, "detach") else v
                totals[k] = totals.get(k, 0.0) + float(value) / len(micro)
        if not math.isfinite(totals["loss"]):
            raise NonFiniteLossError(f"loss is {totals['loss']} at step {step}")
        grad_norm, lr = clip_and_step(self.params, self.optimizer, self.scheduler,
                                      cfg.get("max_grad_norm", 1.0))
        return {**totals, "learning_rate": lr, "grad_norm": grad_norm}

    def evaluate(self) -> dict[str, Any]:
        """Every output of ``forward`` averaged over the eval set, prefixed ``eval_``."""
        import torch

        data = self.resources.eval_dataset
        if data is None or len(data) == 0:
            return {}
        cfg = self.spec.config
        size = int(cfg.get("per_device_eval_batch_size") or cfg["per_device_train_batch_size"])
        self.model.eval()
        totals: dict[str, float] = {}
        count = 0
        with torch.no_grad():
            for lo in range(0, len(data), size):
                rows = [data[i] for i in range(lo, min(lo + size, len(data)))]
                out = self._forward(rows)
                for k, v in out.items():
                    totals[k] = totals.get(k, 0.0) + float(v) * len(rows)
                count += len(rows)
        self.model.train()
        return {f"eval_{k}": v / count for k, v in totals.items()}

    def state(self) -> dict[str, Any]:
        """Weights, optimizer, schedule and RNG, on the CPU."""
        return {"model": cpu_copy(self.model.state_dict()),
                "optimizer": cpu_copy(self.optimizer.state_dict()),
                "scheduler": self.scheduler.state_dict(), "rng": rng_state()}

    def close(self) -> None:
        """Drop the run's model and optimizer (nothing is shared between torch runs)."""
        for name in ("model", "optimizer", "scheduler", "params"):
            self.__dict__.pop(name, None)


def _split(indices: list[int], parts: int) -> list[list[int]]:
    size = math.ceil(len(indices) / max(parts, 1))
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def _to_device(batch: Any, device: str) -> Any:
    if hasattr(batch, "to"):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch
