"""Run configuration with attribute and item access, like ``wandb.config``.

Values are made JSON-ready when set (numpy and torch scalars become numbers, dataclasses,
argparse namespaces and mappings become dicts, paths and other objects become text) so what
is stored is what you read back. Every change is persisted by the writer. Text holding a
lone surrogate, and values nested more than 100 levels deep, raise ``TypeError`` naming
the key.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import PurePath
from typing import Any

from runfleet.tracking.text import MAX_DEPTH, check_text, too_deep_error


def to_config_value(value: Any, key: str = "", *, what: str = "config") -> Any:
    """Convert ``value`` to something JSON can hold, keeping numbers exact.

    ``key`` names the value in errors (``what`` says whose key: ``config`` or
    ``summary``). Raises ``TypeError`` naming the key for text (keys included) that holds
    a lone surrogate, and for mappings or lists nested more than :data:`MAX_DEPTH` levels.
    """
    return _convert(value, key, 0, what)


def _label(what: str, key: str) -> str:
    return f"{what} key {key!r}" if key else f"{what} value"


def _child(key: str, sub: str) -> str:
    return f"{key}.{sub}" if key else sub


def _convert(value: Any, key: str, depth: int, what: str) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return check_text(_label(what, key), value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        _check_depth(depth, key, what)
        out: dict[str, Any] = {}
        for k, v in value.items():
            name = check_text(_label(what, _child(key, str(k))), str(k))
            out[name] = _convert(v, _child(key, name), depth + 1, what)
        return out
    if isinstance(value, argparse.Namespace):
        return _convert(vars(value), key, depth, what)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _convert(dataclasses.asdict(value), key, depth, what)
    if isinstance(value, (list, tuple, set, frozenset)):
        _check_depth(depth, key, what)
        return [_convert(v, f"{key}[{i}]", depth + 1, what) for i, v in enumerate(value)]
    if isinstance(value, PurePath):
        return check_text(_label(what, key), str(value))
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "size", getattr(value, "numel", lambda: 1)) in (1, None):
        try:
            scalar = item()
        except (ValueError, RuntimeError, TypeError):
            pass
        else:
            return _convert(scalar, key, depth, what)
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return _convert(tolist(), key, depth, what)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        try:
            converted = to_dict()
        except Exception:  # a foreign to_dict() may fail; fall back to text below
            pass
        else:
            return _convert(converted, key, depth, what)
    return check_text(_label(what, key), str(value))


def _check_depth(depth: int, key: str, what: str) -> None:
    if depth >= MAX_DEPTH:
        raise too_deep_error(_label(what, re.split(r"[.\[]", key, maxsplit=1)[0]), key)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


class Config(MutableMapping[str, Any]):
    """A run's configuration: ``config.lr``, ``config["lr"]``, ``config.update({...})``.

    Example:
        >>> c = Config({"lr": 1e-3})
        >>> c.update({"batch_size": 32})
        >>> c.lr, c["batch_size"]
        (0.001, 32)
    """

    def __init__(self, values: Mapping[str, Any] | None = None,
                 on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_values", {})
        # wandb keeps a config's values in ``_items`` and some libraries read
        # ``vars(wandb.config)["_items"]`` (transformers' wandb hyperparameter search):
        # the same dict, never rebound (changes are made in place).
        object.__setattr__(self, "_items", self._values)
        object.__setattr__(self, "_on_change", None)
        if values:
            self.update(values)
        object.__setattr__(self, "_on_change", on_change)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        with self._lock:
            del self._values[key]
            snapshot = dict(self._values)
        if self._on_change is not None:
            self._on_change(snapshot)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._values))

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def __repr__(self) -> str:
        return f"Config({self._values!r})"

    def update(self, *args: Any, allow_val_change: bool = True, **kwargs: Any) -> None:
        """Merge a mapping, an argparse namespace, a dataclass or keyword arguments.

        ``allow_val_change`` is accepted for wandb compatibility (changes are always allowed).
        """
        merged: dict[str, Any] = {}
        for arg in args:
            if arg is None:
                continue
            value = to_config_value(arg)
            if not isinstance(value, dict):
                raise TypeError(f"config.update() needs a mapping, got {type(arg).__name__}")
            merged.update(value)
        merged.update({check_text(f"config key {k!r}", k): to_config_value(v, k)
                       for k, v in kwargs.items()})
        if not merged:
            return
        with self._lock:
            changed = any(k not in self._values or not _same(self._values[k], v)
                          for k, v in merged.items())
            self._values.update(merged)
            snapshot = dict(self._values)
        if changed and self._on_change is not None:
            self._on_change(snapshot)

    def setdefaults(self, values: Mapping[str, Any]) -> None:
        """Set keys that are not set yet (wandb's ``config.setdefaults``)."""
        self.update({k: v for k, v in values.items() if k not in self._values})

    def as_dict(self) -> dict[str, Any]:
        """A plain-dict copy."""
        with self._lock:
            return dict(self._values)


#: What a stored config shows instead of a secret.
REDACTED = "[redacted]"
_SECRET_WORDS = frozenset({"api_key", "apikey", "token", "secret", "password", "passwd",
                           "access_key", "private_key", "auth"})


def is_secret_key(key: str) -> bool:
    """Whether a config key (its last dotted part) names a secret: ``api_key``, ``token``,
    ``secret``, ``password`` and the like, alone or as a word of the key
    (``hf_token``, ``db_password``). ``api_key_env`` (the *name* of a variable holding the
    key) and words that only contain one (``max_tokens``, ``tokenizer``) are not secrets.

    >>> [is_secret_key(k) for k in ("api_key", "generator.hf_token", "api_key_env", "max_tokens")]
    [True, True, False, False]
    """
    last = str(key).rsplit(".", 1)[-1].lower().replace("-", "_")
    if last.endswith("_env"):
        return False
    words = last.split("_")
    pairs = {"_".join(words[i:i + 2]) for i in range(len(words) - 1)}
    return last in _SECRET_WORDS or bool(_SECRET_WORDS & (set(words) | pairs))


def redact_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a config whose values under secret keys (:func:`is_secret_key`, at any
    depth) read :data:`REDACTED`: what the store, the trackers and the dashboard get. The
    run's own :class:`Config` keeps the real values for the script."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if is_secret_key(key) and value is not None:
            out[key] = REDACTED
        elif isinstance(value, Mapping):
            out[key] = redact_secrets(value)
        else:
            out[key] = value
    return out
