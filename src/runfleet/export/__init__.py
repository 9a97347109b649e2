"""Export run histories to CSV, JSON Lines or Parquet.

Two layouts:

* **long** (the default, lossless): one row per logged point with the columns
  ``project, run_id, run_name, key, step, timestamp, value, value_type``. ``value_type`` is
  one of ``float int bool str null json`` and says how to read ``value`` back. Each run
  also gets *run rows* (unless ``keys`` picks metric keys), with an empty ``step``: its
  config (``value_type`` ``config``, one row per top-level key), summary (``summary``) and
  fields (``run``: created, finished, status, group, tags, notes), the value as JSON text;
  :func:`read_long` leaves them out unless asked (``meta=True``). With them, ``runfleet
  import csv`` of the export gives back the same runs.
* **wide** (``wide=True``): one row per (run, step) with the columns ``_project, _run_id,
  _run_name, _step, _timestamp`` (named like :meth:`runfleet.ApiRun.history`), ``_config``
  and ``_summary`` (the run's config and summary as JSON text, on its first row only; a run
  without points gets that one row, with an empty ``_step``) and one column per metric key;
  a cell is empty when the key has no point at that step. A step logged twice gives two
  rows. Wide output is for spreadsheets; it keeps float values exactly but not the type of
  keys that mix value types, nor each point's own time (a row has one ``_timestamp``).

How values are written:

* ``timestamp`` is wall-clock seconds since the epoch (float, microsecond resolution).
* CSV: floats use Python's shortest round-trip ``repr`` (``0.1``, ``1e+308``), so they read
  back bit for bit (``float(text)``; ``pandas.read_csv`` of pandas 3 reads them exactly too);
  NaN and infinities are written ``nan``, ``inf`` and ``-inf``; bools ``true``/``false``;
  ``null`` values and missing wide cells are empty; ``json`` values are JSON text.
* JSON Lines: standard JSON, so non-finite floats are the strings ``"NaN"``, ``"Infinity"``
  and ``"-Infinity"`` (``value_type`` tells them apart from logged text).
* Parquet (long): ``step`` int64, ``timestamp`` float64, ``value`` float64 (the exact value
  of ``float`` rows; ``int`` and ``bool`` rows as numbers, for analysis), ``value_int`` int64
  (exact ``int`` rows), ``value_text`` (``str`` rows, ``json`` rows as JSON text, and ints
  beyond 64 bits; read with pyarrow, or ``pandas.read_parquet(path,
  dtype_backend="numpy_nullable")``, since plain pandas turns a nullable int64 column into
  float64). Parquet (wide): one typed, nullable column per key; null marks a missing
  cell, so it never collides with a logged NaN.
* Text holding a lone surrogate (``"\\ud800"``, which UTF-8 cannot encode; ``log()``
  refuses it, but an older version or an import may have stored it) never stops an export:
  CSV and Parquet write each such code point as the escape ``\\ud800`` (backslash, six
  characters), JSON Lines as the JSON escape ``"\\ud800"``.

Example:
    >>> import runfleet
    >>> from runfleet.export import export_project
    >>> with runfleet.Api(dir="/tmp/rf-doc") as api:                 # doctest: +SKIP
    ...     export_project(api, "my-exp", fmt="parquet", path="my-exp.parquet")
"""

from __future__ import annotations

__all__ = ["FORMATS", "LONG_COLUMNS", "META_TYPES", "STREAMS", "VALUE_TYPES", "WIDE_COLUMNS",
           "ExportError", "export_project", "export_runs", "format_cell", "infer_format",
           "json_safe", "parse_cell", "read_long", "select_runs", "value_type",
           "write_trec_run"]

import csv
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from runfleet.export.values import (
    FORMATS,
    INT64_MAX,
    INT64_MIN,
    STREAMS,
    ExportError,
    Target,
    format_cell,
    has_cr,
    infer_format,
    json_safe,
    keys_of,
    parse_cell,
    py_values,
    run_texts,
    select_runs,
    value_type,
)
from runfleet.export.wide import (
    wide_blocks,
    write_wide_csv,
    write_wide_jsonl,
    write_wide_parquet,
)
from runfleet.importers import layout
from runfleet.importers.layout import LONG_COLUMNS, META_TYPES, VALUE_TYPES, WIDE_COLUMNS
from runfleet.tracking.text import escape_surrogates

if TYPE_CHECKING:
    import pandas as pd

    from runfleet.api import Api, ApiRun


# -- long layout -----------------------------------------------------------------------------
@dataclass
class _LongPart:
    """The points of one (run, key) series, as Python lists."""

    run: ApiRun
    key: str
    steps: list[int]
    times: list[float]
    values: list[Any]
    types: list[str]


@dataclass
class _MetaPart:
    """The run rows of one run (long layout): (value_type, key, JSON text) each."""

    run: ApiRun
    rows: list[tuple[str, str, str]]


def _meta_rows(run: ApiRun) -> list[tuple[str, str, str]]:
    fields = {"created": run.created_at, "finished": run.finished_at,
              "status": str(run.status), "group": run.group, "tags": run.tags,
              "notes": run.notes}
    return ([("config", k, layout.json_text(v)) for k, v in run.config.items()]
            + [("summary", k, layout.json_text(v)) for k, v in run.summary.items()]
            + [("run", k, layout.json_text(v)) for k, v in fields.items()])


def _long_parts(selected: list[ApiRun], keys: Sequence[str] | None,
                stream: str, meta: bool) -> Iterator[_LongPart | _MetaPart]:
    for run in selected:
        if meta and keys is None:
            yield _MetaPart(run, _meta_rows(run))
        for key in keys_of(run, keys, stream):
            s = run.series(key)
            values, types = py_values(s.values)
            yield _LongPart(run, key, s.steps.tolist(), s.times.tolist(), values, types)


def _write_long_csv(parts: Iterator[_LongPart | _MetaPart], fh: IO[str]) -> int:
    plain = csv.writer(fh, lineterminator="\n")
    quoted = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_ALL)
    plain.writerow(LONG_COLUMNS)
    rows = 0
    for p in parts:
        ident = run_texts(p.run)
        if isinstance(p, _MetaPart):
            project, run_id, run_name = ident
            created = repr(p.run.created_at)
            writer = quoted if has_cr([*ident, *(k for _, k, _ in p.rows)]) else plain
            writer.writerows((project, run_id, run_name, escape_surrogates(key), "", created,
                              text, vtype) for vtype, key, text in p.rows)
            rows += len(p.rows)
            continue
        cells = [format_cell(v, t) for v, t in zip(p.values, p.types)]
        project, run_id, run_name = ident
        texts = [c for c, t in zip(cells, p.types) if t == "str"]
        writer = quoted if has_cr([*ident, p.key, *texts]) else plain
        writer.writerows(zip([project] * len(cells), [run_id] * len(cells),
                             [run_name] * len(cells), [escape_surrogates(p.key)] * len(cells),
                             p.steps, map(repr, p.times), cells, p.types))
        rows += len(cells)
    return rows


def _json_value(value: Any, vtype: str) -> str:
    """Strict JSON text of one value (a fast path for finite floats)."""
    if vtype == "float" and math.isfinite(value):
        return repr(float(value))
    return json.dumps(json_safe(value), allow_nan=False)


def _write_long_jsonl(parts: Iterator[_LongPart | _MetaPart], fh: IO[str]) -> int:
    rows = 0
    for p in parts:
        if isinstance(p, _MetaPart):
            for vtype, key, text in p.rows:
                fh.write(json.dumps({"project": p.run.project, "run_id": p.run.id,
                                     "run_name": p.run.name, "key": key, "step": None,
                                     "timestamp": p.run.created_at, "value": text,
                                     "value_type": vtype}) + "\n")
            rows += len(p.rows)
            continue
        head = json.dumps({"project": p.run.project, "run_id": p.run.id,
                           "run_name": p.run.name, "key": p.key})[:-1]
        lines = [f'{head}, "step": {s}, "timestamp": {t!r}, "value": {_json_value(v, vt)}, '
                 f'"value_type": "{vt}"}}'
                 for s, t, v, vt in zip(p.steps, p.times, p.values, p.types)]
        if lines:
            fh.write("\n".join(lines) + "\n")
        rows += len(lines)
    return rows


def _long_schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("project", pa.string()), ("run_id", pa.string()), ("run_name", pa.string()),
        ("key", pa.string()), ("step", pa.int64()), ("timestamp", pa.float64()),
        ("value", pa.float64()), ("value_type", pa.string()), ("value_int", pa.int64()),
        ("value_text", pa.string()),
    ])


def _long_table(p: _LongPart) -> Any:
    import pyarrow as pa

    n = len(p.values)
    value: list[float | None] = [None] * n
    value_int: list[int | None] = [None] * n
    value_text: list[str | None] = [None] * n
    for i, (v, t) in enumerate(zip(p.values, p.types)):
        if t in ("float", "bool"):
            value[i] = float(v)
        elif t == "int":
            value[i] = float(v)
            if INT64_MIN <= v <= INT64_MAX:
                value_int[i] = v
            else:
                value_text[i] = str(v)
        elif t == "str":
            value_text[i] = escape_surrogates(v)
        elif t == "json":
            value_text[i] = format_cell(v, "json")
    project, run_id, run_name = run_texts(p.run)
    columns = [[project] * n, [run_id] * n, [run_name] * n, [escape_surrogates(p.key)] * n,
               p.steps, p.times, value, p.types, value_int, value_text]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in
                                 zip(columns, _long_schema())], schema=_long_schema())


def _meta_table(p: _MetaPart) -> Any:
    import pyarrow as pa

    n = len(p.rows)
    project, run_id, run_name = run_texts(p.run)
    columns = [[project] * n, [run_id] * n, [run_name] * n,
               [escape_surrogates(k) for _, k, _ in p.rows], [None] * n,
               [p.run.created_at] * n, [None] * n, [t for t, _, _ in p.rows], [None] * n,
               [text for _, _, text in p.rows]]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in
                                 zip(columns, _long_schema())], schema=_long_schema())


def _write_long_parquet(parts: Iterator[_LongPart | _MetaPart],
                        path: str | os.PathLike[str]) -> int:
    import pyarrow.parquet as pq

    rows = 0
    with pq.ParquetWriter(str(path), _long_schema()) as writer:
        for p in parts:
            if isinstance(p, _MetaPart):
                if p.rows:
                    writer.write_table(_meta_table(p))
                    rows += len(p.rows)
            elif p.values:
                writer.write_table(_long_table(p))
                rows += len(p.values)
    return rows



# -- entry point -----------------------------------------------------------------------------
@contextmanager
def _text_output(path: Target) -> Iterator[IO[str]]:
    if path is None or (isinstance(path, str) and path == "-"):
        yield sys.stdout
    elif isinstance(path, (str, os.PathLike)):
        # Cells are escaped already; ``errors`` keeps anything missed from failing the export.
        with open(path, "w", encoding="utf-8", errors="backslashreplace", newline="") as fh:
            yield fh
    else:
        yield path


def export_runs(selected: list[ApiRun], fmt: str | None = None, path: Target = None,
                wide: bool = False, keys: Sequence[str] | None = None,
                stream: str | None = None, meta: bool = True) -> int:
    """Write the history of ``selected`` runs; return the number of rows written.

    ``fmt`` is ``csv``, ``jsonl``, ``parquet`` or ``trec`` (default: from the suffix of
    ``path``, else ``csv``); ``trec`` writes the document rankings of eval runs as a
    standard TREC run file (:func:`write_trec_run`). ``path`` is a file path, an open text
    file, or ``None``/``"-"`` for standard output (all formats but Parquet). ``keys``
    limits the export to those metric keys; ``stream`` picks ``default`` (training
    metrics), ``system`` or ``all`` keys (default: ``all`` for the long layout,
    ``default`` for the wide one, since system metrics count their own steps). ``meta``
    False leaves out the long layout's run rows (points only).
    """
    fmt = infer_format(path, fmt)
    if fmt == "trec":
        with _text_output(path) as fh:
            return write_trec_run(selected, fh)
    stream = stream or ("default" if wide else "all")
    if stream not in STREAMS:
        raise ExportError(f"stream must be one of {STREAMS}, got {stream!r}")
    if fmt == "parquet" and (not isinstance(path, (str, os.PathLike)) or path == "-"):
        raise ExportError("parquet export needs a file path (it cannot go to stdout)")
    if wide:
        names, blocks = wide_blocks(selected, keys, stream)
        if fmt == "parquet":
            assert isinstance(path, (str, os.PathLike))
            return write_wide_parquet(names, blocks, path)
        with _text_output(path) as fh:
            if fmt == "csv":
                return write_wide_csv(names, blocks, fh)
            return write_wide_jsonl(names, blocks, fh)
    parts = _long_parts(selected, keys, stream, meta)
    if fmt == "parquet":
        assert isinstance(path, (str, os.PathLike))
        return _write_long_parquet(parts, path)
    with _text_output(path) as fh:
        if fmt == "csv":
            return _write_long_csv(parts, fh)
        return _write_long_jsonl(parts, fh)


def write_trec_run(selected: list[ApiRun], fh: IO[str]) -> int:
    """Write the document rankings of eval runs (``Experiment.run_evals``) as a TREC run
    file, ``query_id Q0 doc_id rank score tag`` per line, the tag being the run's name
    (spaces replaced): what ``trec_eval``, ``pytrec_eval`` and ``ranx`` read. Returns the
    number of lines; a selection without eval rankings is an :class:`ExportError`."""
    from runfleet.rag.logged import RANKINGS

    lines = 0
    for run in selected:
        tables = sorted(run.media(RANKINGS), key=lambda m: m["step"])
        tag = re.sub(r"\s+", "_", escape_surrogates(run.name)) or run.id
        seen: set[tuple[str, int]] = set()
        for item in tables:
            frame = item["value"]
            if frame is None:
                continue
            for qid, doc, rank, score in frame[["query_id", "doc_id", "rank",
                                                "score"]].itertuples(index=False):
                if (str(qid), int(rank)) in seen:  # a shard replayed after a retry
                    continue
                seen.add((str(qid), int(rank)))
                fh.write(f"{qid} Q0 {doc} {int(rank)} {float(score)!r} {tag}\n")
                lines += 1
    if not lines:
        raise ExportError("no document rankings to write: the trec format is for the runs "
                          "of an eval experiment (Experiment.run_evals)")
    return lines


def export_project(api: Api, project: str, runs: Sequence[str] | None = None,
                   fmt: str | None = None, path: Target = None, wide: bool = False,
                   keys: Sequence[str] | None = None, stream: str | None = None) -> int:
    """Export the history of ``project`` (or of the runs named by id or name in ``runs``).

    See :func:`export_runs` for the arguments and the module docstring for the layouts.
    Returns the number of rows written.
    """
    return export_runs(select_runs(api, project, runs), fmt=fmt, path=path, wide=wide,
                       keys=keys, stream=stream)


# -- reading back ----------------------------------------------------------------------------
def read_long(path: str | os.PathLike[str] | IO[str], fmt: str | None = None,
              meta: bool = False) -> pd.DataFrame:
    """Read a long-layout export back, with ``value`` holding the exact Python values.

    Returns a DataFrame with the columns of :data:`LONG_COLUMNS`: the points only, or with
    ``meta`` the run rows too (``value_type`` in :data:`META_TYPES`, ``step`` missing, the
    value decoded from its JSON text).
    """
    import pandas as pd

    fmt = infer_format(path if not isinstance(path, io.IOBase) else None, fmt)
    records: list[dict[str, Any]] = []
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for r in pq.read_table(path).to_pylist():
            if r["value_type"] in META_TYPES:
                if meta:
                    records.append({c: r[c] for c in LONG_COLUMNS})
                    records[-1]["value"] = parse_cell(r["value_text"], r["value_type"])
                continue
            records.append({c: r[c] for c in LONG_COLUMNS})
            records[-1]["value"] = _from_parquet_row(r)
    else:
        with _text_input(path) as fh:
            if fmt == "csv":
                for row in csv.DictReader(fh):
                    rec: dict[str, Any] = dict(row)
                    if row["value_type"] in META_TYPES:
                        if meta:
                            rec.update(step=None, timestamp=float(row["timestamp"]),
                                       value=parse_cell(row["value"], row["value_type"]))
                            records.append(rec)
                        continue
                    rec["step"] = int(row["step"])
                    rec["timestamp"] = float(row["timestamp"])
                    rec["value"] = parse_cell(row["value"], row["value_type"])
                    records.append(rec)
            else:
                for line in fh:
                    if line.strip():
                        r = json.loads(line)
                        if r["value_type"] in META_TYPES:
                            if meta:
                                r["value"] = parse_cell(r["value"], r["value_type"])
                                records.append(r)
                            continue
                        r["value"] = _from_json(r["value"], r["value_type"])
                        records.append(r)
    frame = pd.DataFrame.from_records(records, columns=list(LONG_COLUMNS))
    return frame.astype({"step": "Int64" if meta else "int64", "timestamp": "float64"})


@contextmanager
def _text_input(path: str | os.PathLike[str] | IO[str]) -> Iterator[IO[str]]:
    if isinstance(path, (str, os.PathLike)):
        with open(path, encoding="utf-8", newline="") as fh:
            yield fh
    else:
        yield path


def _from_json(value: Any, vtype: str) -> Any:
    if vtype == "float" and isinstance(value, str):
        return float({"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[value])
    if vtype == "float":
        return float(value)
    return value


def _from_parquet_row(r: dict[str, Any]) -> Any:
    vtype = r["value_type"]
    if vtype == "int":
        return r["value_int"] if r["value_int"] is not None else int(r["value_text"])
    if vtype == "bool":
        return bool(r["value"])
    if vtype in ("str", "json"):
        return parse_cell(r["value_text"], vtype)
    if vtype == "null":
        return None
    return r["value"]
