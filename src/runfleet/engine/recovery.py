"""What a new controller needs to take an experiment over: the saved experiment, and each
run reopened where its last recorded checkpoint left it.

``engine.pkl`` in the experiment folder holds a cloudpickle of :class:`SavedExperiment`:
the workers' setup (model factory, datasets, checkpoint store), the trainer, the seed, the
policies and every run's spec. It is rewritten whenever a run is added (a clone), so a
controller killed at any point can be replaced by
``Experiment.attach(name).resume_all()``. Each run's progress is in its tracked run's
metadata (``engine``: ``step``, ``state_key``, ``chunks_done``), written after every chunk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np

from runfleet.engine.checkpoint import CheckpointStore
from runfleet.engine.controller import EngineRun
from runfleet.engine.policy import SchedulingPolicy, StoppingPolicy
from runfleet.engine.spec import RunSpec, WorkerSetup
from runfleet.sinks import Sink
from runfleet.store.base import SYSTEM_PREFIX, RunStatus, Store
from runfleet.tracking.session import start_run

STATE_FILE = "engine.pkl"


@dataclass
class SavedRun:
    """A run as the experiment knows it: id, name, spec and flattened config."""

    run_id: str
    name: str
    spec: RunSpec
    config: dict[str, Any]

    @classmethod
    def of(cls, run: EngineRun) -> SavedRun:
        """The saved form of a controller's run."""
        return cls(run.spec.run_id, run.name, run.spec, run.config)


@dataclass
class SavedExperiment:
    """Everything to drive the experiment again. ``num_chunks`` is the experiment's
    setting (every run's plan has that many chunks; clones are planned with it)."""

    setup: WorkerSetup
    trainer: str
    num_chunks: int
    seed: int
    policy: SchedulingPolicy | None
    stopping: StoppingPolicy | None
    runs: list[SavedRun]
    save_final: bool = False  # log each completed run's final weights as an artefact


def save(folder: Path, saved: SavedExperiment) -> None:
    """Write ``saved`` atomically to the experiment folder."""
    tmp = folder / (STATE_FILE + ".tmp")
    tmp.write_bytes(cloudpickle.dumps(saved))
    os.replace(tmp, folder / STATE_FILE)


def load(folder: Path, name: str) -> SavedExperiment:
    """The saved experiment of the folder; ``ValueError`` if it was never started."""
    path = folder / STATE_FILE
    if not path.exists():
        raise ValueError(f"experiment {name!r} has nothing to resume ({path} is missing); "
                         f"start it with run_fit")
    saved: SavedExperiment = cloudpickle.loads(path.read_bytes())
    return saved


def reopen_runs(project: str, home_root: Path, saved: SavedExperiment, store: Store,
                checkpoints: CheckpointStore, sinks: Sequence[Sink]) -> list[EngineRun]:
    """Every saved run that still exists, its tracker resumed, at the step of its last
    recorded checkpoint (0 when that checkpoint never reached the disk). Runs that
    finished just before a crash are completed; runs that were running restart as
    running (or pending when no step was recorded)."""
    runs: list[EngineRun] = []
    for entry in saved.runs:
        record = store.find_run(project, id=entry.run_id)
        if record is None:
            continue  # purged
        engine = record.metadata.get("engine", {})
        status = record.status
        if status in (RunStatus.RUNNING, RunStatus.PENDING, RunStatus.CRASHED):
            status = RunStatus.RUNNING if engine.get("step") else RunStatus.PENDING
        tracker = start_run(project, id=entry.run_id, resume="must", dir=home_root,
                            system_metrics=False, status=status,
                            sinks=list(sinks) if status != RunStatus.DELETED else None,
                            wait_sinks=False)
        run = EngineRun(index=len(runs), spec=entry.spec, name=entry.name,
                        config=entry.config, tracker=tracker, status=status,
                        next_step=int(engine.get("step", 0)),
                        state_key=engine.get("state_key"))
        if run.state_key and not checkpoints.exists(run.state_key):
            run.next_step, run.state_key = 0, None  # never recorded on disk: start over
        run.last_step = {k.key: k.step_max for k in store.keys(record.rid)}
        if run.next_step >= entry.spec.plan.total_steps and run.active:
            run.status = RunStatus.COMPLETED  # it finished just before the crash
            tracker.finish(status=RunStatus.COMPLETED)
        if saved.stopping is not None:
            run.metric_at_chunk = metrics_at_chunk_ends(store, record.rid, run)
        runs.append(run)
    return runs


def metrics_at_chunk_ends(store: Store, rid: int, run: EngineRun
                          ) -> dict[int, dict[str, float]]:
    """Each finished chunk's metrics as the controller saw them at its end (for stopping
    policies after a recovery): the last value of every numeric key up to the chunk's end."""
    out: dict[int, dict[str, float]] = {}
    series = [store.series(rid, info.key) for info in store.keys(rid)
              if not info.key.startswith(SYSTEM_PREFIX)]
    for chunk, (_, end) in enumerate(run.plan_chunks, start=1):
        if end > run.next_step:
            break
        values: dict[str, float] = {}
        for s in series:
            upto = np.searchsorted(s.steps, end, side="right")
            if upto and s.values.dtype.kind in "fiub":
                values[s.key] = float(s.values[upto - 1])
        out[chunk] = values
    return out
