"""``Experiment``: define a search space, train every config at once, compare results."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from runfleet.engine.chunking import StepPlan
from runfleet.engine.controller import Controller, EngineRun
from runfleet.engine.executor import Executor, LocalExecutor, WorkerSetup
from runfleet.engine.policy import FairRoundRobin, SchedulingPolicy
from runfleet.engine.progress import ProgressTable
from runfleet.engine.space import GridSearch, RandomSearch, SpaceError, flatten
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
from runfleet.store.base import PENDING
from runfleet.tracking.session import start_run

if TYPE_CHECKING:
    import pandas as pd

TRAINERS = ("sft", "dpo", "grpo", "torch")
_ARGS_FOR = {"sft": SFTConfig, "dpo": DPOConfig, "grpo": GRPOConfig}
_LOWER_IS_BETTER = ("loss",)
_NOT_METRICS = ("step", "epoch", "chunk")
_NO_BEST = ("learning_rate", "grad_norm")


class Experiment:
    """A named experiment: its runs are tracked in project ``name`` of the home.

    Example:
        >>> exp = Experiment("sft-demo")                                  # doctest: +SKIP
        >>> exp.run_fit(space, create_model_fn, train_ds, eval_ds, num_chunks=4)  # doctest: +SKIP
        >>> exp.results()                                                  # doctest: +SKIP
    """

    def __init__(self, name: str, dir: str | os.PathLike[str] | None = None,
                 trackers: Sequence[str] = ("runfleet",), group: str | None = None) -> None:
        if not name or "/" in name:
            raise ValueError(f"experiment name must be a non-empty name without '/', got {name!r}")
        unknown = [t for t in trackers if t != "runfleet"]
        if unknown:
            raise ValueError(f"trackers {unknown} are not available yet; runfleet's own store "
                             f"is always used")
        self.name = name
        self.home = Home.resolve(dir)
        self.group = group
        self.trackers = tuple(trackers)
        self.dir = self.home.root / "experiments" / name
        self.last_runs: list[EngineRun] = []
        self.last_controller: Controller | None = None

    @classmethod
    def attach(cls, name: str, dir: str | os.PathLike[str] | None = None) -> Experiment:
        """An existing experiment, to inspect (``runs``, ``results``) from another process."""
        exp = cls(name, dir=dir)
        if not (exp.dir / "experiment.json").exists():
            raise ValueError(f"no experiment {name!r} in {exp.home.root}")
        return exp

    # -- running --------------------------------------------------------------------------------
    def run_fit(self, space: Any, create_model_fn: Callable[..., Any], train_dataset: Any,
                eval_dataset: Any = None, num_chunks: int = 4, seed: int = 42,
                workers: int | None = None, progress: bool = True,
                policy: SchedulingPolicy | None = None,
                executor: Executor | None = None) -> pd.DataFrame:
        """Train every config of ``space`` at once, chunk by chunk; return :meth:`results`.

        ``space`` is a :class:`GridSearch`, a :class:`RandomSearch`, or one config.
        ``create_model_fn(config)`` gets the run's concrete config and returns
        ``(model, tokenizer)`` (HF trainers) or a model (``trainer="torch"``). Every config
        is validated, and the data split into ``num_chunks`` chunks per run, before any
        training starts; errors name the run and the key.
        """
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
        self._write_meta(num_chunks=num_chunks, seed=seed, trainer=trainer)
        runs: list[EngineRun] = []
        offset = len(self._existing_runs())
        for i, (spec, flat) in enumerate(specs):
            name = f"run-{offset + i + 1}"
            tracker = start_run(self.name, name=name, group=self.group or self.name,
                                config={**flat, "num_chunks": num_chunks, "seed": seed},
                                dir=self.home.root, system_metrics=False, status=PENDING)
            spec = RunSpec(run_id=tracker.id, trainer=spec.trainer, config=spec.config,
                           plan=spec.plan, seed=spec.seed, eval_steps=spec.eval_steps)
            runs.append(EngineRun(index=i, spec=spec, name=name, config=flat, tracker=tracker))
        self.last_runs = runs
        devices = _devices(workers)
        threads = _worker_threads(devices)
        setup = WorkerSetup(create_model_fn, train_dataset, eval_dataset,
                            str(self.dir / "checkpoints"), threads)
        executor = executor or LocalExecutor()
        table = ProgressTable(f"{self.name}: {len(runs)} runs x {num_chunks} chunks on "
                              f"{len(devices)} worker(s)", [r.config for r in runs],
                              enabled=progress)
        executor.start(setup, devices)
        controller = Controller(runs, executor, policy or FairRoundRobin(), table)
        self.last_controller = controller
        try:
            controller.run()
        except KeyboardInterrupt:
            for r in runs:
                if not r.terminal:
                    r.status = "stopped"
                    r.tracker.finish(status="stopped")
            raise
        finally:
            executor.shutdown()
        return self.results()

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

    def results(self) -> pd.DataFrame:
        """One row per run: id, name, status, config columns, then for every metric its last
        value (``last_<key>``) and, for metrics other than learning rate and gradient norm,
        its best (``best_<key>``: lowest for losses, highest otherwise)."""
        import numpy as np
        import pandas as pd

        from runfleet.api import Api

        rows = []
        with Api(self.home.root) as api:
            histories = [(r, r.history()) for r in self._existing_runs(api)]
        for r, history in histories:
            row: dict[str, Any] = {"id": r.id, "name": r.name, "status": r.status, **r.config}
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
            rows.append(row)
        return pd.DataFrame(rows)


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
