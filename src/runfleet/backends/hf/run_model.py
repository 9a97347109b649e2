"""One run on the shared base: its trainable part, optimizer and LR schedule, and its state.

:class:`RunModel` puts a run on a :class:`~runfleet.backends.hf.slots.SharedBase` (its LoRA
adapter slot, or its full weights in the module), builds the optimizer over the trainable
parameters in module order and the schedule over the run's total steps, and restores a
saved state with the RNG last, so a resumed run continues exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from runfleet.backends.hf.numerics import eval_mode
from runfleet.backends.hf.slots import SharedBase, check_lora_config, load_adapter
from runfleet.backends.optim import (
    clip_and_step,
    load_optimizer_state,
    make_optimizer,
    make_scheduler,
)
from runfleet.backends.state import cpu_copy, rng_state, seed_everything, set_rng_state
from runfleet.engine.spec import RunSpec


class RunModel:
    """One run on the shared base: its LoRA adapter slot (or its full weights in the
    module), optimizer over the trainable parameters in module order, and LR schedule.

    ``state`` is None for a fresh run, a saved state to resume, or a parent's state with
    ``"warm_start": True`` (a warm clone): then the run starts from the parent's weights and
    optimizer state with its own fresh LR schedule and RNG seeded from ``spec.seed``.
    """

    def __init__(self, spec: RunSpec, args: Any, base: SharedBase,
                 state: dict[str, Any] | None) -> None:
        lora = spec.config["peft_config"]
        self.base, self.args = base, args
        self.is_lora = lora is not None
        warm = bool(state is not None and state.get("warm_start"))
        kind = "lora" if self.is_lora else "full"
        if state is not None and state["kind"] != kind:
            whose = "the parent's" if warm else "saved"
            raise ValueError(f"run {spec.run_id}: {whose} state is {state['kind']} weights, "
                             f"but the config asks for {kind} fine-tuning")
        if self.is_lora:
            cfg = lora.build() if hasattr(lora, "build") else lora
            check_lora_config(cfg)
            self.slot = base.lora_slot(cfg, seed=spec.seed if state is None else None)
            if state is not None:
                load_adapter(self.slot, state["weights"], warm_start=warm, run_id=spec.run_id)
            self.model = base.peft
            self.params = self.slot.params
        else:
            base.drop_adapters()
            base.ensure_pristine_copy()
            if state is not None:
                base.model.load_state_dict(state["weights"])
            else:
                base.restore_pristine()
                seed_everything(spec.seed)  # dropout draws random numbers
            base.dirty = True
            self.model = base.model
            self.model.requires_grad_(True)
            self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, args)
        self.scheduler = make_scheduler(self.optimizer, args, spec.plan.total_steps)
        if state is not None:
            load_optimizer_state(self.optimizer, state["optimizer"], warm_start=warm)
        if warm:
            seed_everything(spec.seed)  # a run of its own: fresh schedule (above) and RNG
        elif state is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])  # last, so nothing above moves it
        self.model.train()

    def step(self) -> tuple[float, float]:
        """Clip, step optimizer and schedule; return (grad_norm, learning rate used)."""
        return clip_and_step(self.params, self.optimizer, self.scheduler, self.args.max_grad_norm)

    @contextmanager
    def reference(self) -> Iterator[Any]:
        """The reference policy in eval mode without gradients: the base with the adapter
        disabled (LoRA) or a frozen pristine copy (full fine-tuning)."""
        with torch.no_grad():
            if self.is_lora:
                with eval_mode(self.model), self.model.disable_adapter():
                    yield self.model
            else:
                yield frozen_reference(self.base)

    def state(self) -> dict[str, Any]:
        """CPU copies of the trainable weights, optimizer, schedule and RNG."""
        weights = self.slot.tensors if self.is_lora else self.model.state_dict()
        return {"kind": "lora" if self.is_lora else "full", "weights": cpu_copy(weights),
                "optimizer": cpu_copy(self.optimizer.state_dict()),
                "scheduler": self.scheduler.state_dict(), "rng": rng_state()}

    def close(self) -> None:
        """Take the run off the base: its adapter slot stays for the next run of the same
        structure (which overwrites it), or the module's weights are frozen (the next run
        replaces them)."""
        self.optimizer.zero_grad(set_to_none=True)
        if not self.is_lora:
            self.model.requires_grad_(False)
        del self.optimizer, self.scheduler, self.params, self.model


def frozen_reference(base: SharedBase) -> Any:
    """A frozen eval-mode copy of the pristine base (made once per worker and model)."""
    if base.reference is None:
        ref = copy.deepcopy(base.model)
        if base.dirty:
            assert base.pristine is not None
            ref.load_state_dict(base.pristine)
        base.reference = ref.requires_grad_(False).eval()
    return base.reference

