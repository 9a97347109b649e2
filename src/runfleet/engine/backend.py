"""The trainer backend interface: how a config is planned, and how a worker trains one run
for one chunk.

A backend is registered under a trainer name in the ``runfleet.backends`` entry-point group
(:mod:`runfleet.plugins`); ``GridSearch(space, trainer=NAME)`` selects it. It has two sides.

**Planning**, in the controller's process, before anything trains:
:meth:`Backend.plan` validates one concrete config (errors name the key) and says how many
optimizer steps the run takes, which examples each step sees (a seeded
:class:`~runfleet.engine.chunking.StepPlan`) and how often it evaluates.
:meth:`Backend.check_warm_start` says whether a clone may start from its parent's state.

**The recipe**, on a worker, once per chunk:

1. ``open(state)``: put the run on the worker's device: build (or reuse from
   ``resources.cache``) what runs share, add the run's trainable part, optimizer and LR
   schedule, and restore ``state``: None for a fresh run, a saved state to resume exactly,
   or a parent's state with ``"warm_start": True`` (a warm clone: the parent's weights and
   optimizer moments, with this run's own fresh schedule and RNG);
2. ``train_step(step, indices)``: one optimizer step on those examples; return its metrics
   (``loss`` at least; ``learning_rate``, ``grad_norm`` ...);
3. ``evaluate()``: eval metrics (``eval_loss`` ...), empty without an eval set; it must not
   change what training does next (RNG state included);
4. ``state()``: CPU copies of everything needed to continue exactly;
5. ``close()``: take the run off the device; also called after a failure of any step above,
   and must then leave the worker able to train other runs.

The worker owns the loop over a chunk's steps (:mod:`runfleet.engine.worker`), so every
backend gets the same step order, stop checks and eval cadence. The contract every backend
keeps, checked by the shared suite ``tests/backends/test_conformance.py``: a run trained in
chunks, swapped off the worker between them while other runs train, computes the same
steps as in one go; a run stopped mid-chunk and resumed from its state continues exactly;
a state survives ``torch.save``/``torch.load``; a warm start takes the parent's weights;
``close()`` after a failure leaves the worker usable.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from runfleet import plugins
from runfleet.engine.chunking import StepPlan
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


@dataclass(frozen=True)
class RunPlan:
    """A validated config's plan: its steps (which examples each optimizer step sees, and
    the chunks they are cut into) and its eval cadence (every ``eval_steps`` steps, and at
    the end of every chunk; None: only at chunk ends)."""

    steps: StepPlan
    eval_steps: int | None = None


class Backend(abc.ABC):
    """Plans and trains runs of one trainer; see the module docstring for the contract.

    ``task`` says which front door runs it: ``"fit"`` (``Experiment.run_fit``: the
    examples are training rows) or ``"eval"`` (``Experiment.run_evals``: the examples are
    eval queries, a chunk is a shard of them, nothing is trained).
    """

    task: ClassVar[str] = "fit"

    def __init__(self, spec: RunSpec, resources: WorkerResources) -> None:
        self.spec = spec
        self.resources = resources

    # -- planning (the controller's process) -------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def plan(cls, config: Any, num_examples: int, num_chunks: int, seed: int) -> RunPlan:
        """Validate one concrete ``config`` and plan its steps over ``num_examples``
        training examples cut into ``num_chunks`` chunks (data order seeded by ``seed``).

        Raise ``ValueError`` (e.g. :class:`runfleet.fit.ConfigError`) naming the key.
        """

    @classmethod
    def check_warm_start(cls, parent: Mapping[str, Any], child: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` with the reason if a run with the flattened config ``child``
        cannot start from the state of a run with ``parent`` (e.g. other weight shapes).
        The default accepts every pair; :meth:`open` still checks what it loads."""
        return None

    @classmethod
    def summarize(cls, history: Any) -> dict[str, Any] | None:
        """A run's columns in the experiment's results table, from its tracked history (a
        DataFrame: one row per step, one column per key). None (the default): every
        metric's last value and its best."""
        return None

    # -- the recipe (a worker) -----------------------------------------------------------------
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
        """Release the run's device memory (shared parts may stay cached)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (the run fails; others go on)."""


def backend_class(trainer: str) -> type[Backend]:
    """The backend registered under the trainer name ``trainer`` (see
    :mod:`runfleet.plugins`); ``ValueError`` naming the installed ones if there is none."""
    found = plugins.load(plugins.BACKENDS, trainer, what="trainer")
    if not (isinstance(found, type) and issubclass(found, Backend)):
        raise TypeError(f"trainer {trainer!r} is registered as {found!r}, which is not a "
                        f"runfleet.engine.backend.Backend subclass")
    return found


def trainers() -> list[str]:
    """The trainer names of every installed backend."""
    return plugins.names(plugins.BACKENDS)
