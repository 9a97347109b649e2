"""``Experiment``: define a search space, train every config at once, compare results."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
import psutil

from runfleet.engine.checkpoint import CheckpointStore
from runfleet.engine.chunking import StepPlan
from runfleet.engine.controller import Controller, EngineError, EngineRun, OpError
from runfleet.engine.executor import Executor, LocalExecutor, WorkerSetup
from runfleet.engine.ops import OpRejectedError, request_op, wait_op
from runfleet.engine.policy import FairRoundRobin, SchedulingPolicy, StoppingPolicy
from runfleet.engine.progress import ProgressTable
from runfleet.engine.space import GridSearch, RandomSearch, SpaceError, apply_changes, flatten
from runfleet.engine.spec import RunSpec
from runfleet.fit.configs import (
    ConfigError,
    DPOConfig,
    FitConfig,
    GRPOConfig,
    ModelConfig,
    OpenConfig,
    SFTConfig,
    TorchConfig,
)
from runfleet.home import Home
from runfleet.sinks import Sink, describe, rebuild, resolve_sinks
from runfleet.sinks.fanout import flush_all as flush_sinks
from runfleet.sinks.fanout import sink_timeout
from runfleet.store.base import OpRecord, OpStatus, RunStatus, Store
from runfleet.tracking import homes
from runfleet.tracking.names import new_run_id
from runfleet.tracking.session import start_run

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("runfleet")

TRAINERS = ("sft", "dpo", "grpo", "torch")
_STATE_FILE = "engine.pkl"  # what a new controller needs to resume (specs, factory, data)
_LEASE_FILE = "controller.json"  # which process drives the experiment now
_ARGS_FOR = {"sft": SFTConfig, "dpo": DPOConfig, "grpo": GRPOConfig}
_LOWER_IS_BETTER = ("loss",)
_NOT_METRICS = ("step", "epoch", "chunk")
_NO_BEST = ("learning_rate", "grad_norm")


@dataclasses.dataclass
class _SavedRun:
    run_id: str
    name: str
    spec: RunSpec
    config: dict[str, Any]

    @classmethod
    def of(cls, run: EngineRun) -> _SavedRun:
        return cls(run.spec.run_id, run.name, run.spec, run.config)


@dataclasses.dataclass
class _SavedExperiment:
    setup: WorkerSetup
    trainer: str
    num_chunks: int
    seed: int
    policy: SchedulingPolicy | None
    stopping: StoppingPolicy | None
    runs: list[_SavedRun]


class Experiment:
    """A named experiment: its runs are tracked in project ``name`` of the home.

    ``trackers`` names where the runs are tracked besides runfleet's store, which always
    gets everything and holds the control state: ``"trackio"``, ``"mlflow"``,
    ``"tensorboard"`` (default settings) or :class:`runfleet.sinks.Sink` objects such as
    ``TrackioSink(dir=...)``; ``"runfleet"`` names the store itself. Only this process (the
    controller) writes to them, in the background: a slow or failing tracker never slows or
    stops training (failures become warnings on the run). Trackers see each run's config
    (plus ``parent``/``parent_step`` for clones), every metric at its step and every status
    change (stopped, resumed, completed, failed, deleted).

    Example:
        >>> exp = Experiment("sft-demo")                                  # doctest: +SKIP
        >>> exp.run_fit(space, create_model_fn, train_ds, eval_ds, num_chunks=4)  # doctest: +SKIP
        >>> exp.results()                                                  # doctest: +SKIP
    """

    def __init__(self, name: str, dir: str | os.PathLike[str] | None = None,
                 trackers: Sequence[str | Sink] | None = ("runfleet",),
                 group: str | None = None) -> None:
        if not name or "/" in name:
            raise ValueError(f"experiment name must be a non-empty name without '/', got {name!r}")
        self.name = name
        self.home = Home.resolve(dir)
        self.group = group
        self.trackers = tuple(trackers or ())
        self._sinks: list[Sink] | None = resolve_sinks(self.trackers)  # names checked now
        self._recorded: list[Any] = []
        self.dir = self.home.root / "experiments" / name
        self.last_runs: list[EngineRun] = []
        self.last_controller: Controller | None = None
        self._saved: _SavedExperiment | None = None
        self._attached = False  # made by attach(): its ops are recorded as source "attach"

    @classmethod
    def attach(cls, name: str, dir: str | os.PathLike[str] | None = None,
               trackers: Sequence[str | Sink] | None = None) -> Experiment:
        """An existing experiment, to inspect (``runs``, ``results``) and control from
        another process. For :meth:`resume_all` it uses ``trackers`` if given, else the
        trackers :meth:`run_fit` recorded, sink objects rebuilt from their recorded
        :meth:`~runfleet.sinks.Sink.settings` (e.g. the same MLflow URI).
        """
        exp = cls(name, dir=dir, trackers=trackers)
        if not (exp.dir / "experiment.json").exists():
            raise ValueError(f"no experiment {name!r} in {exp.home.root}")
        if trackers is None:  # rebuilt when first needed: inspecting needs no tracker
            meta = json.loads((exp.dir / "experiment.json").read_text())
            exp._recorded = list(meta.get("trackers", ()))
            exp.trackers = tuple(r if isinstance(r, str) else r.get("name", "?")
                                 for r in exp._recorded)
            exp._sinks = None
        exp._attached = True
        return exp

    @property
    def sinks(self) -> list[Sink]:
        """The tracking sinks the runs go to besides runfleet's store (from ``trackers``)."""
        if self._sinks is None:
            self.trackers = tuple(rebuild(r) for r in self._recorded)
            self._sinks = resolve_sinks(self.trackers)
        return self._sinks

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, dir={str(self.home.root)!r})"

    # -- running --------------------------------------------------------------------------------
    def run_fit(self, space: Any, create_model_fn: Callable[..., Any], train_dataset: Any,
                eval_dataset: Any = None, num_chunks: int = 4, seed: int = 42,
                workers: int | None = None, progress: bool = True,
                policy: SchedulingPolicy | None = None,
                stopping: StoppingPolicy | None = None, resume: bool = False,
                executor: Executor | None = None) -> pd.DataFrame:
        """Train every config of ``space`` at once, chunk by chunk; return :meth:`results`.

        ``space`` is a :class:`GridSearch`, a :class:`RandomSearch`, or one config.
        ``create_model_fn(config)`` gets the run's concrete config and returns
        ``(model, tokenizer)`` (HF trainers) or a model (``trainer="torch"``). Every config
        is validated, and the data split into ``num_chunks`` chunks per run, before any
        training starts; errors name the run and the key. ``stopping`` stops runs early at
        chunk boundaries (:mod:`runfleet.engine.stopping`). With ``resume=True`` an
        experiment that was interrupted (even by ``kill -9``) continues where it stopped
        instead of starting new runs (see :meth:`resume_all`).

        While it runs, other processes can control it: ``Experiment.attach(name).stop(id)``,
        ``runfleet stop ID``, or the dashboard's buttons.
        """
        self._check_not_driven()
        if resume and (self.dir / _STATE_FILE).exists():
            return self.resume_all(workers=workers, progress=progress, executor=executor)
        trainer, configs = _expand(space)
        if num_chunks < 1:
            raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
        n_train = len(train_dataset)
        specs: list[tuple[RunSpec, dict[str, Any]]] = []
        for i, config in enumerate(configs):
            try:
                plan, eval_steps = _plan(trainer, config, n_train, num_chunks, seed)
            except (ConfigError, SpaceError, ValueError) as exc:
                raise type(exc)(f"run {i + 1} of {len(configs)}: {exc}") from exc
            flat = {"trainer": trainer, **flatten(config)}
            specs.append((RunSpec(run_id="", trainer=trainer, config=config, plan=plan,
                                  seed=seed, eval_steps=eval_steps), flat))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_meta(num_chunks=num_chunks, seed=seed, trainer=trainer,
                         trackers=[describe(t) for t in self.trackers])
        runs: list[EngineRun] = []
        offset = len(self._existing_runs())
        for i, (spec, flat) in enumerate(specs):
            name = f"run-{offset + i + 1}"
            tracker = start_run(self.name, name=name, group=self.group or self.name,
                                config={**flat, "num_chunks": num_chunks, "seed": seed},
                                dir=self.home.root, system_metrics=False, status=RunStatus.PENDING,
                                sinks=self.sinks, wait_sinks=False)
            spec = RunSpec(run_id=tracker.id, trainer=spec.trainer, config=spec.config,
                           plan=spec.plan, seed=spec.seed, eval_steps=spec.eval_steps)
            runs.append(EngineRun(index=i, spec=spec, name=name, config=flat, tracker=tracker))
        setup = WorkerSetup(create_model_fn, train_dataset, eval_dataset,
                            str(self.dir / "checkpoints"), None, trainer)
        saved = _SavedExperiment(setup, trainer, num_chunks, seed, policy, stopping,
                                 [_SavedRun.of(r) for r in runs])
        return self._drive(saved, runs, workers, progress, executor)

    def resume_all(self, workers: int | None = None, progress: bool = True,
                   executor: Executor | None = None) -> pd.DataFrame:
        """Continue every unfinished run from its last checkpoint (after a crash, a
        ``kill -9`` of the controller, or runs left stopped), applying pending ops.

        Nothing already logged is logged again: each run restarts from the step of its
        last recorded checkpoint and steps already in the tracker are skipped.
        """
        self._check_not_driven()
        path = self.dir / _STATE_FILE
        if not path.exists():
            raise ValueError(f"experiment {self.name!r} has nothing to resume ({path} is "
                             f"missing); start it with run_fit")
        saved: _SavedExperiment = cloudpickle.loads(path.read_bytes())
        store = homes.get(self.home).store
        runs: list[EngineRun] = []
        for entry in saved.runs:
            record = store.find_run(self.name, id=entry.run_id)
            if record is None:
                continue  # purged
            engine = record.metadata.get("engine", {})
            status = record.status
            if status in (RunStatus.RUNNING, RunStatus.PENDING, "crashed"):
                status = RunStatus.RUNNING if engine.get("step") else RunStatus.PENDING
            tracker = start_run(self.name, id=entry.run_id, resume="must",
                                dir=self.home.root, system_metrics=False, status=status,
                                sinks=self.sinks if status != RunStatus.DELETED else None,
                                wait_sinks=False)
            run = EngineRun(index=len(runs), spec=entry.spec, name=entry.name,
                            config=entry.config, tracker=tracker, status=status,
                            next_step=int(engine.get("step", 0)),
                            state_key=engine.get("state_key"))
            if run.state_key and not self.checkpoints().exists(run.state_key):
                run.next_step, run.state_key = 0, None  # never recorded on disk: start over
            run.last_step = {k.key: k.step_max for k in store.keys(record.rid)}
            if run.next_step >= entry.spec.plan.total_steps and run.active:
                run.status = RunStatus.COMPLETED  # it finished just before the crash
                tracker.finish(status=RunStatus.COMPLETED)
            if saved.stopping is not None:
                run.metric_at_chunk = _metrics_at_chunk_ends(store, record.rid, run)
            runs.append(run)
        return self._drive(saved, runs, workers, progress, executor)

    def _drive(self, saved: _SavedExperiment, runs: list[EngineRun], workers: int | None,
               progress: bool, executor: Executor | None) -> pd.DataFrame:
        self.last_runs = runs
        self._saved = saved
        self._save_state()
        devices = _devices(workers)
        setup = dataclasses.replace(saved.setup, threads=_worker_threads(devices))
        executor = executor or LocalExecutor()
        table = ProgressTable(f"{self.name}: {len(runs)} runs x {saved.num_chunks} chunks on "
                              f"{len(devices)} worker(s)", [r.config for r in runs],
                              enabled=progress)
        controller = Controller(
            runs, executor, saved.policy or FairRoundRobin(), table, project=self.name,
            store=homes.get(self.home).store, checkpoints=self.checkpoints(),
            stopping=saved.stopping, clone_factory=self._clone)
        self.last_controller = controller
        lease = self._take_lease()
        executor.start(setup, devices)
        try:
            controller.run()
        except KeyboardInterrupt:
            for r in runs:
                if not r.terminal and r.status != RunStatus.STOPPED:
                    r.status = RunStatus.STOPPED
                    r.tracker.set_status(RunStatus.STOPPED)
            raise
        finally:
            executor.shutdown()
            lease.unlink(missing_ok=True)
            for r in runs:
                r.tracker.end_sinks(r.status)  # runs left stopped end in the sinks too
                r.tracker.flush()
            if self.sinks:
                if not flush_sinks(sink_timeout()):
                    logger.warning("a tracking sink did not take everything within %s s; "
                                   "runfleet's store has it all", sink_timeout())
                homes.get(self.home).writer.flush()  # sink failures are alerts on the runs
        return self.results()

    def _check_not_driven(self) -> None:
        """Refuse to drive the experiment while another live process drives it."""
        lease = self.dir / _LEASE_FILE
        if self.controller_alive():
            info = json.loads(lease.read_text())
            if info.get("pid") != os.getpid():
                raise EngineError(f"experiment {self.name!r} is already driven by process "
                                  f"{info.get('pid')}; control it with Experiment.attach("
                                  f"{self.name!r}) instead of running it twice")

    def _take_lease(self) -> Path:
        """Claim the experiment for this process."""
        self._check_not_driven()
        lease = self.dir / _LEASE_FILE
        tmp = lease.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                   "started": time.time()}))
        os.replace(tmp, lease)
        return lease

    def _save_state(self) -> None:
        assert self._saved is not None
        tmp = self.dir / (_STATE_FILE + ".tmp")
        tmp.write_bytes(cloudpickle.dumps(self._saved))
        os.replace(tmp, self.dir / _STATE_FILE)

    def checkpoints(self) -> CheckpointStore:
        """The experiment's checkpoint store."""
        return CheckpointStore(self.dir / "checkpoints")

    def _clone(self, parent: EngineRun, op: OpRecord) -> EngineRun:
        """Build a validated clone of ``parent`` for a clone op (raise OpError if invalid)."""
        saved = self._saved
        assert saved is not None
        changes = dict(op.args.get("changes") or {})
        warm = bool(op.args.get("warm_start", False))
        try:
            config = apply_changes(parent.spec.config, changes)
        except SpaceError as exc:
            raise OpError(str(exc)) from exc
        try:
            plan, eval_steps = _plan(saved.trainer, config, len(saved.setup.train_dataset),
                                     saved.num_chunks, saved.seed)
        except (ConfigError, SpaceError, ValueError) as exc:
            raise OpError(str(exc)) from exc
        flat = {"trainer": saved.trainer, **flatten(config)}
        child_id = new_run_id()
        warm_key = None
        if warm:
            if parent.state_key is None:
                raise OpError(f"run {parent.name} has no checkpoint yet (no chunk finished):"
                              f" clone it cold, or warm once a chunk is done")
            changed = [k for k in flat if k.startswith("peft_config.")
                       and flat.get(k) != parent.config.get(k)]
            changed += [k for k in parent.config if k.startswith("peft_config.")
                        and k not in flat]
            if changed or ("model_name" in changes and changes["model_name"] !=
                           parent.config.get("model_name")):
                raise OpError("a warm clone needs the parent's model and adapter shapes; "
                              f"changed: {', '.join(changed or ['model_name'])} (clone cold)")
            warm_key = f"{child_id}/warm-start"
            self.checkpoints().copy(parent.state_key, warm_key)
        clones = sum(1 for r in saved.runs if r.name.startswith(parent.name + ".c"))
        name = str(op.args.get("name") or f"{parent.name}.c{clones + 1}")
        tracker = start_run(self.name, id=child_id, name=name, group=self.group or self.name,
                            config={**flat, "num_chunks": saved.num_chunks, "seed": saved.seed,
                                    "warm_start": warm},
                            dir=self.home.root, system_metrics=False, status=RunStatus.PENDING,
                            parent=parent.spec.run_id, parent_step=parent.next_step,
                            sinks=self.sinks, wait_sinks=False)
        spec = RunSpec(run_id=child_id, trainer=saved.trainer, config=config, plan=plan,
                       seed=saved.seed, eval_steps=eval_steps, warm_start=warm_key)
        child = EngineRun(index=0, spec=spec, name=name, config=flat, tracker=tracker)
        saved.runs.append(_SavedRun.of(child))
        self._save_state()
        return child

    # -- control (any process) ------------------------------------------------------------------
    def controller_alive(self) -> bool:
        """Whether a controller is driving this experiment right now (on this host)."""
        lease = self.dir / _LEASE_FILE
        try:
            info = json.loads(lease.read_text())
        except (OSError, ValueError):
            return False
        return info.get("host") == socket.gethostname() and psutil.pid_exists(int(info["pid"]))

    def _request(self, kind: str, run_id: str, args: dict[str, Any], wait: bool,
                 timeout: float, source: str | None) -> OpRecord:
        op = request_op(self.home, self.name, kind, run_id, args,
                        source or ("attach" if self._attached else "python"))
        if not wait or not self.controller_alive():
            return op
        op = wait_op(self.home, op.id, timeout)
        if op.status == OpStatus.REJECTED:
            raise OpRejectedError(op)
        return op

    def stop(self, run_id: str, wait: bool = True, timeout: float = 30.0,
             source: str | None = None) -> OpRecord:
        """Stop a run (within one training step); its state is kept for :meth:`resume`.

        Writes a ``stop`` op; with ``wait`` (and a controller running) returns once it is
        applied, raising :class:`OpRejectedError` with the reason if it is rejected.
        Without a running controller the op stays pending until one runs
        (``run_fit(..., resume=True)`` or :meth:`resume_all`).
        """
        return self._request("stop", run_id, {}, wait, timeout, source)

    def resume(self, run_id: str, wait: bool = True, timeout: float = 30.0,
               source: str | None = None) -> OpRecord:
        """Resume a stopped run exactly where it stopped (see :meth:`stop`)."""
        return self._request("resume", run_id, {}, wait, timeout, source)

    def delete(self, run_id: str, purge: bool = False, wait: bool = True,
               timeout: float = 30.0, source: str | None = None) -> OpRecord:
        """Delete a run: its state leaves memory and disk and it is hidden from listings.

        Its tracking data is kept (``Api().runs(..., include_deleted=True)``) unless
        ``purge``.
        """
        return self._request("delete", run_id, {"purge": purge}, wait, timeout, source)

    def clone(self, run_id: str, changes: dict[str, Any] | None = None,
              warm_start: bool = False, name: str | None = None, wait: bool = True,
              timeout: float = 30.0, source: str | None = None) -> str | OpRecord:
        """Clone a run with ``changes`` (``{"training_args.learning_rate": 2e-4}``).

        The clone's config is validated before it is accepted. ``warm_start`` starts it
        from the parent's latest weights and optimizer state (same model and adapter
        shapes); otherwise it starts from scratch. Returns the new run's id once applied
        (with ``wait``), else the pending op.
        """
        args: dict[str, Any] = {"changes": dict(changes or {}), "warm_start": warm_start}
        if name:
            args["name"] = name
        op = self._request("clone", run_id, args, wait, timeout, source)
        return str(op.result["run_id"]) if op.status == OpStatus.APPLIED else op

    def ops(self) -> list[OpRecord]:
        """Every control op of the experiment, oldest first (the audit trail)."""
        return homes.get(self.home).store.ops(self.name)

    def _write_meta(self, **fields: Any) -> None:
        path = self.dir / "experiment.json"
        meta = json.loads(path.read_text()) if path.exists() else {"name": self.name,
                                                                    "created": time.time()}
        meta.update(fields)
        path.write_text(json.dumps(meta, indent=2))

    def _existing_runs(self, api: Any = None) -> list[Any]:
        """The experiment's runs as :class:`runfleet.ApiRun` (through ``api``, kept open by
        the caller while the runs are used)."""
        from runfleet.api import Api

        if api is None:
            with Api(self.home.root) as own:
                return [r.id for r in self._existing_runs(own)]
        if not any(p == self.name for p in api.projects()):
            return []
        return list(api.runs(self.name, include_deleted=True))

    # -- inspecting -------------------------------------------------------------------------------
    def runs(self) -> pd.DataFrame:
        """One row per run: ``id, name, status, parent, step, chunks_done, num_chunks`` and
        the run's config columns."""
        import pandas as pd

        from runfleet.api import Api

        rows = []
        with Api(self.home.root) as api:
            runs = self._existing_runs(api)
        for r in runs:
            engine = r.metadata.get("engine", {})
            rows.append({"id": r.id, "name": r.name, "status": r.status, "parent": r.parent,
                         "step": max(r.last_step, 0), "chunks_done": engine.get("chunks_done", 0),
                         "num_chunks": r.config.get("num_chunks"), **r.config})
        return pd.DataFrame(rows, columns=None if rows else
                            ["id", "name", "status", "parent", "step", "chunks_done"])

    def results(self, source: str | Sink = "runfleet") -> pd.DataFrame:
        """One row per run: id, name, status, config columns, then for every metric its last
        value (``last_<key>``) and, for metrics other than learning rate and gradient norm,
        its best (``best_<key>``: lowest for losses, highest otherwise).

        ``source`` reads the runs from another tracker the experiment logs to instead of
        runfleet's store: a name (``"trackio"``, ``"mlflow"``, ``"tensorboard"``: the
        experiment's sink of that name, else one with default settings) or a
        :class:`~runfleet.sinks.Sink`; that tracker's own data is read back (e.g. trackio's
        SQLite file), so the table shows what the tracker holds.
        """
        import pandas as pd

        from runfleet.api import Api

        runs: list[tuple[dict[str, Any], pd.DataFrame]] = []
        if isinstance(source, str) and source == "runfleet":
            with Api(self.home.root) as api:
                for r in self._existing_runs(api):
                    runs.append(({"id": r.id, "name": r.name, "status": r.status, **r.config},
                                 r.history()))
        else:
            sink = self._source_sink(source)
            for sr in sink.read_project(self.name):
                columns = {key: pd.Series(dict(points), dtype=object)
                           for key, points in sr.points.items()}
                history = pd.DataFrame(columns).sort_index() if columns else pd.DataFrame()
                config = {k: v for k, v in sr.config.items() if k not in ("parent",
                                                                          "parent_step")}
                runs.append(({"id": sr.run_id, "name": sr.name, "status": sr.status,
                              **config}, history))
        return pd.DataFrame([_result_row(head, history) for head, history in runs])

    def _source_sink(self, source: str | Sink) -> Sink:
        if isinstance(source, Sink):
            return source
        for sink in self.sinks:
            if sink.name == source:
                return sink
        (sink,) = resolve_sinks([source])
        return sink


def _result_row(head: dict[str, Any], history: pd.DataFrame) -> dict[str, Any]:
    """``head`` plus the last and best value of every metric column of ``history``."""
    import numpy as np
    import pandas as pd

    row = dict(head)
    for key in history.columns:
        if str(key).startswith("_") or key in _NOT_METRICS:
            continue
        values = pd.to_numeric(history[key], errors="coerce").dropna()
        if values.empty:
            continue
        row[f"last_{key}"] = float(values.iloc[-1])
        if key in _NO_BEST:
            continue
        lower = any(word in str(key) for word in _LOWER_IS_BETTER)
        row[f"best_{key}"] = float(np.min(values) if lower else np.max(values))
    return row


def _metrics_at_chunk_ends(store: Store, rid: int, run: EngineRun) -> dict[int, dict[str, float]]:
    """Each finished chunk's metrics as the controller saw them at its end (for stopping
    policies after a recovery): the last value of every numeric key up to the chunk's end."""
    import numpy as np

    out: dict[int, dict[str, float]] = {}
    series = [store.series(rid, info.key) for info in store.keys(rid)
              if not info.key.startswith("system/")]
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


def _expand(space: Any) -> tuple[str, list[Any]]:
    if isinstance(space, (GridSearch, RandomSearch)):
        trainer, configs = space.trainer, space.expand()
    elif isinstance(space, OpenConfig):
        trainer = "torch" if isinstance(space, TorchConfig) else "sft"
        configs = GridSearch(space, trainer).expand()
    else:
        raise TypeError(f"run_fit needs a GridSearch, RandomSearch, ModelConfig or TorchConfig,"
                        f" got {type(space).__name__}")
    if trainer not in TRAINERS:
        raise ValueError(f"trainer must be one of {TRAINERS}, got {trainer!r}")
    if not configs:
        raise SpaceError("the search space is empty")
    return trainer, configs


def _plan(trainer: str, config: Any, n_train: int, num_chunks: int, seed: int
          ) -> tuple[StepPlan, int | None]:
    """Validate one concrete config and plan its steps."""
    if trainer == "torch":
        if not isinstance(config, TorchConfig):
            raise ConfigError(f"trainer='torch' needs a TorchConfig, got {type(config).__name__}")
        args: Any = config
        per_device = int(config["per_device_train_batch_size"])
        accum = int(config["gradient_accumulation_steps"])
        epochs, max_steps = float(config["num_train_epochs"]), int(config["max_steps"])
        eval_steps = config["eval_steps"]
        if not float(config["learning_rate"]) > 0:
            raise ConfigError(f"learning_rate must be > 0, got {config['learning_rate']}")
    else:
        if not isinstance(config, ModelConfig):
            raise ConfigError(f"trainer={trainer!r} needs a ModelConfig, got "
                              f"{type(config).__name__}")
        if not config.model_name:
            raise ConfigError("model_name is required")
        wanted = _ARGS_FOR[trainer]
        targs = config.training_args or wanted()
        if not isinstance(targs, wanted):
            raise ConfigError(f"training_args: trainer={trainer!r} needs {wanted.__name__}, got "
                              f"{type(targs).__name__}")
        if config.peft_config is not None:
            if not isinstance(config.peft_config, FitConfig):
                raise ConfigError("peft_config must be a runfleet.fit.LoraConfig")
            try:
                config.peft_config.build()
            except ConfigError as exc:
                raise ConfigError(f"peft_config: {exc}") from exc
        try:
            args = targs.build(output_dir=os.devnull)
        except ConfigError as exc:
            raise ConfigError(f"training_args: {exc}") from exc
        if trainer == "grpo" and not config.reward_funcs:
            raise ConfigError("reward_funcs: GRPO needs at least one reward function")
        per_device = int(args.per_device_train_batch_size)
        accum = int(args.gradient_accumulation_steps)
        if trainer == "grpo":  # as in TRL, the batch counts completions, not prompts
            per_device = max(1, per_device // int(args.num_generations))
        epochs, max_steps = float(args.num_train_epochs), int(args.max_steps)
        eval_steps = args.eval_steps
        if not float(args.learning_rate) > 0:
            raise ConfigError(f"training_args.learning_rate must be > 0, got {args.learning_rate}")
    plan = StepPlan.build(num_examples=n_train, batch_size=per_device * accum, epochs=epochs,
                          max_steps=max_steps, num_chunks=num_chunks, seed=seed)
    if eval_steps is not None:
        eval_steps = int(eval_steps) if eval_steps >= 1 else max(1, round(eval_steps *
                                                                         plan.total_steps))
    return plan, eval_steps


def _worker_threads(devices: list[str]) -> int | None:
    """Torch threads per CPU worker: ``RUNFLEET_WORKER_THREADS``, else the cores shared out."""
    if devices[0] != "cpu":
        return None
    configured = os.environ.get("RUNFLEET_WORKER_THREADS")
    if configured:
        return max(1, int(configured))
    return max(1, (os.cpu_count() or 1) // len(devices))


def _devices(workers: int | None) -> list[str]:
    try:
        import torch

        gpus = torch.cuda.device_count()
    except ImportError:
        gpus = 0
    if workers is None:
        return [f"cuda:{i}" for i in range(gpus)] if gpus else ["cpu"]
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if gpus:
        return [f"cuda:{i % gpus}" for i in range(workers)]
    return ["cpu"] * workers
