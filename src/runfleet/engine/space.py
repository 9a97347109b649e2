"""Search spaces: ``List`` and ``Range`` values anywhere in a config tree, expanded by
``GridSearch`` (every combination of ``List`` values) or ``RandomSearch`` (``num_runs``
samples, ``Range`` included). Expansion is deterministic: the first search value met in a
depth-first walk varies slowest, and a ``List`` of configs may itself hold search values.

Example:
    >>> space = GridSearch({"lr": List([1e-3, 1e-4]), "opt": {"beta": List([0.9, 0.99])}})
    >>> [flatten(c) for c in space.expand()][:2]
    [{'lr': 0.001, 'opt.beta': 0.9}, {'lr': 0.001, 'opt.beta': 0.99}]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from runfleet.fit.configs import FitConfig, OpenConfig

Path = tuple[Any, ...]

#: Keys the engine adds to every run's flattened config. They are the same for all runs of
#: an experiment (set by ``run_fit``/``run_evals``, not by a config), so a clone cannot
#: change them. The dashboard serves this list to its page.
ENGINE_CONFIG_KEYS = ("trainer", "num_chunks", "seed", "warm_start")


class SpaceError(ValueError):
    """A search space is malformed; the message names the key."""


class List:
    """Choose among ``values``: every one in a grid, uniformly in a random search."""

    def __init__(self, values: Sequence[Any]) -> None:
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise SpaceError(f"List needs a sequence of values, got {type(values).__name__}")
        if len(values) == 0:
            raise SpaceError("List needs at least one value")
        self.values = list(values)

    def sample(self, rng: np.random.Generator) -> Any:
        """One value, uniformly."""
        return self.values[int(rng.integers(len(self.values)))]

    def __repr__(self) -> str:
        return f"List({self.values!r})"


class Range:
    """A value in ``[lo, hi]``, sampled by :class:`RandomSearch` (log-uniform with
    ``log=True``; ``dtype=int`` gives integers, both ends included)."""

    def __init__(self, lo: float, hi: float, log: bool = False, dtype: type = float) -> None:
        if dtype not in (float, int):
            raise SpaceError(f"Range dtype must be float or int, got {dtype!r}")
        if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float))):
            raise SpaceError("Range bounds must be numbers")
        if not lo < hi:
            raise SpaceError(f"Range needs lo < hi, got {lo} and {hi}")
        if log and lo <= 0:
            raise SpaceError(f"a log Range needs lo > 0, got {lo}")
        self.lo, self.hi, self.log, self.dtype = lo, hi, log, dtype

    def sample(self, rng: np.random.Generator) -> Any:
        """One value from the range."""
        if self.log:
            value = math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        else:
            value = rng.uniform(self.lo, self.hi)
        if self.dtype is int:
            return int(min(max(round(value), math.ceil(self.lo)), math.floor(self.hi)))
        return float(value)

    def __repr__(self) -> str:
        return f"Range({self.lo}, {self.hi}, log={self.log}, dtype={self.dtype.__name__})"


# -- walking config trees ---------------------------------------------------------------------
def _children(node: Any) -> list[tuple[Any, Any]]:
    if isinstance(node, OpenConfig):
        return list(node.as_dict().items())
    if isinstance(node, FitConfig):
        return list(node.kwargs.items())
    if isinstance(node, Mapping):
        return list(node.items())
    if isinstance(node, (list, tuple)):
        return list(enumerate(node))
    return []


def _replace(node: Any, key: Any, value: Any) -> Any:
    if isinstance(node, OpenConfig):
        return node.with_values({**node.as_dict(), key: value})
    if isinstance(node, FitConfig):
        return node.with_values({**node.kwargs, key: value})
    if isinstance(node, Mapping):
        return {**node, key: value}
    if isinstance(node, list):
        return [value if i == key else v for i, v in enumerate(node)]
    if isinstance(node, tuple):
        return tuple(value if i == key else v for i, v in enumerate(node))
    raise SpaceError(f"cannot set {key!r} inside {type(node).__name__}")


def _first_dim(node: Any, path: Path = ()) -> Path | None:
    if isinstance(node, (List, Range)):
        return path
    for key, child in _children(node):
        found = _first_dim(child, (*path, key))
        if found is not None:
            return found
    return None


def _get(node: Any, path: Path) -> Any:
    for key in path:
        node = dict(_children(node))[key]
    return node


def _set(node: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    child = dict(_children(node))[path[0]]
    return _replace(node, path[0], _set(child, path[1:], value))


def dotted(path: Path) -> str:
    """``("training_args", "learning_rate")`` -> ``"training_args.learning_rate"``."""
    return ".".join(str(p) for p in path)


def expand_grid(tree: Any) -> list[Any]:
    """Every combination of the ``List`` values in ``tree`` (``Range`` is an error)."""
    path = _first_dim(tree)
    if path is None:
        return [tree]
    dim = _get(tree, path)
    if isinstance(dim, Range):
        raise SpaceError(f"{dotted(path) or 'the config'} is a Range: GridSearch cannot "
                         f"enumerate it; use List([...]) or RandomSearch")
    out: list[Any] = []
    for value in dim.values:
        out.extend(expand_grid(_set(tree, path, value)))
    return out


def sample_tree(tree: Any, rng: np.random.Generator) -> Any:
    """One random concrete config from ``tree``."""
    path = _first_dim(tree)
    while path is not None:
        tree = _set(tree, path, _get(tree, path).sample(rng))
        path = _first_dim(tree)
    return tree


def _leaf(value: Any) -> Any:
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__qualname__", None) or repr(value)
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, (set, frozenset)):
        return sorted(_leaf(v) for v in value)
    return value


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A concrete config as ``{dotted.key: value}`` (callables by name, None omitted).

    Lists of plain values (e.g. ``target_modules``) stay lists; configs nest with dots.
    """
    out: dict[str, Any] = {}
    for key, value in _children(tree):
        name = f"{prefix}{key}"
        if value is None:
            continue
        if isinstance(value, (OpenConfig, FitConfig, Mapping)):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)) and any(
                isinstance(v, (OpenConfig, FitConfig, Mapping)) for v in value):
            out.update(flatten(list(value), name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = [_leaf(v) for v in value]
        else:
            out[name] = _leaf(value)
    return out


class GridSearch:
    """Every combination of the ``List`` values in ``space``, trained with ``trainer``.

    ``trainer`` names an installed trainer backend: runfleet's own are ``"sft"``, ``"dpo"``,
    ``"grpo"`` (HF/TRL with PEFT) and ``"torch"`` (a plain PyTorch loop for custom models);
    packages add more (:mod:`runfleet.plugins`). None: the config type's default
    (``ModelConfig``: ``"sft"``, ``TorchConfig``: ``"torch"``).
    """

    def __init__(self, space: Any, trainer: str | None = None) -> None:
        self.space = space
        self.trainer = trainer

    def expand(self) -> list[Any]:
        """The concrete configs, in a deterministic order."""
        return expand_grid(self.space)


class RandomSearch:
    """``num_runs`` configs sampled from ``space`` with ``seed`` (``List`` uniformly,
    ``Range`` as declared)."""

    def __init__(self, space: Any, num_runs: int, seed: int = 0,
                 trainer: str | None = None) -> None:
        if num_runs < 1:
            raise SpaceError(f"num_runs must be >= 1, got {num_runs}")
        self.space = space
        self.num_runs = num_runs
        self.seed = seed
        self.trainer = trainer

    def expand(self) -> list[Any]:
        """The sampled configs (the same ones for the same seed)."""
        rng = np.random.default_rng(self.seed)
        return [sample_tree(self.space, rng) for _ in range(self.num_runs)]


def apply_changes(config: Any, changes: Mapping[str, Any]) -> Any:
    """A copy of a concrete ``config`` with ``{"dotted.key": value}`` changes applied.

    A key must name an existing field, or an argument the wrapped peft/trl class accepts;
    anything else raises :class:`SpaceError` naming the key (with a suggestion). A value
    must have the field's type: the type the peft/trl class declares for its arguments
    (``learning_rate=True`` or ``max_steps="10"`` are refused), else the type of the value
    it replaces (a number stays a number). A list is replaced whole. Bounds (``max_steps >=
    1``...) are checked when the trainer plans the run.
    """
    for dotted_key, value in changes.items():
        if isinstance(value, (List, Range)):
            raise SpaceError(f"{dotted_key}: a clone takes one value, not a search space")
        path = tuple(dotted_key.split("."))
        config = _set_checked(config, path, value, dotted_key)
    return config


def _set_checked(node: Any, path: Path, value: Any, full: str) -> Any:
    key = path[0]
    where = full[:len(full) - len(".".join(str(p) for p in path))].rstrip(".")
    if isinstance(node, (list, tuple)):
        if not (str(key).isdigit() and int(key) < len(node)
                and isinstance(node[int(key)], (OpenConfig, FitConfig, Mapping))):
            raise SpaceError(f"{full}: {where} is a list; a clone replaces a list whole, "
                             f"e.g. {where}={list(node)!r}")
        key = int(key)
    children = dict(_children(node))
    if isinstance(node, FitConfig):
        known = _accepted(node)
        if key not in known:
            import difflib

            hint = difflib.get_close_matches(key, sorted(known), n=1)
            raise SpaceError(f"unknown config key {full!r}" +
                             (f" (did you mean {hint[0]!r}?)" if hint else ""))
    elif key not in children and key not in _defaults(node):
        hint = [k for k in children if isinstance(k, str) and k.lower() == str(key).lower()]
        options = ", ".join(str(k) for k in children if children[k] is not None)
        raise SpaceError(f"unknown config key {full!r}" +
                         (f" (did you mean {hint[0]!r}?)" if hint else f"; known: {options}"))
    if len(path) == 1:
        _check_type(node, key, children.get(key, _defaults(node).get(key)), value, full)
        return _replace(node, key, value)
    child = children.get(key)
    if child is None:
        raise SpaceError(f"unknown config key {full!r}: {key!r} is not set")
    return _replace(node, key, _set_checked(child, path[1:], value, full))


def _defaults(node: Any) -> dict[str, Any]:
    """Known keys a config reads as defaults when unset (e.g. TorchConfig's)."""
    return dict(getattr(type(node), "DEFAULTS", {})) if isinstance(node, OpenConfig) else {}


def _check_type(node: Any, key: Any, current: Any, value: Any, full: str) -> None:
    """Refuse a value of the wrong type for ``key`` of ``node`` (see apply_changes)."""
    if isinstance(node, FitConfig):
        hints = _type_hints(node.real_class())
        if key in hints and not matches_type(value, hints[key]):
            raise SpaceError(f"{full}: {node.real_class().__name__}.{key} takes "
                             f"{_describe_type(hints[key])}, got {type(value).__name__} "
                             f"{value!r}")
        return
    if current is None or value is None or isinstance(current, (OpenConfig, FitConfig, Mapping)):
        return
    if not matches_type(value, type(current)):
        raise SpaceError(f"{full}: the value it replaces is {type(current).__name__} "
                         f"{current!r}, got {type(value).__name__} {value!r}")


_hints: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    if cls not in _hints:
        import typing

        try:
            _hints[cls] = typing.get_type_hints(cls)
        except Exception:  # a class whose annotations cannot be resolved: no type checks
            _hints[cls] = {}
    return _hints[cls]


def matches_type(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits ``annotation`` (int for float is fine, bool for a number is
    not; unions, Optional, Literal, Enum, list[...] and dict are understood; anything more
    exotic is accepted)."""
    import enum
    import types
    import typing

    origin = typing.get_origin(annotation)
    if annotation is typing.Any or annotation is object:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, arm) for arm in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is bool:
        return isinstance(value, (bool, np.bool_))
    if annotation is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if annotation is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, (bool, np.bool_))
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return isinstance(value, annotation) or value in {m.value for m in annotation}
    if origin in (list, tuple, set, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(annotation)
        return not args or (args[-1] is Ellipsis and not args[:-1]) or all(
            matches_type(v, args[0]) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _describe_type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "")


def _accepted(node: FitConfig) -> set[str]:
    import dataclasses
    import inspect

    cls = node.real_class()
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls) if f.init}
    return set(inspect.signature(cls).parameters)
