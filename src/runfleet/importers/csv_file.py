"""Import a wide CSV file (one row per step, one column per metric) as one run.

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
    stable_id,
    write_run,
)
from runfleet.store.base import Store

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
