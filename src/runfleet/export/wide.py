"""The wide export layout: one row per (run, step), one column per key, in CSV, JSON Lines
or Parquet."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from runfleet.export.values import (
    INT64_MAX,
    INT64_MIN,
    ExportError,
    format_cell,
    has_cr,
    json_safe,
    keys_of,
    py_values,
    run_texts,
    value_type,
)
from runfleet.importers import layout
from runfleet.importers.layout import WIDE_COLUMNS
from runfleet.tracking.text import escape_surrogates

if TYPE_CHECKING:

    from runfleet.api import ApiRun


# -- wide layout -----------------------------------------------------------------------------
_MISSING = object()


@dataclass
class _WideBlock:
    """One run's rows in the wide layout: steps, timestamps, and cells per key."""

    run: ApiRun
    steps: list[int]
    times: list[float]
    columns: dict[str, list[Any]]  # key -> value per row, _MISSING where absent
    types: dict[str, set[str]]  # key -> value types present


def _occurrence(steps: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    n = len(steps)
    if n == 0:
        return np.empty(0, np.int64)
    starts = np.r_[0, np.flatnonzero(steps[1:] != steps[:-1]) + 1]
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))


def _wide_block(run: ApiRun, keys: list[str]) -> _WideBlock:
    series = [run.series(k) for k in keys]
    series = [s for s in series if len(s.steps)]
    if not series:
        return _WideBlock(run, [], [], {}, {})
    pairs = np.concatenate([np.column_stack([s.steps, _occurrence(s.steps)]) for s in series])
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    times = np.full(len(uniq), -np.inf)
    np.maximum.at(times, inverse, np.concatenate([s.times for s in series]))
    columns: dict[str, list[Any]] = {}
    types: dict[str, set[str]] = {}
    offset = 0
    for s in series:
        rows = inverse[offset:offset + len(s.steps)].tolist()
        offset += len(s.steps)
        values, vtypes = py_values(s.values)
        cells: list[Any] = [_MISSING] * len(uniq)
        for r, v in zip(rows, values):
            cells[r] = v
        columns[s.key] = cells
        types[s.key] = set(vtypes)
        if "int" in types[s.key] and any(t == "int" and not INT64_MIN <= v <= INT64_MAX
                                         for v, t in zip(values, vtypes)):
            types[s.key].add("bigint")  # no Arrow integer type holds it: use text
    return _WideBlock(run, uniq[:, 0].tolist(), times.tolist(), columns, types)


def wide_blocks(selected: list[ApiRun], keys: Sequence[str] | None,
                 stream: str) -> tuple[list[str], Iterator[_WideBlock]]:
    """The wide block of each run, its keys chosen as for the long layout."""
    per_run = [(run, keys_of(run, keys, stream)) for run in selected]
    names = list(keys) if keys is not None else sorted({k for _, ks in per_run for k in ks})
    clash = set(names) & set(WIDE_COLUMNS)
    if clash:
        raise ExportError(f"metric key(s) {sorted(clash)} clash with the wide layout's own "
                         f"columns; export the long layout instead")
    present = set().union(*(ks for _, ks in per_run)) if per_run else set()
    names = [k for k in names if k in present]
    return names, (_wide_block(run, ks) for run, ks in per_run)


def write_wide_csv(names: list[str], blocks: Iterator[_WideBlock], fh: IO[str]) -> int:
    """Write the blocks as CSV rows under ``names``; return the rows written."""
    plain = csv.writer(fh, lineterminator="\n")
    quoted = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_ALL)
    header = [*WIDE_COLUMNS, *map(escape_surrogates, names)]
    (quoted if has_cr(header) else plain).writerow(header)
    rows = 0
    for b in blocks:
        n = len(b.steps)
        project, run_id, run_name = run_texts(b.run)
        config, summary = _wide_meta(b.run)
        writer = quoted if has_cr([project, run_id, run_name]) or any(
            has_cr(cells) for cells in b.columns.values()) else plain
        if not n:  # a run without points still has its config and summary
            writer.writerow([project, run_id, run_name, "", "", config, summary,
                             *([""] * len(names))])
            rows += 1
            continue
        cols: list[Any] = [[project] * n, [run_id] * n, [run_name] * n, b.steps,
                           map(repr, b.times), [config] + [""] * (n - 1),
                           [summary] + [""] * (n - 1)]
        for key in names:
            cells = b.columns.get(key)
            cols.append([""] * n if cells is None else
                         ["" if v is _MISSING else format_cell(v, value_type(v))
                          for v in cells])
        writer.writerows(zip(*cols))
        rows += n
    return rows


def _wide_meta(run: ApiRun) -> tuple[str, str]:
    """A run's config and summary as JSON text (the wide layout's ``_config``, ``_summary``)."""
    return layout.json_text(run.config), layout.json_text(run.summary)


def write_wide_jsonl(names: list[str], blocks: Iterator[_WideBlock], fh: IO[str]) -> int:
    """Write the blocks as JSON Lines; return the rows written."""
    rows = 0
    for b in blocks:
        present = [k for k in names if k in b.columns]
        config, summary = _wide_meta(b.run)
        if not b.steps:
            fh.write(json.dumps({"_project": b.run.project, "_run_id": b.run.id,
                                 "_run_name": b.run.name, "_step": None, "_timestamp": None,
                                 "_config": config, "_summary": summary}) + "\n")
            rows += 1
            continue
        for i, (step, t) in enumerate(zip(b.steps, b.times)):
            obj: dict[str, Any] = {"_project": b.run.project, "_run_id": b.run.id,
                                   "_run_name": b.run.name, "_step": step, "_timestamp": t}
            if i == 0:
                obj.update(_config=config, _summary=summary)
            for k in present:
                v = b.columns[k][i]
                if v is not _MISSING:
                    obj[k] = json_safe(v)
            fh.write(json.dumps(obj, allow_nan=False) + "\n")
            rows += 1
    return rows


def _arrow_type(types: set[str]) -> Any:
    import pyarrow as pa

    types = types - {"null"}
    if "bigint" in types:
        return pa.string()
    if not types or (types <= {"float", "int"} and "float" in types):
        return pa.float64()
    if types == {"int"}:
        return pa.int64()
    if types == {"bool"}:
        return pa.bool_()
    return pa.string()


def _arrow_cells(cells: list[Any], arrow_type: Any) -> list[Any]:
    import pyarrow as pa

    def convert(v: Any) -> Any:
        if v is _MISSING or v is None:
            return None
        if arrow_type == pa.float64():
            return float(v)
        if arrow_type == pa.int64():
            return v if INT64_MIN <= v <= INT64_MAX else None
        if arrow_type == pa.string():
            return escape_surrogates(v) if isinstance(v, str) else format_cell(v, value_type(v))
        return v

    return [convert(v) for v in cells]


def write_wide_parquet(names: list[str], blocks: Iterator[_WideBlock],
                        path: str | os.PathLike[str]) -> int:
    """Write the blocks as one Parquet table; return the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    materialized = list(blocks)
    types: dict[str, set[str]] = {k: set() for k in names}
    for b in materialized:
        for k, ts in b.types.items():
            types.setdefault(k, set()).update(ts)
    fields = [pa.field("_project", pa.string()), pa.field("_run_id", pa.string()),
              pa.field("_run_name", pa.string()), pa.field("_step", pa.int64()),
              pa.field("_timestamp", pa.float64()), pa.field("_config", pa.string()),
              pa.field("_summary", pa.string())]
    fields += [pa.field(escape_surrogates(k), _arrow_type(types[k])) for k in names]
    schema = pa.schema(fields)
    rows = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for b in materialized:
            n = len(b.steps)
            project, run_id, run_name = run_texts(b.run)
            config, summary = _wide_meta(b.run)
            steps: list[int | None] = list(b.steps) if n else [None]
            times: list[float | None] = list(b.times) if n else [None]
            n = max(n, 1)  # a run without points: one row with its config and summary
            arrays = [pa.array([project] * n, pa.string()),
                      pa.array([run_id] * n, pa.string()),
                      pa.array([run_name] * n, pa.string()),
                      pa.array(steps, pa.int64()), pa.array(times, pa.float64()),
                      pa.array([config] + [None] * (n - 1), pa.string()),
                      pa.array([summary] + [None] * (n - 1), pa.string())]
            for name, f in zip(names, fields[len(WIDE_COLUMNS):]):
                cells = b.columns.get(name, [_MISSING] * n)
                arrays.append(pa.array(_arrow_cells(cells, f.type), f.type))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            rows += n
    return rows


