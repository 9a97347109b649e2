"""Fit configs: thin wrappers over peft/trl configs whose arguments may be ``List``/``Range``.

A wrapper records the keyword arguments it was given (search-space values included),
checks their names against the real class at once (a typo fails before anything trains,
with a suggestion), and builds the real ``peft.LoraConfig`` / ``trl.SFTConfig`` /
``trl.DPOConfig`` / ``trl.GRPOConfig`` only once every value is concrete.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A config key or value is invalid; the message names the key."""


def _at_least(low: float, inclusive: bool = True) -> Callable[[float], bool]:
    return (lambda v: v >= low) if inclusive else (lambda v: v > low)


# Bounds of the training settings runfleet reads, whatever class holds them (a TRL config
# or a TorchConfig): (test, what the value must be).
TRAINING_BOUNDS: dict[str, tuple[Callable[[float], bool], str]] = {
    "learning_rate": (_at_least(0, inclusive=False), "> 0"),
    "max_steps": (lambda v: v == -1 or v >= 1, "-1 (train num_train_epochs) or >= 1"),
    "num_train_epochs": (_at_least(0, inclusive=False), "> 0"),
    "per_device_train_batch_size": (_at_least(1), ">= 1"),
    "per_device_eval_batch_size": (_at_least(1), ">= 1"),
    "gradient_accumulation_steps": (_at_least(1), ">= 1"),
    "warmup_steps": (_at_least(0), ">= 0"),
    "weight_decay": (_at_least(0), ">= 0"),
    "max_grad_norm": (_at_least(0), ">= 0"),
    "adam_beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "adam_beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "adam_epsilon": (_at_least(0, inclusive=False), "> 0"),
    "eval_steps": (_at_least(0, inclusive=False), "> 0"),
}

LORA_BOUNDS: dict[str, tuple[Callable[[float], bool], str]] = {
    "r": (_at_least(1), ">= 1"),
    "lora_alpha": (_at_least(0, inclusive=False), "> 0"),
    "lora_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
}


def check_bounds(values: Any, bounds: Mapping[str, tuple[Callable[[float], bool], str]],
                 prefix: str = "") -> None:
    """Raise :class:`ConfigError` naming the key (``prefix`` + name) of the first value of
    ``values`` (a mapping or an object with attributes) outside its bounds. Unset (None)
    values are left to their defaults."""
    for name, (ok, rule) in bounds.items():
        value = values.get(name) if isinstance(values, Mapping) else getattr(values, name, None)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not ok(value):
            raise ConfigError(f"{prefix}{name} must be {rule}, got {value!r}")


def _accepted_names(cls: type) -> set[str]:
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls) if f.init}
    params = inspect.signature(cls).parameters
    return {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


class FitConfig(Mapping[str, Any]):
    """Base of the wrappers: keyword arguments checked against ``target`` (``module:Class``).

    Supports item access (``cfg["r"]``), attribute access (``cfg.r``) and ``dict(cfg)``.
    """

    target: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **kwargs: Any) -> None:
        cls = self.real_class()
        known = _accepted_names(cls)
        for key in kwargs:
            if key not in known:
                hint = difflib.get_close_matches(key, sorted(known), n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ConfigError(
                    f"{type(self).__name__} got an unknown argument {key!r}{suggestion}")
        object.__setattr__(self, "_kwargs", dict(kwargs))

    @classmethod
    def real_class(cls) -> type:
        """The peft/trl class this wrapper builds."""
        module, _, name = cls.target.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def kwargs(self) -> dict[str, Any]:
        """The arguments given, as given (search-space values included)."""
        return dict(self._kwargs)

    def with_values(self, kwargs: dict[str, Any]) -> FitConfig:
        """A copy with these arguments (used when expanding a search space)."""
        clone = object.__new__(type(self))
        object.__setattr__(clone, "_kwargs", dict(kwargs))
        return clone

    def build(self, **overrides: Any) -> Any:
        """Construct the real object; raise :class:`ConfigError` naming what is wrong."""
        kwargs = {**self.defaults, **self._kwargs, **overrides}
        try:
            with warnings.catch_warnings():
                # transformers warns about its own deprecated defaults on every construction
                warnings.simplefilter("ignore", FutureWarning)
                return self.real_class()(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid {type(self).__name__}({_short(self._kwargs)}): {exc}"
                              ) from exc

    def __getitem__(self, key: str) -> Any:
        return self._kwargs[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._kwargs[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no argument {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new one")

    def __iter__(self) -> Iterator[str]:
        return iter(self._kwargs)

    def __len__(self) -> int:
        return len(self._kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._kwargs == self._kwargs

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self._kwargs)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._kwargs))


def _rebuild(cls: type[FitConfig], kwargs: dict[str, Any]) -> FitConfig:
    obj = object.__new__(cls)
    object.__setattr__(obj, "_kwargs", dict(kwargs))
    return obj


def _short(kwargs: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return text if len(text) < 160 else text[:157] + "..."


class LoraConfig(FitConfig):
    """``peft.LoraConfig`` arguments, e.g. ``LoraConfig(r=List([8, 32]), lora_alpha=16,
    target_modules=["q_proj", "v_proj"])``. ``task_type`` defaults to ``CAUSAL_LM``."""

    target = "peft:LoraConfig"
    defaults: ClassVar[dict[str, Any]] = {"task_type": "CAUSAL_LM"}


class _TrainingConfig(FitConfig):
    """Shared by the TRL configs: no reporting to other trackers, fp32 unless asked."""

    defaults: ClassVar[dict[str, Any]] = {"report_to": "none", "bf16": False, "fp16": False,
                                           "save_strategy": "no"}


class SFTConfig(_TrainingConfig):
    """``trl.SFTConfig`` arguments (learning_rate, max_steps, per_device_train_batch_size,
    gradient_accumulation_steps, lr_scheduler_type, warmup_steps, eval_steps, max_length ...)."""

    target = "trl:SFTConfig"


class DPOConfig(_TrainingConfig):
    """``trl.DPOConfig`` arguments (beta, learning_rate, max_steps, ...)."""

    target = "trl:DPOConfig"


class GRPOConfig(_TrainingConfig):
    """``trl.GRPOConfig`` arguments (num_generations, max_completion_length, beta,
    temperature, learning_rate, ...)."""

    target = "trl:GRPOConfig"


class OpenConfig(Mapping[str, Any]):
    """A config with an open set of named values (attribute and item access, immutable).

    ``default_trainer`` names the trainer backend a search space of this config type uses
    when it names none (``GridSearch(ModelConfig(...))`` trains with ``"sft"``).
    """

    default_trainer: ClassVar[str | None] = None

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new one")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self._values.items() if v is not None}
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._values == self._values

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self._values)))

    def with_values(self, values: dict[str, Any]) -> OpenConfig:
        """A copy holding ``values`` (used when expanding a search space)."""
        clone = object.__new__(type(self))
        object.__setattr__(clone, "_values", dict(values))
        return clone

    def as_dict(self) -> dict[str, Any]:
        """The values as given, as a dict."""
        return dict(self._values)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_open, (type(self), self._values))


def _rebuild_open(cls: type[OpenConfig], values: dict[str, Any]) -> OpenConfig:
    obj = object.__new__(cls)
    object.__setattr__(obj, "_values", dict(values))
    return obj


class ModelConfig(OpenConfig):
    """One run's model, adapter, training arguments and callbacks (values may be
    ``List``/``Range`` inside a search space).

    Args:
        model_name: what ``create_model_fn`` loads (a path or hub name).
        peft_config: a :class:`LoraConfig`, or None for full fine-tuning.
        training_args: an :class:`SFTConfig`, :class:`DPOConfig` or :class:`GRPOConfig`.
        formatting_func: ``example -> str`` turning a row into training text (SFT).
        compute_metrics: ``(predictions, references) -> dict`` on generated eval text;
            see :mod:`runfleet.fit.metrics` for ROUGE-L and BLEU.
        reward_funcs: GRPO reward functions ``(prompts, completions, **columns) -> list``.
        generation_kwargs: arguments of ``model.generate`` for eval generations.
        **extra: any other named values (e.g. ``dataset_variant``); they are part of the
            run's config and reach ``create_model_fn``.

    ``config.model_name`` and ``config["model_name"]`` both work.
    """

    default_trainer: ClassVar[str | None] = "sft"

    def __init__(self, model_name: Any = None, peft_config: Any = None,
                 training_args: Any = None, formatting_func: Callable[..., Any] | None = None,
                 compute_metrics: Callable[..., Any] | None = None,
                 reward_funcs: Any = None, generation_kwargs: Any = None,
                 **extra: Any) -> None:
        super().__init__(model_name=model_name, peft_config=peft_config,
                         training_args=training_args, formatting_func=formatting_func,
                         compute_metrics=compute_metrics, reward_funcs=reward_funcs,
                         generation_kwargs=generation_kwargs, **extra)


class TorchConfig(OpenConfig):
    """Config of a run on the plain PyTorch loop (``trainer="torch"``).

    Known keys and defaults are in :attr:`DEFAULTS` (``learning_rate``,
    ``per_device_train_batch_size``, ``num_train_epochs``, ``max_steps``, ...);
    ``collate_fn`` builds a batch from dataset rows. Any other key (model sizes, dropout
    ...) is the user's, passed to ``create_model_fn``. Unset known keys read as defaults.
    """

    default_trainer: ClassVar[str | None] = "torch"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 1e-3, "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": None, "gradient_accumulation_steps": 1,
        "num_train_epochs": 1.0, "max_steps": -1, "weight_decay": 0.0,
        "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8,
        "lr_scheduler_type": "linear", "warmup_steps": 0, "max_grad_norm": 1.0,
        "eval_steps": None, "collate_fn": None,
    }

    def __getitem__(self, key: str) -> Any:
        if key in self._values:
            return self._values[key]
        return self.DEFAULTS[key]
