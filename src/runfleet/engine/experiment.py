"""``Experiment``: define a search space, train every config at once, compare results.

The front door. Planning is in :mod:`~runfleet.engine.planning`, the controller in
:mod:`~runfleet.engine.controller`, what a restarted controller needs in
:mod:`~runfleet.engine.recovery`, the answer tables in :mod:`~runfleet.engine.results`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runfleet.engine import evals, planning, recovery, results
from runfleet.engine.checkpoint import CheckpointStore, LocalCheckpointStore
from runfleet.engine.controller import Controller, EngineError, EngineRun, OpError
from runfleet.engine.executor import Executor, make_executor
from runfleet.engine.final import save_final_model
from runfleet.engine.lease import META_FILE, Lease, LeaseHeldError, experiment_dir
from runfleet.engine.ops import OpRejectedError, request_op, wait_op
from runfleet.engine.policy import FairRoundRobin, SchedulingPolicy, StoppingPolicy, stopping_policy
from runfleet.engine.progress import ProgressTable
from runfleet.engine.spec import RunSpec, WorkerSetup
from runfleet.home import Home
from runfleet.sinks import Sink, describe, rebuild, resolve_sinks
from runfleet.sinks.fanout import flush_all as flush_sinks
from runfleet.sinks.fanout import sink_timeout
from runfleet.store.base import OpKind, OpRecord, OpStatus, RunStatus
from runfleet.tracking import homes
from runfleet.tracking.names import new_run_id
from runfleet.tracking.session import start_run

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("runfleet")

Stopping = StoppingPolicy | str | Mapping[str, Any] | None


class Experiment:
    """A named experiment: its runs are tracked in project ``name`` of the home.

    ``trackers`` names where the runs are tracked besides runfleet's store, which always
    gets everything and holds the control state: ``"trackio"``, ``"mlflow"``,
    ``"tensorboard"`` (default settings; any name registered in the ``runfleet.sinks``
    entry-point group) or :class:`runfleet.sinks.Sink` objects such as
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
        self.dir = experiment_dir(self.home.root, name)
        self._lease = Lease(self.dir)
        self.last_runs: list[EngineRun] = []
        self.last_controller: Controller | None = None
        self._saved: recovery.SavedExperiment | None = None
        self._states: CheckpointStore = self.checkpoints()
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
        if not (exp.dir / META_FILE).exists():
            raise ValueError(f"no experiment {name!r} in {exp.home.root}")
        if trackers is None:  # rebuilt when first needed: inspecting needs no tracker
            meta = json.loads((exp.dir / META_FILE).read_text())
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

    def checkpoints(self) -> CheckpointStore:
        """The experiment's checkpoint store (files under its folder)."""
        return LocalCheckpointStore(self.dir / "checkpoints")

    def rag_cache_dir(self) -> Path:
        """Where RAG stage artefacts are cached: what :meth:`run_evals` recorded, else
        ``<home>/rag-cache`` (shared by every experiment of the home)."""
        meta = self.dir / META_FILE
        if meta.exists():
            recorded = json.loads(meta.read_text()).get("rag_cache")
            if recorded:
                return Path(recorded)
        return self.home.root / "rag-cache"

    # -- running --------------------------------------------------------------------------------
    def run_fit(self, space: Any, create_model_fn: Callable[..., Any], train_dataset: Any,
                eval_dataset: Any = None, num_chunks: int = 4, seed: int = 42,
                workers: int | None = None, progress: bool = True,
                policy: SchedulingPolicy | None = None, stopping: Stopping = None,
                resume: bool = False, executor: Executor | str | None = None,
                save_final: bool = False) -> pd.DataFrame:
        """Train every config of ``space`` at once, chunk by chunk; return :meth:`results`.

        ``space`` is a :class:`GridSearch`, a :class:`RandomSearch`, or one config.
        ``create_model_fn(config)`` gets the run's concrete config and returns
        ``(model, tokenizer)`` (HF trainers) or a model (``trainer="torch"``). Every config
        is validated by its trainer's backend, and the data split into ``num_chunks``
        chunks per run, before any training starts; errors name the run and the key.

        ``executor`` runs the workers: None or ``"local"`` for processes on this machine
        (``workers`` of them: None means one per GPU, else one on the CPU), another
        registered name, or an :class:`~runfleet.engine.executor.Executor`. ``stopping``
        stops runs early at chunk boundaries: a policy
        (:mod:`runfleet.engine.stopping`), a registered name, or ``{"policy": name, ...}``.
        With ``resume=True`` an experiment that was interrupted (even by ``kill -9``)
        continues where it stopped instead of starting new runs (see :meth:`resume_all`).

        While it runs, other processes can control it: ``Experiment.attach(name).stop(id)``,
        ``runfleet stop ID``, or the dashboard's buttons.

        With ``save_final=True`` each run that completes logs its final weights (the
        adapter for LoRA, else the model) as the artefact ``model-<run id>`` of type
        ``model`` (see :mod:`runfleet.engine.final`); a resumed experiment keeps doing so.
        """
        self._check_not_driven()
        if resume and (self.dir / recovery.STATE_FILE).exists():
            return self.resume_all(workers=workers, progress=progress, executor=executor)
        trainer, configs = planning.expand(space, task="fit")
        setup = WorkerSetup(create_model_fn, train_dataset, eval_dataset, self.checkpoints(),
                            trainer)
        return self._start(trainer, configs, setup, len(train_dataset), num_chunks, seed,
                           policy, stopping, executor, workers, progress,
                           save_final=save_final)

    def run_evals(self, space: Any, corpus: Any, queries: Any, qrels: Any = None,
                  answers: Any = None, num_shards: int = 8, seed: int = 0,
                  workers: int | None = None, progress: bool = True,
                  policy: SchedulingPolicy | None = None, stopping: Stopping = None,
                  resume: bool = False, executor: Executor | str | None = None,
                  cache_dir: str | os.PathLike[str] | None = None) -> pd.DataFrame:
        """Evaluate every RAG config of ``space`` at once, shard by shard; return
        :meth:`results` (per metric its mean and 95% interval over the whole eval set).

        ``corpus`` (``_id``, ``text``, optional ``title``), ``queries`` (``_id``, ``text``),
        ``qrels`` (``{query_id: {doc_id: grade}}``) and ``answers`` (``{query_id:
        [reference, ...]}``) may be lists of dicts, pandas DataFrames or
        ``datasets.Dataset`` s; :func:`runfleet.rag.load_beir` reads a BEIR folder. They are
        checked before any work. The queries are shuffled once with ``seed`` and cut into
        ``num_shards`` shards: every config sees them in the same order, so configs compare
        query by query. The unit of work is (run, next shard), on the same controller,
        executor, ops and progress table as :meth:`run_fit`; stop, resume, delete and
        clone (any key, chunker and embedder included) work the same way.

        Passages, embeddings and indexes are computed once per distinct (corpus, chunker)
        and (passages, embedder) and kept under ``cache_dir`` (default
        ``<home>/rag-cache``), where a resumed run, a clone and later experiments find them
        (:meth:`stage_stats`).
        """
        from runfleet.rag.data import eval_set
        from runfleet.rag.inputs import RagInputs

        self._check_not_driven()
        if resume and (self.dir / recovery.STATE_FILE).exists():
            return self.resume_all(workers=workers, progress=progress, executor=executor)
        trainer, configs = planning.expand(space, task="eval")
        data = RagInputs(eval_set(corpus, queries, qrels=qrels, answers=answers),
                         Path(cache_dir) if cache_dir is not None else self.rag_cache_dir(),
                         self.name)
        setup = WorkerSetup(None, data, data, self.checkpoints(), trainer)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_meta(rag_cache=str(data.cache_dir))
        return self._start(trainer, configs, setup, len(data), num_shards, seed, policy,
                           stopping, executor, workers, progress)

    def _start(self, trainer: str, configs: list[Any], setup: WorkerSetup, num_examples: int,
               num_chunks: int, seed: int, policy: SchedulingPolicy | None,
               stopping: Stopping, executor: Executor | str | None, workers: int | None,
               progress: bool, save_final: bool = False) -> pd.DataFrame:
        """Plan every config, start a tracked run for each, and drive them."""
        planned = planning.plan_runs(trainer, configs, num_examples, num_chunks, seed)
        stopping_obj = stopping_policy(stopping) if stopping is not None else None
        executor_obj = make_executor(executor, workers)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_meta(trainer=trainer, trackers=[describe(t) for t in self.trackers])
        runs: list[EngineRun] = []
        offset = len(self._existing_run_ids())
        for i, run in enumerate(planned):
            name = f"run-{offset + i + 1}"
            tracker = start_run(self.name, name=name, group=self.group or self.name,
                                config=planning.tracked_config(run, num_chunks, seed),
                                dir=self.home.root, system_metrics=False,
                                status=RunStatus.PENDING, sinks=self.sinks, wait_sinks=False)
            spec = RunSpec(run_id=tracker.id, trainer=trainer, config=run.config,
                           plan=run.plan.steps, seed=seed, eval_steps=run.plan.eval_steps)
            runs.append(EngineRun(index=i, spec=spec, name=name, config=run.flat,
                                  tracker=tracker))
        saved = recovery.SavedExperiment(setup, trainer, num_chunks, seed, policy,
                                         stopping_obj, [recovery.SavedRun.of(r) for r in runs],
                                         save_final=save_final)
        return self._drive(saved, runs, progress, executor_obj)

    def resume_all(self, workers: int | None = None, progress: bool = True,
                   executor: Executor | str | None = None) -> pd.DataFrame:
        """Continue every unfinished run from its last checkpoint (after a crash, a
        ``kill -9`` of the controller, or runs left stopped), applying pending ops.

        Nothing already logged is logged again: each run restarts from the step of its
        last recorded checkpoint and steps already in the tracker are skipped.
        """
        self._check_not_driven()
        saved = recovery.load(self.dir, self.name)
        executor_obj = make_executor(executor, workers)
        runs = recovery.reopen_runs(self.name, self.home.root, saved,
                                    homes.get(self.home).store,
                                    executor_obj.checkpoint_store(self.checkpoints()),
                                    self.sinks)
        return self._drive(saved, runs, progress, executor_obj)

    def _drive(self, saved: recovery.SavedExperiment, runs: list[EngineRun], progress: bool,
               executor: Executor) -> pd.DataFrame:
        self.last_runs = runs
        self._saved = saved
        recovery.save(self.dir, saved)
        # where run states live for this drive: the executor's choice (its workers must
        # reach it); engine.pkl keeps the experiment's own folder
        self._states = executor.checkpoint_store(saved.setup.checkpoints)
        table = ProgressTable(f"{self.name}: {len(runs)} runs x {saved.num_chunks} chunks on "
                              f"{executor.describe()}", [r.config for r in runs],
                              enabled=progress)
        controller = Controller(
            runs, executor, saved.policy or FairRoundRobin(), table, project=self.name,
            store=homes.get(self.home).store, checkpoints=self._states,
            stopping=saved.stopping, clone_factory=self._clone,
            on_complete=self._final_saver(saved))
        self.last_controller = controller
        self._take_lease()
        try:
            executor.start(dataclasses.replace(saved.setup, checkpoints=self._states))
            controller.run()
        except KeyboardInterrupt:
            for r in runs:
                if not r.terminal and r.status != RunStatus.STOPPED:
                    r.status = RunStatus.STOPPED
                    r.tracker.set_status(RunStatus.STOPPED)
            raise
        finally:
            executor.shutdown()
            self._lease.release()
            for r in runs:
                r.tracker.end_sinks(r.status)  # runs left stopped end in the sinks too
                r.tracker.flush()
            if self.sinks:
                if not flush_sinks(sink_timeout()):
                    logger.warning("a tracking sink did not take everything within %s s; "
                                   "runfleet's store has it all", sink_timeout())
                homes.get(self.home).writer.flush()  # sink failures are alerts on the runs
        return self.results()

    def _final_saver(self, saved: recovery.SavedExperiment
                     ) -> Callable[[EngineRun], None] | None:
        """What the controller calls for a completed run: log its final weights as an
        artefact when the experiment was started with ``save_final=True``."""
        if not getattr(saved, "save_final", False):  # engine.pkl of an older runfleet
            return None
        states = self._states
        return lambda run: save_final_model(run, states, saved.trainer)

    def _check_not_driven(self) -> None:
        """Refuse to drive the experiment while another live process drives it."""
        try:
            self._lease.check_free()
        except LeaseHeldError as exc:
            raise EngineError(f"experiment {self.name!r} is already driven by process {exc}; "
                              f"control it with Experiment.attach({self.name!r}) instead of "
                              f"running it twice") from None

    def _take_lease(self) -> None:
        """Claim the experiment for this process."""
        self._check_not_driven()
        self._lease.take()

    def _clone(self, parent: EngineRun, op: OpRecord) -> EngineRun:
        """Build a validated clone of ``parent`` for a clone op (raise OpError if invalid)."""
        saved = self._saved
        assert saved is not None
        changes = dict(op.args.get("changes") or {})
        warm = bool(op.args.get("warm_start", False))
        if warm and parent.state_key is None:
            raise OpError(f"run {parent.name} has no checkpoint yet (no chunk finished):"
                          f" clone it cold, or warm once a chunk is done")
        try:
            planned = planning.plan_clone(saved.trainer, parent.spec.config, parent.config,
                                          changes, warm, len(saved.setup.train_dataset),
                                          saved.num_chunks, saved.seed)
        except ValueError as exc:
            raise OpError(str(exc)) from exc
        child_id = new_run_id()
        warm_key = None
        if warm:
            assert parent.state_key is not None
            warm_key = f"{child_id}/warm-start"
            self._states.copy(parent.state_key, warm_key)
        clones = sum(1 for r in saved.runs if r.name.startswith(parent.name + ".c"))
        name = str(op.args.get("name") or f"{parent.name}.c{clones + 1}")
        tracker = start_run(self.name, id=child_id, name=name, group=self.group or self.name,
                            config=planning.tracked_config(planned, saved.num_chunks,
                                                           saved.seed, warm_start=warm),
                            dir=self.home.root, system_metrics=False,
                            status=RunStatus.PENDING, parent=parent.spec.run_id,
                            parent_step=parent.next_step, sinks=self.sinks, wait_sinks=False)
        spec = RunSpec(run_id=child_id, trainer=saved.trainer, config=planned.config,
                       plan=planned.plan.steps, seed=saved.seed,
                       eval_steps=planned.plan.eval_steps, warm_start=warm_key)
        child = EngineRun(index=0, spec=spec, name=name, config=planned.flat, tracker=tracker)
        saved.runs.append(recovery.SavedRun.of(child))
        recovery.save(self.dir, saved)
        return child

    # -- control (any process) ------------------------------------------------------------------
    def controller_alive(self) -> bool:
        """Whether a controller is driving this experiment right now (on this host)."""
        return self._lease.alive()

    def _request(self, kind: OpKind, run_id: str, args: dict[str, Any], wait: bool,
                 timeout: float | None, source: str | None) -> OpRecord:
        op = request_op(self.home, self.name, kind, run_id, args,
                        source or ("attach" if self._attached else "python"))
        if not wait or not self.controller_alive():
            return op
        op = wait_op(self.home, op.id, timeout, while_alive=self.controller_alive)
        if op.status == OpStatus.REJECTED:
            raise OpRejectedError(op)
        return op

    def stop(self, run_id: str, wait: bool = True, timeout: float | None = None,
             source: str | None = None) -> OpRecord:
        """Stop a run (within one training step); its state is kept for :meth:`resume`.

        Writes a ``stop`` op; with ``wait`` (and a controller running) returns once it is
        applied, raising :class:`OpRejectedError` with the reason if it is rejected (or
        returns it still pending after ``timeout`` seconds, or when the controller stops
        first). Without a running controller the op stays pending until one runs
        (``run_fit(..., resume=True)`` or :meth:`resume_all`).
        """
        return self._request(OpKind.STOP, run_id, {}, wait, timeout, source)

    def resume(self, run_id: str, wait: bool = True, timeout: float | None = None,
               source: str | None = None) -> OpRecord:
        """Resume a stopped run exactly where it stopped (see :meth:`stop`)."""
        return self._request(OpKind.RESUME, run_id, {}, wait, timeout, source)

    def delete(self, run_id: str, purge: bool = False, wait: bool = True,
               timeout: float | None = None, source: str | None = None) -> OpRecord:
        """Delete a run: its state leaves memory and disk and it is hidden from listings.

        Its tracking data is kept (``Api().runs(..., include_deleted=True)``) unless
        ``purge``.
        """
        return self._request(OpKind.DELETE, run_id, {"purge": purge}, wait, timeout, source)

    def clone(self, run_id: str, changes: dict[str, Any] | None = None,
              warm_start: bool = False, name: str | None = None, wait: bool = True,
              timeout: float | None = None, source: str | None = None) -> str | OpRecord:
        """Clone a run with ``changes`` (``{"training_args.learning_rate": 2e-4}``).

        The clone's config is validated before it is accepted. ``warm_start`` starts it
        from the parent's latest weights and optimizer state (same model and adapter
        shapes); otherwise it starts from scratch. Returns the new run's id once applied
        (with ``wait``), else the pending op.
        """
        args: dict[str, Any] = {"changes": dict(changes or {}), "warm_start": warm_start}
        if name:
            args["name"] = name
        op = self._request(OpKind.CLONE, run_id, args, wait, timeout, source)
        return str(op.result["run_id"]) if op.status == OpStatus.APPLIED else op

    def ops(self) -> list[OpRecord]:
        """Every control op of the experiment, oldest first (the audit trail)."""
        return homes.get(self.home).store.ops(self.name)

    def _write_meta(self, **fields: Any) -> None:
        path = self.dir / META_FILE
        meta = json.loads(path.read_text()) if path.exists() else {"name": self.name,
                                                                    "created": time.time()}
        meta.update(fields)
        path.write_text(json.dumps(meta, indent=2))

    def _existing_run_ids(self) -> list[str]:
        from runfleet.api import Api

        with Api(self.home.root) as api:
            return [r.id for r in results.experiment_runs(api, self.name)]

    # -- inspecting -------------------------------------------------------------------------------
    def runs(self) -> pd.DataFrame:
        """One row per run: ``id, name, status, parent, step, chunks_done, num_chunks`` and
        the run's config columns."""
        return results.runs_table(self.home.root, self.name)

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
        if isinstance(source, str) and source == "runfleet":
            return results.results_table(self.home.root, self.name)
        return results.results_from_sink(self._source_sink(source), self.name)

    def rankings(self, run_id: str) -> pd.DataFrame:
        """An eval run's document rankings: ``query_id, doc_id, rank, score`` (rank 1 is
        best), for every query done so far."""
        return evals.rankings(self.home.root, self.name, run_id)

    def per_query(self, run_id: str) -> pd.DataFrame:
        """An eval run's per-query table: query id, its metrics, the passages retrieved and
        the answer, for every query done so far."""
        return evals.per_query(self.home.root, self.name, run_id)

    def compare(self, run_a: str, run_b: str, metric: str) -> dict[str, float]:
        """The mean of per-query differences ``metric(a) - metric(b)`` over the queries both
        runs have done (the same queries in the same order), with its 95% interval for
        the whole eval set: ``{"mean", "ci_low", "ci_high", "n", "population"}``."""
        return evals.compare(self.home.root, self.name, run_a, run_b, metric)

    def stage_stats(self) -> pd.DataFrame:
        """Per RAG stage artefact (passages, embeddings, indexes ...): ``stage, key,
        computed, reused, seconds`` (seconds spent computing it)."""
        return evals.stage_stats(self.rag_cache_dir(), self.name)

    def _source_sink(self, source: str | Sink) -> Sink:
        if isinstance(source, Sink):
            return source
        for sink in self.sinks:
            if sink.name == source:
                return sink
        (sink,) = resolve_sinks([source])
        return sink
