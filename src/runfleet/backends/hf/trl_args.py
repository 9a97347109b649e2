"""A run's TRL training config (``SFTConfig``/``DPOConfig``/``GRPOConfig``): checked and
planned in the controller, built quietly on the worker."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from runfleet.engine.backend import RunPlan
from runfleet.engine.chunking import StepPlan, eval_every
from runfleet.fit.configs import (
    LORA_BOUNDS,
    TRAINING_BOUNDS,
    ConfigError,
    FitConfig,
    ModelConfig,
    check_bounds,
)

_UNUSED_OUTPUT_DIR = os.path.join(tempfile.gettempdir(), "runfleet-unused")


def training_args(config: Any, args_class: type[FitConfig]) -> Any:
    """The run's TRL config built from its ``training_args`` wrapper (``args_class()``'s
    defaults when the config has none)."""
    wrapper = config["training_args"] or args_class()
    with quiet_deprecations():
        return wrapper.build(output_dir=_UNUSED_OUTPUT_DIR)


def plan_run(trainer: str, args_class: type[FitConfig], config: Any, num_examples: int,
             num_chunks: int, seed: int,
             examples_per_device: Callable[[Any], int] | None = None) -> RunPlan:
    """Validate an HF run's :class:`~runfleet.fit.ModelConfig` (model name, adapter,
    training arguments of ``args_class``) and plan its steps as TRL counts them: a step
    takes ``examples_per_device(args)`` (default: ``per_device_train_batch_size``) examples
    ``gradient_accumulation_steps`` times."""
    if not isinstance(config, ModelConfig):
        raise ConfigError(f"trainer={trainer!r} needs a ModelConfig, got "
                          f"{type(config).__name__}")
    if not config.model_name:
        raise ConfigError("model_name is required")
    wrapper = config.training_args or args_class()
    if not isinstance(wrapper, args_class):
        raise ConfigError(f"training_args: trainer={trainer!r} needs {args_class.__name__}, "
                          f"got {type(wrapper).__name__}")
    if config.peft_config is not None:
        if not isinstance(config.peft_config, FitConfig):
            raise ConfigError("peft_config must be a runfleet.fit.LoraConfig")
        check_bounds(config.peft_config, LORA_BOUNDS, "peft_config.")
        try:
            config.peft_config.build()
        except ConfigError as exc:
            raise ConfigError(f"peft_config: {exc}") from exc
    try:
        args = wrapper.build(output_dir=os.devnull)
    except ConfigError as exc:
        raise ConfigError(f"training_args: {exc}") from exc
    check_bounds(args, TRAINING_BOUNDS, "training_args.")
    per_device = (examples_per_device or _per_device)(args)
    steps = StepPlan.build(num_examples=num_examples,
                           batch_size=per_device * int(args.gradient_accumulation_steps),
                           epochs=float(args.num_train_epochs), max_steps=int(args.max_steps),
                           num_chunks=num_chunks, seed=seed)
    return RunPlan(steps, eval_every(args.eval_steps, steps.total_steps))


def _per_device(args: Any) -> int:
    return int(args.per_device_train_batch_size)


@contextmanager
def quiet_deprecations() -> Iterator[None]:
    """Hide FutureWarnings that transformers raises on its own defaults (and on peft's use
    of renamed attributes): they are not the user's to fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield
