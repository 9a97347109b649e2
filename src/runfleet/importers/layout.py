"""The layouts of runfleet's own export files, shared by :mod:`runfleet.export` (which
writes them) and :mod:`runfleet.importers.csv_file` (which reads them back).

* **long**: columns :data:`LONG_COLUMNS`, one row per logged point (``value_type`` one of
  :data:`VALUE_TYPES`), plus *run rows* (``value_type`` one of :data:`META_TYPES`, empty
  ``step``) carrying what is not a point: one row per top-level config key (``config``),
  per summary key (``summary``) and per run field (``run``: ``created``, ``finished``,
  ``status``, ``group``, ``tags``, ``notes``), the value as JSON text.
* **wide**: columns :data:`WIDE_COLUMNS` then one per metric key; ``_config`` and
  ``_summary`` hold the run's config and summary as JSON text on the run's first row.
"""

from __future__ import annotations

import json
from typing import Any

LONG_COLUMNS = ("project", "run_id", "run_name", "key", "step", "timestamp", "value",
                "value_type")
WIDE_COLUMNS = ("_project", "_run_id", "_run_name", "_step", "_timestamp", "_config",
                "_summary")
VALUE_TYPES = ("float", "int", "bool", "str", "null", "json")
META_TYPES = ("config", "summary", "run")
RUN_FIELDS = ("created", "finished", "status", "group", "tags", "notes")


def is_long(header: list[str]) -> bool:
    """Whether a CSV header is that of a long-layout export."""
    return set(LONG_COLUMNS) <= set(header)


def is_wide(header: list[str]) -> bool:
    """Whether a CSV header is that of a wide-layout export (the older one without
    ``_config`` and ``_summary`` included)."""
    return {"_run_id", "_run_name", "_step", "_timestamp"} <= set(header)


def json_text(value: Any) -> str:
    """Compact JSON text of ``value`` (NaN and infinities as JSON5-style ``NaN``,
    ``Infinity``, which Python's ``json`` reads back)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=True)


def format_cell(value: Any, vtype: str) -> str:
    """The CSV text of a value of type ``vtype``; :func:`parse_cell` reads it back exactly."""
    if vtype == "float":
        return repr(float(value))
    if vtype == "int":
        return str(int(value))
    if vtype == "bool":
        return "true" if value else "false"
    if vtype == "str":
        return str(value)
    if vtype == "null":
        return ""
    return json_text(value)


def parse_cell(text: str, vtype: str) -> Any:
    """Inverse of :func:`format_cell` (``json`` and the :data:`META_TYPES` are JSON text).

    Example:
        >>> parse_cell("0.1", "float") == 0.1, parse_cell("true", "bool")
        (True, True)
    """
    if vtype == "float":
        return float(text)
    if vtype == "int":
        return int(text)
    if vtype == "bool":
        return text.strip().lower() == "true"
    if vtype == "str":
        return text
    if vtype == "null":
        return None
    if vtype == "json" or vtype in META_TYPES:
        return json.loads(text)
    raise ValueError(f"unknown value_type {vtype!r}; expected one of "
                     f"{VALUE_TYPES + META_TYPES}")
