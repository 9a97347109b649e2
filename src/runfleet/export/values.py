"""What both export layouts share: the formats, the export error, how a value is typed,
written and read back, and which runs and keys an export takes."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from runfleet.errors import RunfleetError, RunNotFoundError
from runfleet.importers import layout
from runfleet.tracking.text import escape_surrogates

if TYPE_CHECKING:

    from runfleet.api import Api, ApiRun


FORMATS = ("csv", "jsonl", "parquet", "trec")
STREAMS = ("default", "system", "all")
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
             ".parquet": "parquet", ".pq": "parquet", ".trec": "trec"}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Target = str | os.PathLike[str] | IO[str] | None


class ExportError(RunfleetError, ValueError):
    """An export request that cannot be carried out as asked (bad format or destination,
    a metric key clashing with a wide-layout column)."""


# -- values ---------------------------------------------------------------------------------
def value_type(value: Any) -> str:
    """The ``value_type`` name of one stored value (see the module docstring)."""
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
    (recursively), so that strict JSON can hold it."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def format_cell(value: Any, vtype: str) -> str:
    """The CSV text of a value of type ``vtype`` (:func:`runfleet.importers.layout.
    format_cell`, a stored lone surrogate escaped); :func:`parse_cell` reads it back."""
    return layout.format_cell(escape_surrogates(str(value)) if vtype == "str" else value, vtype)


def parse_cell(text: str, vtype: str) -> Any:
    """Inverse of :func:`format_cell`.

    Example:
        >>> parse_cell("0.1", "float") == 0.1, parse_cell("true", "bool")
        (True, True)
    """
    return layout.parse_cell(text, vtype)


def py_values(values: Any) -> tuple[list[Any], list[str]]:
    """Python values of a series and their type names (fast for single-dtype arrays)."""
    arr = np.asarray(values)
    out = arr.tolist()
    kind = arr.dtype.kind
    if kind == "f":
        return out, ["float"] * len(out)
    if kind in "iu":
        return out, ["int"] * len(out)
    if kind == "b":
        return out, ["bool"] * len(out)
    return out, [value_type(v) for v in out]


# -- run selection ---------------------------------------------------------------------------
def select_runs(api: Api, project: str, runs: Sequence[str] | None = None) -> list[ApiRun]:
    """The runs of ``project`` to export: all of them (deleted runs excluded), or those whose
    id or name is in ``runs`` (in that order). Raises ``ValueError`` for an unknown project
    and :class:`~runfleet.errors.RunNotFoundError` for an unknown run."""
    everything = api.runs(project, include_deleted=bool(runs))
    if not runs:
        return everything
    chosen: list[ApiRun] = []
    for ref in runs:
        match = [r for r in everything if r.id == ref] or [r for r in everything
                                                          if r.name == ref]
        if not match:
            raise RunNotFoundError(f"no run with id or name {ref!r} in project {project!r}")
        chosen.extend(r for r in match if r not in chosen)
    return chosen


def keys_of(run: ApiRun, keys: Sequence[str] | None, stream: str) -> list[str]:
    """The keys to export of ``run``: those of ``keys`` it has, else those of ``stream``."""
    if keys is not None:
        present = set(run.keys("all"))
        return [k for k in keys if k in present]
    return run.keys(stream)


def infer_format(path: Target, fmt: str | None) -> str:
    """``fmt`` if given, else the format named by the file suffix, else ``csv``."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    if isinstance(path, (str, os.PathLike)) and str(path) != "-":
        return _SUFFIXES.get(Path(path).suffix.lower(), "csv")
    return "csv"


def run_texts(run: ApiRun) -> tuple[str, str, str]:
    """A run's project, id and name, each safe to encode as UTF-8."""
    return (escape_surrogates(run.project), escape_surrogates(run.id),
            escape_surrogates(run.name))




def has_cr(texts: Any) -> bool:
    """Whether any text holds a carriage return, which the ``\n``-terminated CSV writer
    would leave unquoted and a reader would take for the end of a row."""
    return any("\r" in t for t in texts if isinstance(t, str))


