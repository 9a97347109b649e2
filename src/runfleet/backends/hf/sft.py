"""SFT, the recipe: supervised fine-tuning, the mean next-token loss over the trained tokens.

``open`` loads the worker's shared base, tokenizes rows lazily (once per worker) and puts
the run's adapter or weights on it; ``train_step`` forwards and backwards the step's rows in
``gradient_accumulation_steps`` micro-batches, checks the loss is finite, clips and steps;
``evaluate`` computes the token-weighted ``eval_loss`` with the RNG put back afterwards, plus
``compute_metrics`` on greedy generations. Honoured ``SFTConfig`` settings beyond the common
ones: ``max_length``, ``completion_only_loss``, ``dataset_text_field`` (``packing`` and
``assistant_only_loss`` are refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from runfleet.backends.hf.common import HFBackend
from runfleet.backends.hf.data import (
    TokenCache,
    Tokens,
    check_columns,
    collate,
    function_key,
    has_rows,
    sft_tokens,
    token_cache,
)
from runfleet.backends.hf.generation import generation_metrics
from runfleet.backends.hf.numerics import check_finite, evaluating, masked_logps, micro_batches
from runfleet.backends.hf.run_model import RunModel
from runfleet.backends.hf.slots import shared_base
from runfleet.backends.hf.trl_args import training_args
from runfleet.fit.configs import SFTConfig


class SFTBackend(HFBackend):
    """Supervised fine-tuning: mean next-token loss over the trained tokens."""

    trainer = "sft"
    args_class = SFTConfig

    def open(self, state: dict[str, Any] | None) -> None:
        """Load the base, tokenize lazily, put the run's adapter or weights on the device."""
        config, res = self.spec.config, self.resources
        self.args = args = training_args(config, self.args_class)
        for option in ("packing", "assistant_only_loss"):
            if getattr(args, option, False):
                raise ValueError(f"SFTConfig({option}=True) is not supported by runfleet's "
                                 "SFT backend yet; leave it False")
        check_columns(res.train_dataset, "sft", config, args)
        self.base = shared_base(res, config)
        tokenizer, eos = self.base.tokenizer, self.base.eos_id
        whole_text = args.completion_only_loss is False  # None (default) means True

        def tokenize(row: dict[str, Any]) -> Tokens:
            ids, mask = sft_tokens(row, tokenizer, eos, config["formatting_func"],
                                   args.dataset_text_field)
            return (ids, [1] * len(ids)) if whole_text else (ids, mask)

        key = ("sft", config["model_name"], function_key(config["formatting_func"]),
               args.dataset_text_field, whole_text)
        self.train_rows = token_cache(res, key, res.train_dataset, tokenize)
        self.eval_rows = (token_cache(res, key, res.eval_dataset, tokenize)
                          if has_rows(res.eval_dataset) else None)
        self.run = RunModel(self.spec, self.args, self.base, state)

    def _batch(self, rows: TokenCache, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return collate([rows[i] for i in indices], self.args.max_length, self.base.pad_id,
                       self.resources.device)

    def train_step(self, step: int, indices: list[int]) -> dict[str, Any]:
        """Gradient-accumulated next-token loss on ``indices``, then one optimizer step."""
        parts = micro_batches(indices, self.args.gradient_accumulation_steps)
        total = 0.0
        for part in parts:
            logps, mask = masked_logps(self.run.model, self._batch(self.train_rows, part))
            loss = -(logps * mask).sum() / mask.sum().clamp(min=1)
            check_finite(loss, "loss", step, self.spec)
            (loss / len(parts)).backward()
            total += float(loss.detach()) / len(parts)
        grad_norm, lr = self.run.step()
        return {"loss": total, "learning_rate": lr, "grad_norm": grad_norm}

    def evaluate(self) -> dict[str, Any]:
        """Token-weighted ``eval_loss`` plus ``compute_metrics`` on generations."""
        if self.eval_rows is None:
            return {}
        size = self.args.per_device_eval_batch_size
        nll, count = 0.0, 0.0
        with evaluating(self.run.model):
            for lo in range(0, len(self.eval_rows), size):
                batch = self._batch(self.eval_rows, range(lo, min(lo + size, len(self.eval_rows))))
                logps, mask = masked_logps(self.run.model, batch)
                nll -= float((logps * mask).sum())
                count += float(mask.sum())
            metrics = {"eval_loss": nll / max(count, 1.0)}
            metrics.update(generation_metrics(self.run.model, self.base,
                                              self.resources.eval_dataset, self.spec.config,
                                              self.resources.device))
        return metrics

