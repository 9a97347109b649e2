"""Optimizer, LR schedule and gradient steps shared by the trainer backends.

The schedule spans the run's total optimizer steps (not one chunk), so chunking never
changes the learning rate a step sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from runfleet.backends.state import cpu_copy


def make_optimizer(params: Iterable[Any], args: Any) -> Any:
    """AdamW over ``params`` with the learning rate, betas, epsilon and weight decay of
    ``args`` (a TRL/transformers training config or a :class:`runfleet.fit.TorchConfig`)."""
    import torch

    return torch.optim.AdamW(
        list(params), lr=float(args.learning_rate),
        betas=(float(getattr(args, "adam_beta1", 0.9)), float(getattr(args, "adam_beta2", 0.999))),
        eps=float(getattr(args, "adam_epsilon", 1e-8)),
        weight_decay=float(getattr(args, "weight_decay", 0.0)),
        foreach=False,  # the same kernels whatever the number of tensors: exact replays
    )


def warmup_steps(args: Any, total_steps: int) -> int:
    """Warmup length: ``warmup_steps`` (a fraction below 1 is a ratio of the total)."""
    value = getattr(args, "warmup_steps", 0) or 0
    if isinstance(value, float) and 0 < value < 1:
        return math.ceil(value * total_steps)
    ratio = getattr(args, "warmup_ratio", None)
    if not value and ratio:
        return math.ceil(float(ratio) * total_steps)
    return int(value)


def make_scheduler(optimizer: Any, args: Any, total_steps: int) -> Any:
    """The LR schedule named by ``args.lr_scheduler_type`` over ``total_steps`` steps."""
    from transformers import get_scheduler

    name = getattr(args, "lr_scheduler_type", "linear")
    name = getattr(name, "value", name)
    kwargs = getattr(args, "lr_scheduler_kwargs", None) or {}
    return get_scheduler(str(name), optimizer, num_warmup_steps=warmup_steps(args, total_steps),
                         num_training_steps=total_steps, scheduler_specific_kwargs=kwargs)


def clip_and_step(model_params: list[Any], optimizer: Any, scheduler: Any,
                  max_grad_norm: float | None) -> tuple[float, float]:
    """Clip gradients, step optimizer and schedule; return (grad_norm, lr used)."""
    import torch

    if max_grad_norm and max_grad_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(model_params, max_grad_norm)
    else:
        norm = torch.linalg.vector_norm(torch.stack([
            torch.linalg.vector_norm(p.grad.detach()) for p in model_params
            if p.grad is not None]))
    lr = float(optimizer.param_groups[0]["lr"])
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm), lr


def load_optimizer_state(optimizer: Any, saved: dict[str, Any], warm_start: bool) -> None:
    """Restore an optimizer's state from a copy of ``saved`` (the optimizer would keep the
    given tensors and update them in place, changing the caller's state, e.g. the worker's
    host RAM cache of checkpoints). A warm start keeps the per-parameter state (moments,
    step counts) but this run's own hyperparameters and learning rate."""
    saved = cpu_copy(saved)
    if warm_start:
        own = optimizer.state_dict()["param_groups"]
        theirs = [len(g["params"]) for g in saved["param_groups"]]
        ours = [len(g["params"]) for g in own]
        if theirs != ours:
            raise ValueError(f"warm start needs the parent's parameters: its optimizer has "
                             f"{theirs} parameters per group, this run {ours}")
        saved["param_groups"] = own
    optimizer.load_state_dict(saved)
