"""A tracker from outside runfleet: every call a run makes, as JSON lines in a folder."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runfleet.sinks.base import Row, RunInfo, Sink, SinkRun


class JsonlSink(Sink):
    """Appends each run's events to ``<dir>/<project>/<run id>.jsonl``."""

    name = "example-jsonl"

    def __init__(self, dir: str | os.PathLike[str] | None = None) -> None:
        self.dir = Path(dir or os.environ.get("EXAMPLE_JSONL_DIR", "example-jsonl")).resolve()
        self._files: dict[str, Path] = {}
        self._status: dict[str, str] = {}

    def settings(self) -> dict[str, Any]:
        return {"dir": str(self.dir)}

    def _write(self, run_id: str, event: dict[str, Any]) -> None:
        with self._files[run_id].open("a") as f:
            f.write(json.dumps(event) + "\n")

    def start_run(self, run: RunInfo) -> None:
        path = self.dir / run.project / f"{run.run_id}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._files[run.run_id] = path
        self._status[run.run_id] = run.status or "running"
        self._write(run.run_id, {"start": {"name": run.name, "group": run.group,
                                           "config": {**run.config, **run.lineage()}}})

    def log(self, run_id: str, rows: Sequence[Row]) -> None:
        for step, when, values in rows:
            self._write(run_id, {"step": step, "time": when, "values": dict(values)})

    def set_status(self, run_id: str, status: str) -> None:
        self._status[run_id] = status
        self._write(run_id, {"status": status})

    def update_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        self._write(run_id, {"config": dict(config)})

    def finish_run(self, run_id: str, status: str) -> None:
        self.set_status(run_id, status)
        self._files.pop(run_id, None)

    def close(self) -> None:
        for run_id in list(self._files):
            self.finish_run(run_id, self._status[run_id])

    def read_project(self, project: str) -> list[SinkRun]:
        out = []
        for path in sorted((self.dir / project).glob("*.jsonl")):
            run = SinkRun(path.stem, "", None, {}, None, {})
            for line in path.read_text().splitlines():
                event = json.loads(line)
                if "start" in event:
                    run.name, run.group = event["start"]["name"], event["start"]["group"]
                    run.config.update(event["start"]["config"])
                elif "config" in event:
                    run.config.update(event["config"])
                elif "status" in event:
                    run.status = event["status"]
                else:
                    for key, value in event["values"].items():
                        run.points.setdefault(key, []).append((event["step"], value))
            for points in run.points.values():
                points.sort(key=lambda p: p[0])
            out.append(run)
        return out
