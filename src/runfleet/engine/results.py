"""The tables an experiment answers with: its runs with their progress, and its results
(every run's config with the last and best value of each metric).

Both read the experiment's tracked runs back (runfleet's store through
:class:`runfleet.Api`, or another tracker through its sink's ``read_project``), so they
are the same from the controller's process, another process, or after a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runfleet.sinks import Sink

if TYPE_CHECKING:
    import pandas as pd

    from runfleet.api import Api, ApiRun

_LOWER_IS_BETTER = ("loss",)  # metric names containing these: lower is better
_NOT_METRICS = ("step", "epoch", "chunk")
_NO_BEST = ("learning_rate", "grad_norm")

RUNS_COLUMNS = ["id", "name", "status", "parent", "step", "chunks_done"]


def experiment_runs(api: Api, project: str) -> list[ApiRun]:
    """The experiment's tracked runs, deleted ones included (``api`` must stay open while
    they are used)."""
    if not any(p == project for p in api.projects()):
        return []
    return list(api.runs(project, include_deleted=True))


def runs_table(home_root: Path, project: str) -> pd.DataFrame:
    """One row per run: ``id, name, status, parent, step, chunks_done, num_chunks`` and the
    run's config columns."""
    import pandas as pd

    from runfleet.api import Api

    rows = []
    with Api(home_root) as api:
        for r in experiment_runs(api, project):
            engine = r.metadata.get("engine", {})
            rows.append({"id": r.id, "name": r.name, "status": r.status, "parent": r.parent,
                         "step": max(r.last_step, 0),
                         "chunks_done": engine.get("chunks_done", 0),
                         "num_chunks": r.config.get("num_chunks"), **r.config})
    return pd.DataFrame(rows, columns=None if rows else RUNS_COLUMNS)


def results_table(home_root: Path, project: str) -> pd.DataFrame:
    """:func:`result_row` of every run, from runfleet's store."""
    import pandas as pd

    from runfleet.api import Api

    with Api(home_root) as api:
        rows = [result_row({"id": r.id, "name": r.name, "status": r.status, **r.config},
                           r.history()) for r in experiment_runs(api, project)]
    return pd.DataFrame(rows)


def results_from_sink(sink: Sink, project: str) -> pd.DataFrame:
    """:func:`result_row` of every run as another tracker holds it (read back through the
    sink's :meth:`~runfleet.sinks.Sink.read_project`)."""
    import pandas as pd

    rows = []
    for sr in sink.read_project(project):
        columns = {key: pd.Series(dict(points), dtype=object)
                   for key, points in sr.points.items()}
        history = pd.DataFrame(columns).sort_index() if columns else pd.DataFrame()
        config = {k: v for k, v in sr.config.items() if k not in ("parent", "parent_step")}
        rows.append(result_row({"id": sr.run_id, "name": sr.name, "status": sr.status,
                                **config}, history))
    return pd.DataFrame(rows)


def result_row(head: dict[str, Any], history: pd.DataFrame) -> dict[str, Any]:
    """``head`` plus the run's result columns: what its trainer's backend makes of its
    history (:meth:`~runfleet.engine.backend.Backend.summarize`), else, for every metric
    column, its last value (``last_<key>``) and, except for learning rate and gradient norm,
    its best (``best_<key>``: lowest for losses, highest otherwise)."""
    import numpy as np
    import pandas as pd

    row = dict(head)
    summary = _backend_summary(head.get("trainer"), history)
    if summary is not None:
        return {**row, **summary}
    for key in _metric_columns(history.columns):
        values = pd.to_numeric(history[key], errors="coerce").dropna()
        if values.empty:
            continue
        row[f"last_{key}"] = float(values.iloc[-1])
        if key in _NO_BEST:
            continue
        lower = any(word in str(key) for word in _LOWER_IS_BETTER)
        row[f"best_{key}"] = float(np.min(values) if lower else np.max(values))
    return row


def _backend_summary(trainer: Any, history: pd.DataFrame) -> dict[str, Any] | None:
    from runfleet.engine.backend import backend_class

    if not isinstance(trainer, str):
        return None
    try:
        backend = backend_class(trainer)
    except (ImportError, ValueError, TypeError):  # not installed here: the default table
        return None
    return backend.summarize(history)


def _metric_columns(columns: Iterable[Any]) -> list[Any]:
    return [k for k in columns if not str(k).startswith("_") and k not in _NOT_METRICS]
