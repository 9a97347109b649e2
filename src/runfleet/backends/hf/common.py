"""What the SFT, DPO and GRPO backends share: planning from their TRL config class, the
warm-start rule, and a run's state and release (all through :class:`RunModel`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from runfleet.backends.hf.run_model import RunModel
from runfleet.backends.hf.trl_args import plan_run
from runfleet.engine.backend import Backend, RunPlan
from runfleet.fit.configs import FitConfig

# A warm clone copies its parent's trainable tensors: it must have the same ones.
_SHAPE_KEYS = ("model_name", "peft_config.")


class HFBackend(Backend):
    """Base of the HF trainers: ``trainer`` (its name in messages) and ``args_class`` (the
    :mod:`runfleet.fit` wrapper of its TRL config) are all a trainer declares besides its
    recipe (``open``, ``train_step``, ``evaluate``), which it writes out in full."""

    trainer: ClassVar[str]
    args_class: ClassVar[type[FitConfig]]
    run: RunModel

    @classmethod
    def plan(cls, config: Any, num_examples: int, num_chunks: int, seed: int) -> RunPlan:
        """See :meth:`Backend.plan`: a :class:`~runfleet.fit.ModelConfig` whose
        ``training_args`` is an ``args_class``."""
        return plan_run(cls.trainer, cls.args_class, config, num_examples, num_chunks, seed)

    @classmethod
    def check_warm_start(cls, parent: Mapping[str, Any], child: Mapping[str, Any]) -> None:
        """A warm clone keeps its parent's model and LoRA structure (the tensors it copies)."""
        changed = [k for k in sorted(set(parent) | set(child))
                   if k.startswith(_SHAPE_KEYS) and parent.get(k) != child.get(k)]
        if changed:
            raise ValueError("a warm clone needs the parent's model and adapter shapes; "
                             f"changed: {', '.join(changed)} (clone cold)")

    def state(self) -> dict[str, Any]:
        """Adapter or full weights, optimizer, schedule and RNG, on the CPU."""
        return self.run.state()

    def close(self) -> None:
        """Take the run off the shared base (nothing to do if it never got on)."""
        run = self.__dict__.pop("run", None)
        if run is not None:
            run.close()
