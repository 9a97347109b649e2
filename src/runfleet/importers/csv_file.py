"""Import a CSV file: a plain wide table (one row per step, one column per metric) as one
run, or a ``runfleet export`` (long or wide layout) as the runs it holds.

runfleet's own exports are recognised by their header (see
:mod:`runfleet.importers.layout`): each run comes back with its id, name, points (steps,
times and typed values), config and summary; the long layout also brings back its created
and finished times, status, group, tags and notes. ``--step-column``/``--time-column`` do
not apply to them. A run whose id the project already has is skipped, so importing an
export again (or into the project it came from) adds nothing twice.

A plain wide table:

* The step comes from ``step_column`` (default: a column named ``step`` when there is one,
  else the row number starting at 0). Steps must be integers.
* An optional ``time_column`` gives each row's wall-clock time (seconds since the epoch or
  ISO 8601); without one every point gets the import time.
* Each other column becomes a metric key. A column whose cells all parse as integers is
  stored as ints, one whose cells all parse as numbers as floats (``nan``, ``inf`` and
  ``-inf`` included), one of only ``true``/``false`` as bools, and any other as text.
* Empty cells are skipped: no point is stored (a NaN is stored only when the cell says so).

The run id is derived from the file's content and the run name, so importing the same file
under the same name twice skips it the second time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from runfleet.importers import (
    ImportArgumentError,
    ImportResult,
    ImportSourceError,
    RunData,
    SourceNotFoundError,
    layout,
    stable_id,
    write_run,
)
from runfleet.store.base import RunStatus, Store

DEFAULT_STEP_COLUMN = "step"
_INT_RE = re.compile(r"^[+-]?\d+$")


def import_csv(store: Store, path: str | os.PathLike[str], project: str,
               run_name: str | None = None, step_column: str | None = None,
               time_column: str | None = None) -> ImportResult:
    """Import the CSV file at ``path`` as one run of ``project``; see the module docstring.

    Raises :class:`~runfleet.importers.SourceNotFoundError` for a missing file,
    :class:`~runfleet.importers.ImportSourceError` for an unreadable one and
    :class:`~runfleet.importers.ImportArgumentError` when ``step_column`` or ``time_column``
    is not in the header.
    """
    file = Path(path).expanduser().resolve()
    header, rows, digest = _read(file)
    if layout.is_long(header) or layout.is_wide(header):
        if step_column is not None or time_column is not None:
            raise ImportArgumentError(f"{file} is a runfleet export, which holds its own "
                                      f"steps and times: --step-column and --time-column do "
                                      f"not apply")
        origin = {"format": "csv", "path": str(file), "sha1": digest}
        runs = (_long_runs if layout.is_long(header) else _wide_runs)(header, rows, origin)
        if run_name is not None:
            if len(runs) != 1:
                raise ImportArgumentError(f"--run-name names one run, but {file} holds "
                                          f"{len(runs)} runs")
            runs[0].name = run_name
        return _write_all(store, project, runs)
    name = run_name or file.stem
    steps = _steps(header, rows, step_column)
    times = _times(header, rows, time_column)
    skip = {c for c in (step_column or (DEFAULT_STEP_COLUMN if DEFAULT_STEP_COLUMN in header
                                        else None), time_column) if c}
    run = RunData(id=stable_id("csv", digest, name), name=name, metadata={"imported_from": {
        "format": "csv", "path": str(file), "sha1": digest, "step_column": step_column,
        "time_column": time_column}})
    for col, key in enumerate(header):
        if key in skip:
            continue
        cells = [(i, row[col]) for i, row in enumerate(rows) if row[col].strip()]
        for (i, _), value in zip(cells, _column_values([c for _, c in cells])):
            run.add(key, steps[i], times[i], value)
    result = ImportResult(project=project)
    if write_run(store, project, run):
        result.imported.append(f"{run.id} ({run.name})")
        result.points = run.point_count
    else:
        result.skipped.append(f"{run.id} ({run.name})")
    return result


def _write_all(store: Store, project: str, runs: list[RunData]) -> ImportResult:
    result = ImportResult(project=project)
    for run in runs:
        if write_run(store, project, run):
            result.imported.append(f"{run.id} ({run.name})")
            result.points += run.point_count
        else:
            result.skipped.append(f"{run.id} ({run.name})")
    return result


def _new_run(run_id: str, name: str, origin: dict[str, Any], lay: str) -> RunData:
    if not run_id:
        raise ImportSourceError("a row of the export has an empty run id")
    return RunData(id=run_id, name=name or run_id,
                   metadata={"imported_from": {**origin, "layout": lay}}, summary={})


def _json_cell(text: str, what: str, line: int) -> Any:
    try:
        return layout.parse_cell(text, "json")
    except ValueError as exc:
        raise ImportSourceError(f"data row {line}: {what} is not valid JSON: {exc}") from exc


_KEPT_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.STOPPED)


def _long_runs(header: list[str], rows: list[list[str]], origin: dict[str, Any]
               ) -> list[RunData]:
    """The runs of a long-layout export, in the order they appear."""
    col = {c: header.index(c) for c in layout.LONG_COLUMNS}
    runs: dict[str, RunData] = {}
    for line, row in enumerate(rows, start=1):
        run_id = row[col["run_id"]]
        run = runs.get(run_id)
        if run is None:
            run = runs[run_id] = _new_run(run_id, row[col["run_name"]], origin, "long")
        key, vtype, text = row[col["key"]], row[col["value_type"]], row[col["value"]]
        try:
            if vtype in layout.META_TYPES:
                _set_meta(run, vtype, key, layout.parse_cell(text, vtype))
                continue
            value = layout.parse_cell(text, vtype)
            step, when = int(row[col["step"]]), float(row[col["timestamp"]])
        except ValueError as exc:
            raise ImportSourceError(f"data row {line}: cannot read {vtype!r} value {text!r} "
                                    f"of key {key!r}: {exc}") from exc
        run.add(key, step, when, value)
    return list(runs.values())


def _set_meta(run: RunData, vtype: str, key: str, value: Any) -> None:
    if vtype == "config":
        run.config[key] = value
    elif vtype == "summary":
        assert run.summary is not None
        run.summary[key] = value
    elif key in ("created", "finished"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            setattr(run, key, float(value))
    elif key == "status":
        run.status = value if value in _KEPT_STATUSES else None
    elif key == "group":
        run.group = value if isinstance(value, str) else None
    elif key == "tags":
        run.tags = [str(t) for t in value] if isinstance(value, list) else None
    elif key == "notes":
        run.notes = value if isinstance(value, str) else None


def _wide_runs(header: list[str], rows: list[list[str]], origin: dict[str, Any]
               ) -> list[RunData]:
    """The runs of a wide-layout export: each column typed per run, as a plain table is."""
    col = {c: header.index(c) for c in layout.WIDE_COLUMNS if c in header}
    metrics = [(i, k) for i, k in enumerate(header) if k not in layout.WIDE_COLUMNS]
    grouped: dict[str, list[tuple[int, list[str]]]] = {}
    for line, row in enumerate(rows, start=1):
        grouped.setdefault(row[col["_run_id"]], []).append((line, row))
    runs = []
    for run_id, members in grouped.items():
        run = _new_run(run_id, members[0][1][col["_run_name"]], origin, "wide")
        run.summary = None  # an older export without _summary: the last values
        points: list[tuple[int, int, float]] = []  # (line, step, time) of rows with a step
        for line, row in members:
            for name, field in (("_config", "config"), ("_summary", "summary")):
                if name in col and row[col[name]].strip():
                    value = _json_cell(row[col[name]], name, line)
                    if not isinstance(value, dict):
                        raise ImportSourceError(f"data row {line}: {name} is not a JSON "
                                                f"object")
                    setattr(run, field, value)
            if not row[col["_step"]].strip():
                continue  # a run without points: its config and summary only
            try:
                points.append((line, int(row[col["_step"]]), float(row[col["_timestamp"]])))
            except ValueError as exc:
                raise ImportSourceError(f"data row {line}: step or timestamp of run "
                                        f"{run_id!r} is not a number: {exc}") from exc
        by_line = {line: row for line, row in members}
        for i, key in metrics:
            cells = [(step, when, by_line[line][i]) for line, step, when in points
                     if by_line[line][i].strip()]
            for (step, when, _), value in zip(cells, _column_values([c for *_, c in cells])):
                run.add(key, step, when, value)
        runs.append(run)
    return runs


def _read(file: Path) -> tuple[list[str], list[list[str]], str]:
    """Header, rows padded to the header's width, and the file's SHA-1."""
    if not file.is_file():
        raise SourceNotFoundError(f"no CSV file at {file}")
    try:
        raw = file.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise ImportSourceError(f"cannot read {file}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ImportSourceError(f"{file} is not UTF-8 text, so not a CSV file: {exc}") from exc
    if "\0" in text:
        raise ImportSourceError(f"{file} contains NUL bytes, so it is not a CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        parsed = [(reader.line_num, r) for r in reader if r]
    except csv.Error as exc:
        raise ImportSourceError(f"{file} is not valid CSV (line {reader.line_num}): {exc}") \
            from exc
    if not parsed:
        raise ImportSourceError(f"{file} is empty: a header row is needed")
    header = [h.strip() for h in parsed[0][1]]
    if any(not h for h in header):
        raise ImportSourceError(f"{file}: every column needs a name in the header row")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise ImportSourceError(f"{file}: duplicate column name(s) {dupes}")
    rows = []
    for line, row in parsed[1:]:
        if len(row) > len(header):
            raise ImportSourceError(f"{file}: line {line} has {len(row)} cells but the "
                                    f"header has {len(header)} columns")
        rows.append(row + [""] * (len(header) - len(row)))
    return header, rows, hashlib.sha1(raw).hexdigest()


def _column(header: list[str], name: str, option: str) -> int:
    if name not in header:
        raise ImportArgumentError(f"{option} {name!r} is not a column; columns: {header}")
    return header.index(name)


def _steps(header: list[str], rows: list[list[str]], step_column: str | None) -> list[int]:
    if step_column is None and DEFAULT_STEP_COLUMN not in header:
        return list(range(len(rows)))
    col = _column(header, step_column or DEFAULT_STEP_COLUMN, "step column")
    steps = []
    for i, row in enumerate(rows):
        text = row[col].strip()
        try:
            value = float(text)
            if not value.is_integer():
                raise ValueError(text)
            steps.append(int(text) if _INT_RE.match(text) else int(value))
        except (ValueError, OverflowError) as exc:
            raise ImportSourceError(f"data row {i + 1}: step {text!r} is not an integer") \
                from exc
    return steps


def _times(header: list[str], rows: list[list[str]], time_column: str | None) -> list[float]:
    if time_column is None:
        return [time.time()] * len(rows)
    col = _column(header, time_column, "time column")
    times = []
    for i, row in enumerate(rows):
        text = row[col].strip()
        try:
            times.append(float(text))
        except ValueError:
            try:
                times.append(datetime.fromisoformat(text).timestamp())
            except ValueError as exc:
                raise ImportSourceError(f"data row {i + 1}: time {text!r} is neither "
                                        f"seconds since the epoch nor ISO 8601") from exc
    return times


def _column_values(cells: list[str]) -> list[Any]:
    """Typed values of one column's non-empty cells (see the module docstring)."""
    stripped = [c.strip() for c in cells]
    if all(_INT_RE.match(c) for c in stripped):
        return [int(c) for c in stripped]
    try:
        return [float(c) for c in stripped]
    except ValueError:
        pass
    lowered = [c.lower() for c in stripped]
    if all(c in ("true", "false") for c in lowered):
        return [c == "true" for c in lowered]
    return list(cells)
