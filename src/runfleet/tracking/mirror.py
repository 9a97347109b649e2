"""A tracking sink that mirrors runs into another runfleet home (a shared or backup folder).

Each run is recreated in the other home with the same id, name, group, config, lineage,
points (same steps and times are not kept: the mirror's own clock stamps them) and status;
a resumed run continues the mirrored one. Values are stored exactly as in the source.

It is a sink like the trackio or MLflow ones (:class:`runfleet.sinks.Sink`) that writes
through runfleet's own tracker, so it lives beside the tracker it uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runfleet.home import Home
from runfleet.sinks.base import Row, RunInfo, Sink, SinkRun
from runfleet.store.base import SYSTEM_PREFIX
from runfleet.store.sqlite import SQLiteStore
from runfleet.tracking.session import start_run


class RunfleetSink(Sink):
    """Forward runs to the runfleet home at ``dir``.

    Args:
        dir: the other home (it must not be the home the runs are tracked in).
    """

    name = "runfleet-mirror"

    def __init__(self, dir: str | os.PathLike[str]) -> None:
        self.dir = Path(dir).expanduser().resolve()
        self._runs: dict[str, Any] = {}
        self._status: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"RunfleetSink(dir={str(self.dir)!r})"

    def settings(self) -> dict[str, Any]:
        """``{"dir": ...}``: the mirror home."""
        return {"dir": str(self.dir)}

    def start_run(self, run: RunInfo) -> None:
        """Create (or, when it exists, continue) the mirrored run."""
        if run.home is not None and Path(run.home).resolve() == self.dir:
            raise ValueError(f"RunfleetSink(dir={str(self.dir)!r}) is the run's own home; "
                             f"mirror into another folder")
        old = self._runs.pop(run.run_id, None)
        if old is not None:
            old.finish(status=self._status.get(run.run_id, "stopped"))
        self._runs[run.run_id] = start_run(
            run.project, id=run.run_id, name=run.name, group=run.group,
            config=dict(run.config), tags=list(run.tags), resume="allow", dir=self.dir,
            system_metrics=False, parent=run.parent, parent_step=run.parent_step,
            status="running")
        self._status[run.run_id] = "running"

    def log(self, run_id: str, rows: Sequence[Row]) -> None:
        """Log every row at its step."""
        mirror = self._runs[run_id]
        for step, _when, values in rows:
            mirror.log(values, step=step)

    def set_status(self, run_id: str, status: str) -> None:
        """Set the mirrored run's status."""
        self._status[run_id] = status
        self._runs[run_id].set_status(status)

    def update_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Replace the mirrored run's config."""
        self._runs[run_id].config.update(dict(config))

    def finish_run(self, run_id: str, status: str) -> None:
        """Finish the mirrored run with ``status`` and flush it."""
        self._status[run_id] = status
        mirror = self._runs.pop(run_id, None)
        if mirror is not None:
            mirror.finish(status=status)

    def close(self) -> None:
        """Finish the runs still open with their last status."""
        for run_id in list(self._runs):
            self.finish_run(run_id, self._status.get(run_id, "stopped"))

    def read_project(self, project: str) -> list[SinkRun]:
        """Read the mirrored runs back from the mirror home's store."""
        home = Home.resolve(self.dir)
        if not home.db_path.exists():
            return []
        out = []
        store = SQLiteStore.open(home.db_path, read_only=True)
        try:
            known = {p.name for p in store.projects()}
            for r in store.runs(project) if project in known else []:
                points: dict[str, list[tuple[int, Any]]] = {}
                for info in store.keys(r.rid):
                    if info.key.startswith(SYSTEM_PREFIX):
                        continue
                    series = store.series(r.rid, info.key)
                    points[info.key] = [(int(s), _python(v)) for s, v in
                                        zip(series.steps.tolist(), series.values)]
                out.append(SinkRun(r.id, r.name, r.group, dict(r.config), r.status, points))
        finally:
            store.close()
        return out


def _python(value: Any) -> Any:
    """A numpy scalar as the Python value it stores."""
    item = getattr(value, "item", None)
    return item() if item is not None else value
