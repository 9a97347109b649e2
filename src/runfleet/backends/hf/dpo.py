"""DPO, the recipe: direct preference optimisation with the sigmoid loss.

``open`` loads the shared base, tokenizes (chosen, rejected) pairs and, for full
fine-tuning, precomputes the reference log-probabilities of the pristine base once per
worker, model and dataset; ``train_step`` computes the policy's summed completion
log-probabilities of both completions, the implicit rewards ``beta x (policy -
reference)`` and the (optionally label-smoothed) sigmoid loss of their margin; ``evaluate``
reports ``eval_loss`` and eval rewards, plus ``compute_metrics`` on generations (reference:
the chosen completion). Honoured: ``beta``, ``label_smoothing``, ``max_length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from runfleet.backends.hf.common import HFBackend
from runfleet.backends.hf.data import (
    TokenCache,
    Tokens,
    check_columns,
    collate,
    has_rows,
    prompt_completion_tokens,
    token_cache,
)
from runfleet.backends.hf.generation import generation_metrics
from runfleet.backends.hf.numerics import check_finite, evaluating, masked_logps, micro_batches
from runfleet.backends.hf.run_model import RunModel
from runfleet.backends.hf.slots import shared_base
from runfleet.backends.hf.trl_args import training_args
from runfleet.fit.configs import DPOConfig

Pair = tuple[Tokens, Tokens]  # (chosen, rejected)


class DPOBackend(HFBackend):
    """Direct preference optimisation with the sigmoid loss.

    The reference policy is the base with the adapter disabled (LoRA), or, for full
    fine-tuning, log-probabilities of the pristine base computed once per worker, model
    and dataset before the run's weights go in.
    """

    trainer = "dpo"
    args_class = DPOConfig

    def open(self, state: dict[str, Any] | None) -> None:
        """Load the base, tokenize, precompute reference log-probs (full fine-tuning),
        put the run on the device."""
        config, res = self.spec.config, self.resources
        self.args = training_args(config, self.args_class)
        loss_types = self.args.loss_type
        loss_types = [loss_types] if isinstance(loss_types, str) else list(loss_types)
        if loss_types != ["sigmoid"]:
            raise ValueError(f"DPO loss_type {loss_types} is not supported; use 'sigmoid'")
        check_columns(res.train_dataset, "dpo", config, self.args)
        self.base = shared_base(res, config)
        tokenizer, eos = self.base.tokenizer, self.base.eos_id

        def tokenize(row: dict[str, Any]) -> Pair:
            return (prompt_completion_tokens(tokenizer, row["prompt"], row["chosen"], eos),
                    prompt_completion_tokens(tokenizer, row["prompt"], row["rejected"], eos))

        key = ("dpo", config["model_name"])
        self.train_rows = token_cache(res, key, res.train_dataset, tokenize)
        self.eval_rows = (token_cache(res, key, res.eval_dataset, tokenize)
                          if has_rows(res.eval_dataset) else None)
        self.train_ref = self.eval_ref = None
        if config["peft_config"] is None:
            self.train_ref = self._precomputed_reference(self.train_rows)
            if self.eval_rows is not None:
                self.eval_ref = self._precomputed_reference(self.eval_rows)
        self.run = RunModel(self.spec, self.args, self.base, state)

    def train_step(self, step: int, indices: list[int]) -> dict[str, Any]:
        """Gradient-accumulated DPO loss on the pairs ``indices``, then one optimizer step."""
        parts = micro_batches(indices, self.args.gradient_accumulation_steps)
        totals: dict[str, float] = {}
        for part in parts:
            batch = self._batch(self.train_rows, part)
            reference = self._reference(self.train_ref, part, batch)
            loss, metrics = self._loss(self._pair_logps(self.run.model, batch), reference)
            check_finite(loss, "loss", step, self.spec)
            (loss / len(parts)).backward()
            for k, v in {"loss": float(loss.detach()), **metrics}.items():
                totals[k] = totals.get(k, 0.0) + v / len(parts)
        grad_norm, lr = self.run.step()
        return {**totals, "learning_rate": lr, "grad_norm": grad_norm}

    def evaluate(self) -> dict[str, Any]:
        """``eval_loss`` and eval rewards over the eval pairs, plus ``compute_metrics`` on
        generations (reference: the chosen completion)."""
        if self.eval_rows is None:
            return {}
        size, count = self.args.per_device_eval_batch_size, len(self.eval_rows)
        totals: dict[str, float] = {}
        with evaluating(self.run.model):
            for lo in range(0, count, size):
                part = range(lo, min(lo + size, count))
                batch = self._batch(self.eval_rows, part)
                reference = self._reference(self.eval_ref, part, batch)
                loss, metrics = self._loss(self._pair_logps(self.run.model, batch), reference)
                for k, v in {"loss": float(loss.detach()), **metrics}.items():
                    totals[f"eval_{k}"] = totals.get(f"eval_{k}", 0.0) + v * len(part) / count
            totals.update(generation_metrics(self.run.model, self.base,
                                             self.resources.eval_dataset, self.spec.config,
                                             self.resources.device))
        return totals

    def _batch(self, rows: TokenCache, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        pairs = [rows[i] for i in indices]
        return collate([c for c, _ in pairs] + [r for _, r in pairs], self.args.max_length,
                       self.base.pad_id, self.resources.device)

    @staticmethod
    def _pair_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Summed completion log-probs, ``[n, 2]`` (chosen, rejected) for ``2n`` rows."""
        logps, mask = masked_logps(model, batch)
        total = (logps * mask).sum(dim=1)
        half = total.shape[0] // 2
        return torch.stack([total[:half], total[half:]], dim=1)

    def _precomputed_reference(self, rows: TokenCache) -> torch.Tensor:
        key = ("hf.dpo-reference", self.spec.config["model_name"], id(rows.dataset),
               self.args.max_length)
        if key not in self.resources.cache:
            self.base.restore_pristine()
            size = self.args.per_device_eval_batch_size
            with evaluating(self.base.model):
                parts = [self._pair_logps(self.base.model, self._batch(rows, range(
                    lo, min(lo + size, len(rows))))) for lo in range(0, len(rows), size)]
            self.resources.cache[key] = torch.cat(parts).cpu()
        reference: torch.Tensor = self.resources.cache[key]
        return reference

    def _reference(self, precomputed: torch.Tensor | None, indices: Sequence[int],
                   batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if precomputed is not None:
            return precomputed[list(indices)].to(self.resources.device)
        with self.run.reference() as ref_model:
            return self._pair_logps(ref_model, batch)

    def _loss(self, policy: torch.Tensor, reference: torch.Tensor
              ) -> tuple[torch.Tensor, dict[str, float]]:
        beta, smoothing = float(self.args.beta), float(self.args.label_smoothing)
        rewards = beta * (policy - reference)  # implicit rewards, [n, 2]
        margin = rewards[:, 0] - rewards[:, 1]
        loss = (-(1 - smoothing) * F.logsigmoid(margin) - smoothing * F.logsigmoid(-margin))
        r = rewards.detach()
        return loss.mean(), {
            "rewards/chosen": float(r[:, 0].mean()), "rewards/rejected": float(r[:, 1].mean()),
            "rewards/accuracies": float((r[:, 0] > r[:, 1]).float().mean()),
            "rewards/margins": float((r[:, 0] - r[:, 1]).mean())}
