"""From a search space to validated, planned runs; the same path for a clone.

Every config of a space is checked and planned by its trainer's backend
(:meth:`~runfleet.engine.backend.Backend.plan`) before anything trains, so an error names
the run and the key at once. A clone goes through the same steps with its changes applied
(plus the backend's warm-start rule), and an invalid one becomes the op's rejection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runfleet.engine.backend import Backend, RunPlan, backend_class
from runfleet.engine.chunking import check_num_chunks
from runfleet.engine.space import GridSearch, RandomSearch, SpaceError, apply_changes, flatten
from runfleet.fit.configs import OpenConfig


@dataclass(frozen=True)
class PlannedRun:
    """One concrete config, its backend's plan, and its flattened config (dotted keys,
    ``trainer`` first) as the run's tracked config shows it."""

    config: Any
    plan: RunPlan
    flat: dict[str, Any]


def expand(space: Any, task: str = "fit") -> tuple[str, list[Any]]:
    """The trainer name and the concrete configs of ``space`` (a :class:`GridSearch`, a
    :class:`RandomSearch`, or one config); the trainer must be installed and do ``task``
    (``"fit"`` for ``run_fit``, ``"eval"`` for ``run_evals``)."""
    if isinstance(space, (GridSearch, RandomSearch)):
        configs, trainer = space.expand(), space.trainer or _default_trainer(space.space)
    elif isinstance(space, OpenConfig):
        configs, trainer = GridSearch(space).expand(), _default_trainer(space)
    else:
        raise TypeError(f"an experiment needs a GridSearch, RandomSearch or a config such as "
                        f"ModelConfig, got {type(space).__name__}")
    backend = backend_class(trainer)  # an unknown name fails here, naming those installed
    if backend.task != task:
        door = {"fit": "run_fit", "eval": "run_evals"}
        raise ValueError(f"trainer {trainer!r} is for {door.get(backend.task, backend.task)}, "
                         f"not {door.get(task, task)}")
    if not configs:
        raise SpaceError("the search space is empty")
    return trainer, configs


def _default_trainer(config: Any) -> str:
    trainer = getattr(type(config), "default_trainer", None)
    if not trainer:
        raise ValueError(f"name the trainer for a {type(config).__name__} space: "
                         f"GridSearch(space, trainer=...)")
    return str(trainer)


def plan_runs(trainer: str, configs: list[Any], num_examples: int, num_chunks: int,
              seed: int) -> list[PlannedRun]:
    """Check and plan every config; the first error names its run (``run 2 of 4: ...``)."""
    check_num_chunks(num_chunks)
    backend = backend_class(trainer)
    planned = []
    for i, config in enumerate(configs):
        try:
            planned.append(_plan(backend, trainer, config, num_examples, num_chunks, seed))
        except ValueError as exc:
            raise type(exc)(f"run {i + 1} of {len(configs)}: {exc}") from exc
    return planned


def plan_clone(trainer: str, parent_config: Any, parent_flat: Mapping[str, Any],
               changes: Mapping[str, Any], warm_start: bool, num_examples: int,
               num_chunks: int, seed: int) -> PlannedRun:
    """The parent's config with ``changes`` (dotted keys), checked and planned like a new
    run; a warm clone must also pass the backend's warm-start rule. Raises ``ValueError``
    with the reason."""
    config = apply_changes(parent_config, changes)
    backend = backend_class(trainer)
    planned = _plan(backend, trainer, config, num_examples, num_chunks, seed)
    if warm_start:
        backend.check_warm_start(parent_flat, planned.flat)
    return planned


def _plan(backend: type[Backend], trainer: str, config: Any, num_examples: int,
          num_chunks: int, seed: int) -> PlannedRun:
    plan = backend.plan(config, num_examples, num_chunks, seed)
    if plan.steps.num_chunks != num_chunks:
        raise SpaceError(f"the {trainer} backend planned {plan.steps.num_chunks} chunks, not "
                         f"num_chunks={num_chunks}")
    return PlannedRun(config, plan, {"trainer": trainer, **flatten(config)})


def tracked_config(run: PlannedRun, num_chunks: int, seed: int, **extra: Any) -> dict[str, Any]:
    """What a run's tracker records as its config: the flattened config plus the keys the
    engine adds (:data:`~runfleet.engine.space.ENGINE_CONFIG_KEYS`)."""
    return {**run.flat, "num_chunks": num_chunks, "seed": seed, **extra}
