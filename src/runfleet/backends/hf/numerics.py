"""Log-probabilities, micro-batches, finiteness checks and eval mode shared by the trainers."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from runfleet.backends.state import rng_state, set_rng_state
from runfleet.engine.backend import NonFiniteLossError
from runfleet.engine.spec import RunSpec


def token_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> torch.Tensor:
    """``log p(token t | tokens before t)`` for t = 1..T-1, shape ``[batch, T-1]``."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logits = logits[:, :-1].float()
    return -F.cross_entropy(logits.transpose(1, 2), input_ids[:, 1:], reduction="none")


def masked_logps(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor,
                                                                      torch.Tensor]:
    """(token log-probs, mask of trained tokens), both ``[batch, T-1]``."""
    logps = token_logps(model, batch["input_ids"], batch["attention_mask"])
    return logps, batch["loss_mask"][:, 1:].to(logps.dtype)


def micro_batches(indices: Sequence[int], parts: int) -> list[list[int]]:
    """``indices`` cut into at most ``parts`` contiguous micro-batches."""
    size = math.ceil(len(indices) / max(int(parts), 1))
    return [list(indices[i:i + size]) for i in range(0, len(indices), size)]


def check_finite(value: torch.Tensor | float, what: str, step: int, spec: RunSpec) -> None:
    """Raise :class:`NonFiniteLossError` if ``value`` is NaN or infinite."""
    number = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    if not math.isfinite(number):
        raise NonFiniteLossError(
            f"run {spec.run_id} ({spec.trainer}): {what} is {number} at step {step}; "
            "training diverged (try a lower learning_rate or check the data)")


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """``model`` in eval mode (no dropout), then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """Eval mode, no gradients, and the RNG state put back afterwards, so evaluating
    never changes what training does next."""
    saved = rng_state()
    try:
        with eval_mode(model), torch.no_grad():
            yield
    finally:
        set_rng_state(saved)

