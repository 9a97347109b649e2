"""``wandb.sweep`` and ``wandb.agent`` under :func:`runfleet.patch_wandb`.

Grid and random sweeps run in this process, one trial after another: ``agent`` calls the
function once per configuration; the ``wandb.init()`` inside gets the trial's parameters
merged over its own ``config``, the sweep id as ``group`` and the sweep's project. A
parameter is ``{"values": [...]}``, ``{"value": v}``, or for random sweeps
``{"min": a, "max": b}`` (integers when both are ints) with an optional ``distribution``
(``uniform``, ``int_uniform``, ``log_uniform_values``, ``q_uniform`` is not supported).
Bayesian sweeps, nested parameters and other distributions raise an error that points to
:class:`runfleet.GridSearch` / :class:`runfleet.RandomSearch` with ``Experiment.run_fit``,
runfleet's own (parallel) search.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from runfleet.errors import UsageError

_INSTEAD = ("use runfleet.GridSearch / runfleet.RandomSearch with Experiment.run_fit "
            "(see docs/engine.md), or a grid/random sweep with plain values, value or "
            "min/max parameters")
_DISTRIBUTIONS = ("uniform", "int_uniform", "log_uniform_values", "categorical", "constant")


@dataclass
class Sweep:
    """A registered sweep: its id, project, method and parameters."""

    id: str
    project: str | None
    method: str
    parameters: dict[str, dict[str, Any]]
    seed: int | None = None
    runs: list[str] = field(default_factory=list)


_sweeps: dict[str, Sweep] = {}
_local = threading.local()


def current_trial() -> tuple[Sweep, dict[str, Any]] | None:
    """The sweep and parameters of the trial ``agent`` is running now in this thread."""
    return getattr(_local, "trial", None)


def _unsupported(what: str) -> UsageError:
    return UsageError(f"wandb.sweep: {what} is not supported by runfleet's wandb shim; "
                      f"{_INSTEAD}")


def _check_parameter(method: str, name: str, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise _unsupported(f"parameter {name!r} must be a dict such as {{'values': [...]}}")
    spec = dict(spec)
    if "parameters" in spec:
        raise _unsupported(f"nested parameters ({name!r})")
    dist = spec.get("distribution")
    if dist is not None and dist not in _DISTRIBUTIONS:
        raise _unsupported(f"distribution {dist!r} of parameter {name!r}")
    if "value" in spec or "values" in spec:
        if "values" in spec and (not isinstance(spec["values"], (list, tuple))
                                 or not spec["values"]):
            raise UsageError(f"wandb.sweep: parameter {name!r}: values must be a non-empty "
                             f"list")
        return spec
    if "min" in spec and "max" in spec:
        if method == "grid":
            raise UsageError(f"wandb.sweep: a grid sweep needs values for parameter {name!r} "
                             f"(min/max ranges are for random sweeps)")
        if not spec["min"] <= spec["max"]:
            raise UsageError(f"wandb.sweep: parameter {name!r}: min must not exceed max")
        if dist == "log_uniform_values" and spec["min"] <= 0:
            raise UsageError(f"wandb.sweep: parameter {name!r}: log_uniform_values needs "
                             f"min > 0")
        return spec
    raise _unsupported(f"parameter {name!r} without values, value or min/max")


def sweep(sweep: Mapping[str, Any], entity: str | None = None, project: str | None = None,
          prior_runs: Any = None) -> str:
    """Register a sweep and return its id (to pass to :func:`agent`).

    ``sweep`` is wandb's sweep configuration: ``{"method": "grid" | "random",
    "parameters": {...}, "project": ..., "seed": ...}``; ``metric`` and ``name`` are
    accepted. Other methods and parameter kinds raise :class:`~runfleet.errors.UsageError`
    naming what to use instead.
    """
    if not isinstance(sweep, Mapping):
        raise TypeError(f"wandb.sweep() needs the sweep configuration as a dict, got "
                        f"{type(sweep).__name__}")
    method = sweep.get("method")
    if method not in ("grid", "random"):
        raise _unsupported(f"method {method!r}")
    params = sweep.get("parameters")
    if not isinstance(params, Mapping) or not params:
        raise UsageError("wandb.sweep: the configuration needs a non-empty 'parameters' dict")
    checked = {str(k): _check_parameter(method, str(k), v) for k, v in params.items()}
    sweep_id = "sweep-" + uuid.uuid4().hex[:8]
    _sweeps[sweep_id] = Sweep(sweep_id, project or sweep.get("project"), method, checked,
                              sweep.get("seed"))
    return sweep_id


def _grid(params: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    names = list(params)
    choices = [p["values"] if "values" in p else [p["value"]] for p in params.values()]
    for combo in itertools.product(*choices):
        yield dict(zip(names, combo, strict=True))


def _draw(rng: random.Random, spec: dict[str, Any]) -> Any:
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(list(spec["values"]))
    lo, hi, dist = spec["min"], spec["max"], spec.get("distribution")
    if dist == "log_uniform_values":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if dist == "int_uniform" or (dist is None and isinstance(lo, int) and isinstance(hi, int)
                                 and not isinstance(lo, bool)):
        return rng.randint(int(lo), int(hi))
    return rng.uniform(float(lo), float(hi))


def _random(params: dict[str, dict[str, Any]], seed: int | None) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    while True:
        yield {name: _draw(rng, spec) for name, spec in params.items()}


def agent(sweep_id: str, function: Callable[[], Any] | None = None,
          entity: str | None = None, project: str | None = None,
          count: int | None = None) -> None:
    """Run ``function`` once per configuration of sweep ``sweep_id``, in this process.

    A grid sweep runs every combination (at most ``count``); a random sweep needs
    ``count``. Inside ``function``, ``wandb.init()`` starts the trial's run and
    ``wandb.config`` holds the trial's parameters; a run the function leaves open is
    finished after it returns. An exception in ``function`` finishes its run as failed and
    propagates.
    """
    if function is None:
        raise UsageError("wandb.agent() needs function=: runfleet runs the trials in this "
                         "process (there is no sweep server to fetch a program from)")
    found = _sweeps.get(sweep_id)
    if found is None:
        raise UsageError(f"wandb.agent(): unknown sweep {sweep_id!r} (runfleet's sweeps live "
                         f"in the process that called wandb.sweep())")
    if found.method == "random" and count is None:
        raise UsageError("wandb.agent(): a random sweep needs count= (the number of trials)")
    if count is not None and count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if project is not None and found.project is None:
        found.project = project
    from runfleet.tracking import session

    trials = _grid(found.parameters) if found.method == "grid" \
        else _random(found.parameters, found.seed)
    for trial in itertools.islice(trials, count):
        _local.trial = (found, trial)
        try:
            function()
        except BaseException:
            run = session.active_run()
            if run is not None:
                run.finish(status="failed")
            raise
        finally:
            _local.trial = None
        run = session.active_run()
        if run is not None:
            run.finish()


__all__ = ["Sweep", "agent", "current_trial", "sweep"]
