"""Import trackio projects into a runfleet store: one project database, or a whole home.

trackio keeps one SQLite file per project, ``<project>.db``, in its home folder
(``$TRACKIO_DIR``, else ``$HF_HOME/trackio`` with ``HF_HOME`` defaulting to
``~/.cache/huggingface``); see :func:`default_trackio_dir`. :func:`import_trackio` imports
one database, :func:`import_trackio_home` every project database of a home, each into the
runfleet project of the same name. The other things trackio keeps there (``media/``,
``artifacts/``, ``.lock`` files, ``-wal``/``-shm`` sidecars, parquet exports, registry
databases ``registry-*.db``) are not projects and are skipped.

The tables read here (with plain ``sqlite3``, read-only; trackio itself is not needed):

* ``metrics``: one row per ``log()`` call: run id and name, ISO timestamp, step, and a JSON
  object of values; NaN and infinities are stored as the strings ``"NaN"``, ``"Infinity"``,
  ``"-Infinity"`` and are read back as floats, exactly as trackio reads them.
* ``configs``: one row per run: the run's config as JSON, plus trackio's own ``_Username``,
  ``_Created`` and ``_Group`` entries (the group becomes the run's group; the other two go to
  the run's metadata under ``imported_from``).
* ``system_metrics``: timestamped samples without a step; imported under ``system/<key>``
  with the sample index as step, like runfleet's own system metrics.
* ``alerts``: become runfleet alerts.

Databases written before trackio 0.24 have no ``run_id`` column; their runs are identified
by name. Media values (image, table, histogram dicts) are kept as JSON values; media files
and traces are not copied (a note says how many traces were left out).

Run ids are derived from the trackio run id (or, for old databases, from the database path
and run name), so importing the same database again skips the runs it already holds.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from runfleet.importers import (
    SYSTEM_PREFIX,
    ImportResult,
    ImportSourceError,
    RunData,
    SourceNotFoundError,
    stable_id,
    write_run,
)
from runfleet.store.base import RunStatus, Store

TRACKIO_DIR_ENV = "TRACKIO_DIR"
DB_SUFFIX = ".db"
REGISTRY_PREFIX = "registry-"  # trackio reserves it for its model registries
_SQLITE_MAGIC = b"SQLite format 3\x00"
_NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_TRACKIO_CONFIG_KEYS = {"_Username": "username", "_Created": "created", "_Group": "group"}


def default_trackio_dir() -> Path:
    """The folder trackio logs to: ``$TRACKIO_DIR``, else ``$HF_HOME/trackio``, with
    ``HF_HOME`` defaulting to ``$XDG_CACHE_HOME/huggingface`` (``~/.cache/huggingface``),
    the same rule trackio and ``huggingface_hub`` follow."""
    trackio_dir = os.environ.get(TRACKIO_DIR_ENV)
    if trackio_dir:
        return Path(trackio_dir).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    hf_home = os.environ.get("HF_HOME", os.path.join(cache, "huggingface"))
    return Path(os.path.expandvars(os.path.expanduser(hf_home))) / "trackio"


def project_databases(home: str | os.PathLike[str]) -> list[Path]:
    """The project databases of the trackio home ``home``, sorted by name: every
    ``<project>.db`` file directly in it, except trackio's registries (``registry-*.db``)."""
    root = Path(home)
    return sorted(p for p in root.iterdir()
                  if p.suffix == DB_SUFFIX and p.is_file()
                  and not p.name.startswith(REGISTRY_PREFIX))


def import_trackio_home(store: Store, home: str | os.PathLike[str] | None = None
                        ) -> list[ImportResult]:
    """Import every project database of the trackio home ``home`` (default:
    :func:`default_trackio_dir`), each into the runfleet project of the same name.

    Returns one :class:`~runfleet.importers.ImportResult` per database, in name order. A
    database that cannot be read (corrupt, not SQLite, not a trackio project) does not stop
    the others: its result lists the error, naming the file, in ``errors`` (runs it
    imported before the error stay imported). Runs imported before are skipped. Raises
    :class:`~runfleet.importers.SourceNotFoundError` when ``home`` is not a folder or holds
    no project database.
    """
    root = (default_trackio_dir() if home is None else Path(home)).expanduser().resolve()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise SourceNotFoundError(f"no trackio home at {root}: it {what}")
    databases = project_databases(root)
    if not databases:
        raise SourceNotFoundError(f"no trackio project databases (<project>.db) in {root}")
    results = []
    for db in databases:
        result = ImportResult(project=db.stem)
        try:
            _import_database(store, db, result)
        except ImportSourceError as exc:
            text = str(exc)
            result.errors.append(text if str(db) in text else f"{db}: {text}")
        results.append(result)
    return results


def import_trackio(store: Store, db_path: str | os.PathLike[str],
                   project: str | None = None) -> ImportResult:
    """Import every run of the trackio database at ``db_path`` into ``project``.

    ``project`` defaults to the database file name without ``.db`` (trackio's project
    name). Runs already imported into that project are skipped. Raises
    :class:`~runfleet.importers.SourceNotFoundError` for a missing file and
    :class:`~runfleet.importers.ImportSourceError` for a file that is not a trackio database.
    """
    path = Path(db_path).expanduser().resolve()
    result = ImportResult(project=project or path.stem)
    _import_database(store, path, result)
    return result


def _import_database(store: Store, path: Path, result: ImportResult) -> None:
    """Import the database at ``path`` into ``result.project``, recording progress in
    ``result`` as it goes (so that it is kept when a later run fails)."""
    project = result.project
    with _connect(path) as conn:
        source = _Source(conn, path)
        traces = 0
        for key, name in source.runs():
            existing = store.find_run(project, id=source.run_id(key))
            if existing is not None and existing.status != RunStatus.PENDING:
                result.skipped.append(f"{existing.id} ({existing.name})")
                continue
            run = source.read_run(key, name)
            traces += source.trace_count(key)
            if write_run(store, project, run):
                result.imported.append(f"{run.id} ({run.name})")
                result.points += run.point_count
            else:
                result.skipped.append(f"{run.id} ({run.name})")
        if source.media_values:
            result.notes.append(f"{source.media_values} media value(s) (images, tables, "
                                f"histograms, ...) were kept as JSON values; media files "
                                f"next to the database were not copied")
    if traces:
        result.notes.append(f"{traces} trace(s) in the traces table were not imported")


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    if not path.is_file():
        raise SourceNotFoundError(f"no trackio database at {path}")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise ImportSourceError(f"cannot read {path}: {exc}") from exc
    if head != _SQLITE_MAGIC:
        raise ImportSourceError(f"{path} is not a SQLite database, so not a trackio project")
    try:
        conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ImportSourceError(f"cannot open {path}: {exc}") from exc
    with closing(conn):
        try:
            yield conn
        except sqlite3.DatabaseError as exc:
            raise ImportSourceError(f"cannot read trackio database {path}: {exc}") from exc


def parse_time(text: Any) -> float:
    """Seconds since the epoch of a trackio timestamp (ISO 8601; a naive one is local time,
    as older trackio versions wrote ``datetime.now()``)."""
    if isinstance(text, (int, float)):
        return float(text)
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError as exc:
        raise ImportSourceError(f"unreadable trackio timestamp {text!r}") from exc


def _load_json(blob: Any, what: str) -> Any:
    try:
        return json.loads(blob)
    except (TypeError, ValueError) as exc:
        raise ImportSourceError(f"{what} is not valid JSON: {exc}") from exc


def _restore(value: Any) -> Any:
    """trackio's reading rule: top-level "NaN"/"Infinity"/"-Infinity" strings are floats."""
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    return value


class _Source:
    """Queries on one open trackio database."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "metrics" not in tables:
            raise ImportSourceError(f"{path} is not a trackio project database "
                                    f"(it has no 'metrics' table)")
        self.columns = {t: {r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')}
                        for t in ("metrics", "configs", "system_metrics", "alerts", "traces")
                        if t in tables}
        self.has_ids = "run_id" in self.columns["metrics"]
        self.media_values = 0  # trackio media dicts seen (kept as JSON values)

    def _ident(self, table: str) -> str:
        """The column naming a run in ``table``: ``run_id``, or ``run_name`` in old files."""
        return "run_id" if self.has_ids and "run_id" in self.columns[table] else "run_name"

    def runs(self) -> list[tuple[str, str]]:
        """(run key, latest name) of every run, ordered by when it first appeared."""
        first: dict[str, tuple[float, str]] = {}
        sources = [("configs", "created_at"), ("metrics", "timestamp"),
                   ("system_metrics", "timestamp"), ("alerts", "timestamp")]
        for table, tcol in sources:
            if table not in self.columns:
                continue
            ident = self._ident(table)
            rows = self.conn.execute(
                f"SELECT {ident}, MIN({tcol}), MAX(run_name) FROM {table} GROUP BY {ident}")
            for key, when, name in rows:
                if key is None:
                    continue
                t = parse_time(when)
                if key not in first or t < first[key][0]:
                    first[key] = (t, name if key not in first else first[key][1])
        return [(k, v[1]) for k, v in sorted(first.items(), key=lambda kv: kv[1][0])]

    def run_id(self, key: str) -> str:
        """The runfleet id of a trackio run: from its trackio id, or for old databases
        (runs known by name only) from the database path and the name."""
        if self.has_ids:
            return stable_id("trackio", key)
        return stable_id("trackio", str(self.path), key)

    def read_run(self, key: str, name: str) -> RunData:
        """Collect the config, metrics, system metrics and alerts of one run."""
        run_id = self.run_id(key)
        origin: dict[str, Any] = {"format": "trackio", "path": str(self.path),
                                  "run_name": name}
        if self.has_ids:
            origin["run_id"] = key
        run = RunData(id=run_id, name=name, metadata={"imported_from": origin})
        self._read_config(key, run, origin)
        self._read_metrics(key, run)
        self._read_system(key, run)
        self._read_alerts(key, run)
        return run

    def _read_config(self, key: str, run: RunData, origin: dict[str, Any]) -> None:
        if "configs" not in self.columns:
            return
        row = self.conn.execute(
            f"SELECT config, created_at FROM configs WHERE {self._ident('configs')} = ?"
            " ORDER BY id DESC LIMIT 1", (key,)).fetchone()
        if row is None:
            return
        config = _load_json(row[0], f"config of trackio run {run.name!r}")
        if not isinstance(config, dict):
            config = {"config": config}
        for trackio_key, meta_key in _TRACKIO_CONFIG_KEYS.items():
            if trackio_key in config:
                origin[meta_key] = config.pop(trackio_key)
        origin["config_created_at"] = row[1]
        # trackio writes the config when the run starts; an unreadable time leaves the
        # first point's time to stand for it.
        with suppress(ImportSourceError):
            run.created = parse_time(row[1])
        group = origin.pop("group", None)
        run.group = None if group is None else str(group)
        run.config = {k: _restore(v) for k, v in config.items()}

    def _read_metrics(self, key: str, run: RunData) -> None:
        rows = self.conn.execute(
            f"SELECT timestamp, step, metrics FROM metrics WHERE {self._ident('metrics')} = ?"
            " ORDER BY id", (key,))
        step = -1
        for when, row_step, blob in rows:
            step = step + 1 if row_step is None else int(row_step)
            t = parse_time(when)
            values = _load_json(blob, f"a metrics row of trackio run {run.name!r}")
            if not isinstance(values, dict):
                raise ImportSourceError(f"a metrics row of trackio run {run.name!r} is not "
                                        f"a JSON object")
            for k, v in values.items():
                if isinstance(v, dict) and "_type" in v:
                    self.media_values += 1
                run.add(str(k), step, t, _restore(v))

    def _read_system(self, key: str, run: RunData) -> None:
        if "system_metrics" not in self.columns:
            return
        rows = self.conn.execute(
            f"SELECT timestamp, metrics FROM system_metrics"
            f" WHERE {self._ident('system_metrics')} = ? ORDER BY timestamp, id", (key,))
        for index, (when, blob) in enumerate(rows):
            t = parse_time(when)
            values = _load_json(blob, f"a system_metrics row of trackio run {run.name!r}")
            for k, v in (values.items() if isinstance(values, dict) else []):
                name = str(k) if str(k).startswith(SYSTEM_PREFIX) else SYSTEM_PREFIX + str(k)
                run.add(name, index, t, _restore(v))

    def _read_alerts(self, key: str, run: RunData) -> None:
        if "alerts" not in self.columns:
            return
        rows = self.conn.execute(
            f"SELECT timestamp, title, text, level, step FROM alerts"
            f" WHERE {self._ident('alerts')} = ? ORDER BY id", (key,))
        for when, title, text, level, step in rows:
            run.alerts.append((str(title), "" if text is None else str(text),
                               str(level or "warn"), None if step is None else int(step),
                               parse_time(when)))

    def trace_count(self, key: str) -> int:
        """Number of trace rows of a run (traces are not imported)."""
        if "traces" not in self.columns:
            return 0
        row = self.conn.execute(
            f"SELECT COUNT(*) FROM traces WHERE {self._ident('traces')} = ?", (key,)).fetchone()
        return int(row[0])
