"""Validation and normalisation of logged values, on the caller's thread.

``log()`` must answer in microseconds, so plain Python scalars pass through untouched; numpy
scalars, 0-d arrays and torch 0-d tensors become Python scalars (copied now, so a tensor
changed in place later does not change what was logged); media objects are kept as they are
for the writer thread to save. Lists and tuples (of numbers, typically) are stored as JSON
text, as wandb does; with ``RUNFLEET_STRICT=1`` in the environment they raise ``TypeError``
instead. Anything else raises ``TypeError`` naming the key, and so do text holding a lone
surrogate (see :mod:`runfleet.tracking.text`) and dicts nested more than
:data:`~runfleet.tracking.text.MAX_DEPTH` levels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from runfleet.tracking.media import Media
from runfleet.tracking.text import MAX_DEPTH, check_text, has_surrogates, too_deep_error

FAST_TYPES = frozenset({float, int, bool, str, type(None)})
# Types ``Run.log`` passes through without a look: text is checked (for lone surrogates).
NUMERIC_TYPES = frozenset({float, int, bool, type(None)})


def check_keys(keys: tuple[str, ...]) -> None:
    """Raise ``TypeError`` naming the first key of a ``log()`` payload that holds a lone
    surrogate (``Run.log`` calls this once per new key tuple, not per call)."""
    for key in keys:
        if has_surrogates(key):
            check_text(f"cannot log key {key!r}", key)


def normalize_value(key: str, value: Any) -> Any:
    """Return ``value`` as a Python scalar, None or :class:`Media`; raise TypeError otherwise."""
    if type(value) is str:
        return check_text(f"cannot log {key!r}", value)
    if type(value) in FAST_TYPES or isinstance(value, Media):
        return value
    if isinstance(value, (bool, int, float, str)):  # subclasses, e.g. IntEnum, np.float64
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        return check_text(f"cannot log {key!r}", str(value))
    if isinstance(value, (list, tuple)):
        return sequence_to_json(key, value)
    item = getattr(value, "item", None)
    if callable(item):
        size = getattr(value, "size", None)
        numel = getattr(value, "numel", None)
        n = numel() if callable(numel) else size
        if n == 1 or n is None:
            if hasattr(value, "detach"):  # torch tensor: no autograd graph kept alive
                value = value.detach()
            try:
                scalar = item()
            except (ValueError, RuntimeError, TypeError) as exc:
                raise TypeError(f"cannot log {key!r}: {exc}") from exc
            if type(scalar) is str:
                return check_text(f"cannot log {key!r}", scalar)
            if type(scalar) in FAST_TYPES:
                return scalar
            if isinstance(scalar, complex):
                raise TypeError(f"cannot log {key!r}: complex values are not supported")
        else:
            # an array (numpy, torch) of several values: JSON text like a list, as wandb
            # keeps it, unless strict mode asks for scalars only
            tolist = getattr(value.detach().cpu() if hasattr(value, "detach") else value,
                             "tolist", None)
            if strict_mode() or not callable(tolist):
                raise TypeError(
                    f"cannot log {key!r}: an array of {n} values is not a scalar; log one "
                    f"number per key, or wrap it in runfleet.Histogram(...)"
                    + (" (RUNFLEET_STRICT is set; without it the array is stored as JSON "
                       "text)" if strict_mode() else ""))
            items = tolist()
            return sequence_to_json(key, items if isinstance(items, list) else [items])
    raise TypeError(
        f"cannot log {key!r}: values of type {type(value).__name__} are not supported "
        f"(use a number, bool, str, a numpy/torch scalar, or runfleet.Image/Table/Histogram)"
    )


def strict_mode() -> bool:
    """Whether ``RUNFLEET_STRICT`` (``1``, ``true``, ``yes``) asks ``log()`` to refuse
    values it would otherwise convert (lists and tuples, stored as JSON text)."""
    return os.environ.get("RUNFLEET_STRICT", "").lower() in ("1", "true", "yes", "on")


def sequence_to_json(key: str, value: list[Any] | tuple[Any, ...]) -> str:
    """A logged list or tuple as JSON text (``[0.1, 0.2]``), as wandb stores it; numpy and
    torch scalars or arrays inside become numbers, other objects their text. In strict mode
    (:func:`strict_mode`) raises ``TypeError`` naming the key instead."""
    if strict_mode():
        raise TypeError(
            f"cannot log {key!r}: a {type(value).__name__} is not a scalar (RUNFLEET_STRICT "
            f"is set; without it the {type(value).__name__} is stored as JSON text)")
    try:
        return json.dumps(value, default=_json_item, allow_nan=True)
    except (TypeError, ValueError, RecursionError):  # e.g. a circular list: keep its text
        return check_text(f"cannot log {key!r}", f"{value!r:.10000}")


def _json_item(obj: Any) -> Any:
    for name in ("tolist", "item"):
        method = getattr(obj, name, None)
        if callable(method):
            try:
                if hasattr(obj, "detach"):
                    obj = obj.detach().cpu()
                    method = getattr(obj, name)
                return method()
            except Exception:  # a foreign object's conversion failed: use its text
                break
    return str(obj)


def normalize_dict(data: Mapping[Any, Any], prefix: str = "", depth: int = 0
                   ) -> dict[str, Any]:
    """Validate a whole ``log()`` payload; nested dicts flatten to ``outer.inner`` keys.

    ``depth`` counts the levels above ``data``; past :data:`MAX_DEPTH` a ``TypeError``
    names the key.
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        if type(key) is not str:
            raise TypeError(
                f"log() keys must be str, got {type(key).__name__} key {key!r}"
            )
        full = prefix + key
        if type(value) in NUMERIC_TYPES:
            out[full] = value
        elif isinstance(value, Mapping):
            if depth + 1 >= MAX_DEPTH:
                raise too_deep_error(f"cannot log {full.split('.', 1)[0]!r}", full)
            out.update(normalize_dict(value, full + ".", depth + 1))
        else:
            out[full] = normalize_value(full, value)
    return out
