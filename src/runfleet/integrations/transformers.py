"""``RunfleetCallback``: log any ``transformers.Trainer`` (or TRL trainer) run to runfleet.

Example:
    >>> from transformers import Trainer, TrainingArguments              # doctest: +SKIP
    >>> from runfleet.integrations.transformers import RunfleetCallback  # doctest: +SKIP
    >>> trainer = Trainer(model, TrainingArguments("out", report_to="none"),  # doctest: +SKIP
    ...                   train_dataset=ds, callbacks=[RunfleetCallback(project="my-exp")])
    >>> trainer.train()                                                   # doctest: +SKIP

The run's config holds the training arguments (``args.*``) and the model config
(``model.*``); every ``Trainer`` log (loss, learning_rate, grad_norm, epoch, eval metrics)
is logged at ``state.global_step``; the run finishes when training ends. If training
raises, the run is left ``running`` and readers report it ``crashed`` once its process is
gone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from runfleet.sinks import Sink, resolve_sinks
from runfleet.tracking.config import to_config_value
from runfleet.tracking.run import Run
from runfleet.tracking.session import start_run

_SKIP_LOG_KEYS = ("total_flos",)


class RunfleetCallback(TrainerCallback):
    """A ``TrainerCallback`` that tracks the training run in runfleet.

    Args:
        project: runfleet project (default: ``RUNFLEET_PROJECT`` or ``huggingface``).
        name: run name (default: the Trainer's ``run_name`` when set, else generated).
        dir: runfleet home (default: ``RUNFLEET_DIR`` or ``~/.runfleet``).
        group, tags, notes: as in :func:`runfleet.init`.
        config: extra config values to store with the run.
        sinks: also send the run to these trackers (``"trackio"``, ``"mlflow"``,
            ``"tensorboard"`` or :class:`runfleet.sinks.Sink` objects), as in
            :func:`runfleet.init`.
    """

    def __init__(self, project: str | None = None, name: str | None = None,
                 dir: str | os.PathLike[str] | None = None, group: str | None = None,
                 tags: list[str] | None = None, notes: str | None = None,
                 config: dict[str, Any] | None = None,
                 sinks: Sequence[Sink | str] | None = None) -> None:
        self.project = project or os.environ.get("RUNFLEET_PROJECT") or "huggingface"
        self.name = name
        self.dir = dir
        self.group = group
        self.tags = tags
        self.notes = notes
        self.extra_config = dict(config or {})
        self.sinks = resolve_sinks(sinks)  # unknown names fail here, before training
        self.run: Run | None = None

    def _start(self, args: Any, state: Any, model: Any) -> Run:
        config: dict[str, Any] = {}
        for key, value in (args.to_dict() if hasattr(args, "to_dict") else {}).items():
            config[f"args.{key}"] = to_config_value(value)
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_dict"):
            for key, value in model_config.to_dict().items():
                config[f"model.{key}"] = to_config_value(value)
        config.update(self.extra_config)
        run_name = self.name
        trainer_name = getattr(args, "run_name", None)
        if run_name is None and trainer_name and trainer_name != getattr(args, "output_dir", None):
            run_name = str(trainer_name)
        self.run = start_run(self.project, name=run_name, group=self.group, tags=self.tags,
                             notes=self.notes, config=config, dir=self.dir,
                             system_metrics=None, sinks=self.sinks)
        return self.run

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        """Start the run (on the main process only)."""
        if state.is_world_process_zero and self.run is None:
            self._start(args, state, model)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               model: Any = None, **kwargs: Any) -> None:
        """Log the Trainer's numbers at its global step."""
        if not state.is_world_process_zero or not logs:
            return
        run = self.run or self._start(args, state, model)
        values = {k: v for k, v in logs.items()
                  if k not in _SKIP_LOG_KEYS and isinstance(v, (int, float))}
        if values:
            run.log(values, step=int(state.global_step))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Record the final summary values the Trainer keeps, and finish the run."""
        if self.run is None or not state.is_world_process_zero:
            return
        flos = getattr(state, "total_flos", None)
        if isinstance(flos, (int, float)) and math.isfinite(flos):
            self.run.summary["total_flos"] = float(flos)
        self.run.finish()
        self.run = None
