"""Trackio sink: every run also becomes a run of the real ``trackio`` package.

Needs ``pip install 'runfleet[trackio]'``. Mapping:

* trackio project = the runfleet project (an engine experiment's name); trackio run name =
  run name, trackio run id = runfleet run id (so a resumed run continues the same trackio
  run, even from another process); group = the run's group (an experiment's group, or the
  experiment's name).
* config = the flattened config plus ``parent`` and ``parent_step`` for clones (the engine's
  config already holds ``warm_start``). trackio reserves keys starting with ``_``: such a
  key is written as ``cfg_<key>``. trackio writes a run's config together with its first
  metrics; a run that ends without logging anything gets one empty row at step 0 so that
  it and its config exist in trackio.
* metrics: every row with its own step. Numbers, bools, strings, ``None`` and JSON values go
  as they are (trackio stores NaN and infinities as the strings ``"NaN"`` and
  ``"Infinity"``, and reads them back as floats); runfleet media objects are left out.
  trackio renames its reserved keys (``step``, ``time``, ``timestamp``, ``project``,
  ``run``, ``metrics``, and keys starting with ``__``) to ``__<key>`` (see
  :func:`stored_key`); this sink silences trackio's warning about it, and
  :meth:`TrackioSink.read_project` undoes the rename.
* status: trackio has no run status, so each change (``stopped``, ``failed``,
  ``completed``, ``deleted``, and ``running`` again after a stop) is a trackio *alert*
  titled ``run <status>`` (level info, or warn for stopped/deleted, error for failed),
  visible in trackio's dashboard and through ``trackio.Api().alerts(project)``.

Only one process writes a trackio run: the one that owns the runfleet run (for the engine,
the controller; workers never import trackio). trackio reads ``TRACKIO_DIR`` once, when it
is first imported: ``TrackioSink(dir=...)`` sets it if trackio is not imported yet, and
refuses a different folder than the one an already imported trackio uses.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runfleet.sinks.base import Row, RunInfo, Sink, SinkRun

RESERVED = frozenset({"project", "run", "timestamp", "step", "time", "metrics"})
_LEVELS = {"stopped": "warn", "deleted": "warn", "failed": "error"}
_STATUS_ALERTS = ("stopped", "failed", "completed", "deleted")
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
TITLE_PREFIX = "run "


def stored_key(key: str) -> str:
    """The key trackio stores for a runfleet metric key (reserved names get ``__``)."""
    return f"__{key}" if key in RESERVED or key.startswith("__") else key


def config_key(key: str) -> str:
    """The key trackio stores for a runfleet config key (leading ``_`` is reserved)."""
    return f"cfg{key}" if key.startswith("_") else key


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, list, dict))


class TrackioSink(Sink):
    """Forward runs to trackio (local SQLite under ``TRACKIO_DIR``).

    Args:
        dir: trackio's data folder; default: ``TRACKIO_DIR``, else trackio's own default
            (``~/.cache/huggingface/trackio``).

    Rows reach trackio in batches through its storage layer (``trackio.SQLiteStorage``
    ``bulk_log`` / ``bulk_alert``: the calls, rows and config format ``trackio.Run`` itself
    uses in its local SQLite mode), which keeps each row's own log time and costs less than
    one ``trackio.log`` call per row. The sink is the only writer of its runs, so this holds
    even where trackio would switch to JSONL fragments (a ``TRACKIO_DIR`` on a network
    filesystem); a warning says so then.
    """

    name = "trackio"

    def __init__(self, dir: str | os.PathLike[str] | None = None) -> None:
        self.dir = None if dir is None else Path(dir).expanduser().resolve()
        self._runs: dict[str, _TrackioRun] = {}
        self._mode_checked = False

    def __repr__(self) -> str:
        return f"TrackioSink(dir={str(self.dir) if self.dir else None!r})"

    def settings(self) -> dict[str, Any]:
        """``{"dir": ...}`` (None: ``TRACKIO_DIR`` of the process that rebuilds it)."""
        return {"dir": None if self.dir is None else str(self.dir)}

    # -- trackio module ------------------------------------------------------------------------
    def _module(self) -> Any:
        if self.dir is not None:
            if "trackio" in sys.modules:
                from trackio import utils

                used = Path(utils.TRACKIO_DIR).expanduser().resolve()
                if used != self.dir:
                    raise RuntimeError(
                        f"trackio was already imported with TRACKIO_DIR={used}; it cannot "
                        f"switch to {self.dir} in this process (set TRACKIO_DIR before "
                        f"importing trackio, or use TrackioSink() for the current folder)")
            else:
                os.environ["TRACKIO_DIR"] = str(self.dir)
        warnings.filterwarnings("ignore", message="Reserved keys renamed",
                                category=UserWarning)
        try:
            import trackio
        except ImportError as exc:
            raise ImportError(f"the trackio sink needs trackio: pip install 'runfleet[trackio]'"
                              f" ({exc})") from exc
        return trackio

    def data_dir(self) -> Path:
        """The folder trackio writes to (imports trackio)."""
        self._module()
        from trackio import utils

        return Path(utils.TRACKIO_DIR)

    def _check_mode(self) -> None:
        if self._mode_checked:
            return
        self._mode_checked = True
        from trackio import utils

        if utils.get_storage_mode() != "sqlite":
            warnings.warn(f"trackio would log through JSONL fragments in {utils.TRACKIO_DIR} "
                          f"(a network filesystem, or TRACKIO_STORAGE_MODE=jsonl); runfleet's "
                          f"trackio sink writes trackio's SQLite file there directly, as the "
                          f"only writer of its runs", RuntimeWarning, stacklevel=2)

    # -- Sink ----------------------------------------------------------------------------------
    def start_run(self, run: RunInfo) -> None:
        """Open trackio's run (same id: a resumed run continues it)."""
        trackio = self._module()
        config = {config_key(k): v for k, v in run.config.items()}
        config.update(run.lineage())
        old = self._runs.pop(run.run_id, None)
        if old is not None:  # reopened in this process: end the old handle first
            old.finish()
        self._check_mode()
        handle = _TrackioRun(trackio, run, config)
        handle.status = run.status or "pending"
        self._runs[run.run_id] = handle
        if run.resumed and handle.status == "running":
            handle.alert("resumed")  # e.g. after a crash: it runs again

    def log(self, run_id: str, rows: Sequence[Row]) -> None:
        """Forward the rows at their steps (numbers, bools, strings, JSON; not media)."""
        handle = self._run(run_id)
        handle.log([(step, when, {k: v for k, v in values.items() if _plain(v)})
                    for step, when, values in rows])
        if rows:
            handle.logged = True
            handle.last_step = rows[-1][0]

    def set_status(self, run_id: str, status: str) -> None:
        """Status changes become trackio alerts titled ``run <status>``."""
        handle = self._run(run_id)
        previous, handle.status = handle.status, status
        if status == previous:
            return
        if status in _STATUS_ALERTS:
            handle.alert(status)
        elif status == "running" and previous in ("stopped", "failed"):
            handle.alert("resumed")

    def update_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Merge ``config`` into trackio's config (written again with the next row)."""
        self._run(run_id).update_config({config_key(k): v for k, v in config.items()})

    def finish_run(self, run_id: str, status: str) -> None:
        """Alert the final status and hand everything to trackio."""
        if run_id not in self._runs:
            return
        self.set_status(run_id, status)
        handle = self._runs.pop(run_id)
        if not handle.logged and not handle.info.resumed:
            handle.log([(0, time.time(), {})])  # trackio creates the run (and config) with it
        handle.finish()

    def close(self) -> None:
        """Finish every trackio run still open."""
        for run_id in list(self._runs):
            self.finish_run(run_id, self._runs[run_id].status)

    def _run(self, run_id: str) -> _TrackioRun:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RuntimeError(f"trackio sink: run {run_id} was not started") from None

    # -- reading back -----------------------------------------------------------------------------
    def db_path(self, project: str) -> Path:
        """trackio's SQLite file for ``project``."""
        self._module()
        from trackio.sqlite_storage import SQLiteStorage

        return Path(SQLiteStorage.get_project_db_path(project))

    def read_project(self, project: str) -> list[SinkRun]:
        """Every trackio run of ``project`` with config, metrics and status, from trackio's
        SQLite file (read-only; reserved-key renames undone, NaN/infinity strings decoded)."""
        path = self.db_path(project)
        if not path.exists():
            return []
        uri = f"file:{path}?mode=ro"
        runs: dict[str, SinkRun] = {}
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            for run_id, name, config in conn.execute(
                    "SELECT run_id, run_name, config FROM configs ORDER BY id"):
                cfg = json.loads(config)
                group = cfg.pop("_Group", None)
                cfg = {(k[3:] if k.startswith("cfg_") else k): v for k, v in cfg.items()
                       if not k.startswith("_")}
                runs[run_id] = SinkRun(run_id, name, group, cfg, "running", {})
            for run_id, name, step, metrics in conn.execute(
                    "SELECT run_id, run_name, step, metrics FROM metrics ORDER BY id"):
                run = runs.setdefault(run_id, SinkRun(run_id, name, None, {}, "running", {}))
                for key, value in json.loads(metrics).items():
                    key = key[2:] if key.startswith("__") else key
                    if isinstance(value, str) and value in _NON_FINITE:
                        value = _NON_FINITE[value]
                    run.points.setdefault(key, []).append((int(step), value))
            for run_id, title in conn.execute(
                    "SELECT run_id, title FROM alerts ORDER BY id"):
                if run_id in runs and title.startswith(TITLE_PREFIX):
                    status = title[len(TITLE_PREFIX):]
                    runs[run_id].status = "running" if status == "resumed" else status
        for run in runs.values():
            for points in run.points.values():
                points.sort(key=lambda p: p[0])
        return list(runs.values())


class _TrackioRun:
    """One open trackio run, written through ``trackio.SQLiteStorage``."""

    def __init__(self, trackio: Any, run: RunInfo, config: dict[str, Any]) -> None:
        self.info = run
        self.storage = trackio.SQLiteStorage
        self.config = {**config, "_Username": None, "_Created": _iso(time.time()),
                       "_Group": run.group}
        self.config_dirty = True
        self.status = "pending"
        self.logged = False
        self.last_step = 0

    def log(self, rows: list[tuple[int, float, dict[str, Any]]]) -> None:
        """Write ``rows`` (and the config, when it changed) in one trackio transaction."""
        if not rows:
            return
        self.storage.bulk_log(
            project=self.info.project, run=self.info.name, run_id=self.info.run_id,
            metrics_list=[values for _, _, values in rows],
            steps=[step for step, _, _ in rows],
            timestamps=[_iso(when) for _, when, _ in rows],
            config=self.config if self.config_dirty else None,
            log_ids=[uuid.uuid4().hex for _ in rows])
        self.config_dirty = False

    def alert(self, status: str) -> None:
        """A trackio alert ``run <status>`` at the last logged step."""
        self.storage.bulk_alert(
            project=self.info.project, run=self.info.name, run_id=self.info.run_id,
            titles=[TITLE_PREFIX + status],
            texts=[f"runfleet: run {self.info.name} is {status}"],
            levels=[_LEVELS.get(status, "info")], steps=[self.last_step],
            alert_ids=[uuid.uuid4().hex])

    def update_config(self, config: dict[str, Any]) -> None:
        """Merge ``config``; it is written with the next rows (or at finish)."""
        self.config.update(config)
        self.config_dirty = True

    def finish(self) -> None:
        """Write a config changed since the last rows (trackio writes config with rows)."""
        if self.config_dirty and self.logged:
            self.log([(self.last_step, time.time(), {})])


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat()
