"""The trainer backend interface: how a worker trains one run for one chunk.

A backend is a recipe a reader can follow top to bottom:

1. ``open(state)``: put the run on the worker's device: build (or reuse) the base model,
   add the run's trainable part (LoRA adapter or full weights), optimizer and LR scheduler,
   and restore ``state`` (None for a fresh run) including RNG state;
2. ``train_step(step, indices)``: one optimizer step on the given examples, returning its
   metrics (``loss``, ``learning_rate``, ``grad_norm`` ...);
3. ``evaluate()``: metrics on the eval set (``eval_loss`` and generation metrics);
4. ``state()``: CPU copies of everything needed to continue exactly;
5. ``close()``: take the run off the device (base weights stay cached for the next run).

The worker owns the loop over a chunk's steps (see :mod:`runfleet.engine.worker`) so every
backend gets the same step order, stop checks and eval cadence. Implementations register
in :data:`BACKENDS` by trainer name.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from runfleet.engine.spec import RunSpec


@dataclass
class WorkerResources:
    """What a worker shares between the runs it trains: device, datasets, loaded models.

    ``cache`` holds anything a backend wants to keep across runs on this worker (base
    models by name, tokenized datasets, reference log-probabilities), keyed as it likes.
    """

    device: str
    train_dataset: Any
    eval_dataset: Any
    create_model_fn: Callable[..., Any]
    cache: dict[Any, Any] = field(default_factory=dict)


class Backend(abc.ABC):
    """Trains one run on one worker; see the module docstring for the recipe."""

    trainer: ClassVar[str] = ""

    def __init__(self, spec: RunSpec, resources: WorkerResources) -> None:
        self.spec = spec
        self.resources = resources

    @abc.abstractmethod
    def open(self, state: dict[str, Any] | None) -> None:
        """Put the run on the device, fresh (``state is None``) or from a saved state."""

    @abc.abstractmethod
    def train_step(self, step: int, indices: list[int]) -> dict[str, Any]:
        """One optimizer step on the examples ``indices``; return the step's metrics."""

    @abc.abstractmethod
    def evaluate(self) -> dict[str, Any]:
        """Eval metrics (empty when there is no eval dataset)."""

    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly, as CPU tensors and plain values."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the run's device memory (base weights may stay cached)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (the run fails; others go on)."""


BACKENDS: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make a backend available under its ``trainer`` name."""
    BACKENDS[cls.trainer] = cls
    return cls


def backend_for(trainer: str) -> type[Backend]:
    """The backend class of a trainer name (importing the built-in ones on first use)."""
    if trainer not in BACKENDS:
        if trainer == "torch":
            import runfleet.backends.torch_loop
        elif trainer in ("sft", "dpo", "grpo"):
            import runfleet.backends.hf  # noqa: F401
    try:
        return BACKENDS[trainer]
    except KeyError:
        raise ValueError(f"unknown trainer {trainer!r}; use one of sft, dpo, grpo, torch"
                         ) from None


# -- RNG helpers shared by backends -------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The RNG state of Python, numpy and torch (CPU and CUDA)."""
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_copy(tree: Any) -> Any:
    """A deep copy of tensors in ``tree`` (dicts, lists) on the CPU."""
    import torch

    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, dict):
        return {k: cpu_copy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(cpu_copy(v) for v in tree)
    return tree
