"""GRPO, the recipe: group relative policy optimisation.

For every prompt of a step, ``train_step`` samples ``num_generations`` completions with the
run's own RNG, scores them with the reward functions (weighted by ``reward_weights``),
normalises each group's rewards (``scale_rewards``), and pushes up the mean token log-prob
of completions that beat their group's average, plus ``beta`` x KL to the reference (the
base with the adapter disabled, or a frozen pristine copy for full fine-tuning). Each group
is one on-policy update, so PPO clipping, ``epsilon`` and ``loss_type`` do not apply.
``evaluate`` reports ``eval_reward`` of greedy completions, plus ``compute_metrics``.
Honoured: ``num_generations``, ``max_completion_length``, ``temperature``, ``top_p``,
``top_k``, ``beta``, ``scale_rewards``, ``reward_weights``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from runfleet.backends.hf.common import HFBackend
from runfleet.backends.hf.data import check_columns, has_rows, is_chat, prompt_ids, token_cache
from runfleet.backends.hf.generation import (
    MAX_EVAL_GENERATIONS,
    decode,
    eval_generation_settings,
    generate,
    reference_text,
)
from runfleet.backends.hf.numerics import (
    check_finite,
    eval_mode,
    evaluating,
    token_logps,
)
from runfleet.backends.hf.run_model import RunModel, frozen_reference
from runfleet.backends.hf.slots import shared_base
from runfleet.backends.hf.trl_args import plan_run, training_args
from runfleet.engine.backend import RunPlan
from runfleet.fit.configs import ConfigError, GRPOConfig


class GRPOBackend(HFBackend):
    """Group relative policy optimisation: sample ``num_generations`` completions per
    prompt, score them with the reward functions, and push up the mean token log-prob of
    completions that beat their group's average (plus ``beta`` x KL to the reference)."""

    trainer = "grpo"
    args_class = GRPOConfig

    @classmethod
    def plan(cls, config: Any, num_examples: int, num_chunks: int, seed: int) -> RunPlan:
        """As for SFT and DPO, and: at least one reward function; a step's batch counts
        completions, ``num_generations`` per prompt (as in TRL)."""
        plan = plan_run(cls.trainer, cls.args_class, config, num_examples, num_chunks, seed,
                        examples_per_device=lambda args: max(
                            1, int(args.per_device_train_batch_size) // int(args.num_generations)))
        if not config.reward_funcs:
            raise ConfigError("reward_funcs: GRPO needs at least one reward function")
        return plan

    def open(self, state: dict[str, Any] | None) -> None:
        """Load the base, check the reward functions, put the run on the device."""
        config, res = self.spec.config, self.resources
        self.args = training_args(config, self.args_class)
        check_columns(res.train_dataset, "grpo", config, self.args)
        funcs = config["reward_funcs"]
        self.reward_funcs = list(funcs) if isinstance(funcs, (list, tuple)) else [funcs]
        if not self.reward_funcs or not all(callable(f) for f in self.reward_funcs):
            raise ValueError("GRPO needs reward_funcs: a callable or a list of callables "
                             "(prompts, completions, **columns) -> list[float]")
        weights = self.args.reward_weights or [1.0] * len(self.reward_funcs)
        if len(weights) != len(self.reward_funcs):
            raise ValueError(f"{len(weights)} reward_weights for "
                             f"{len(self.reward_funcs)} reward_funcs")
        self.reward_weights = torch.tensor([float(w) for w in weights])
        if int(self.args.num_generations) < 2:
            raise ValueError("GRPO needs num_generations >= 2 to compare completions")
        self.base = shared_base(res, config)
        key, tokenizer = ("grpo", config["model_name"]), self.base.tokenizer

        def tokenize(row: dict[str, Any]) -> list[int]:
            return prompt_ids(tokenizer, row["prompt"])

        self.train_prompts = token_cache(res, key, res.train_dataset, tokenize)
        self.eval_prompts = (token_cache(res, key, res.eval_dataset, tokenize)
                             if has_rows(res.eval_dataset) else None)
        self.beta = float(self.args.beta)
        if self.beta > 0 and config["peft_config"] is None:
            frozen_reference(self.base)  # copy the pristine base before the run's weights
        self.run = RunModel(self.spec, self.args, self.base, state)

    def train_step(self, step: int, indices: list[int]) -> dict[str, Any]:
        """Sample, score and group-normalise, then one gradient step over all prompts."""
        rows = [self.resources.train_dataset[i] for i in indices]
        groups = [self._sample(self.train_prompts[i]) for i in indices]
        rewards, reward_means = self._rewards(rows, [g.texts for g in groups])
        mean, std = rewards.mean(dim=1, keepdim=True), rewards.std(dim=1, keepdim=True)
        advantages = rewards - mean
        scale = self.args.scale_rewards  # TRL turns True/False into "group"/"none"
        if scale == "group":
            advantages = advantages / (std + 1e-4)
        elif scale == "batch":
            advantages = advantages / (rewards.std() + 1e-4)
        total, kl = 0.0, 0.0
        for group, adv in zip(groups, advantages):
            loss, group_kl = self._group_loss(group, adv)
            check_finite(loss, "loss", step, self.spec)
            (loss / len(groups)).backward()
            total += float(loss.detach()) / len(groups)
            kl += group_kl / len(groups)
        grad_norm, lr = self.run.step()
        metrics = {"loss": total, "learning_rate": lr, "grad_norm": grad_norm,
                   "reward": float(rewards.mean()), "reward_std": float(std.mean()),
                   "completion_length": float(torch.cat([g.mask for g in groups])
                                              .sum(dim=1).float().mean()),
                   **reward_means}
        if self.beta > 0:
            metrics["kl"] = kl
        return metrics

    def evaluate(self) -> dict[str, Any]:
        """``eval_reward``: mean reward of greedy completions of the first eval prompts;
        plus ``compute_metrics`` on those of them whose rows carry a reference."""
        if self.eval_prompts is None:
            return {}
        data, config = self.resources.eval_dataset, self.spec.config
        rows = [data[i] for i in range(min(len(data), MAX_EVAL_GENERATIONS))]
        settings = eval_generation_settings(config, int(self.args.max_completion_length))
        with evaluating(self.run.model):
            texts = []
            for i in range(len(rows)):
                ids, mask = generate(self.run.model, self.base, self.eval_prompts[i],
                                     self.resources.device, **settings)
                texts.append(decode(self.base.tokenizer, ids, mask))
            rewards, _ = self._rewards(rows, texts)
        metrics = {"eval_reward": float(torch.nanmean(rewards))}
        pairs = [(group[0].strip(), ref[1].strip()) for group, ref in
                 zip(texts, map(reference_text, rows)) if ref is not None]
        if config["compute_metrics"] is not None and pairs:
            predictions, references = zip(*pairs)
            metrics.update({f"eval_{k}": float(v) for k, v in
                            config["compute_metrics"](list(predictions), list(references)).items()})
        return metrics

    def _sample(self, prompt: list[int]) -> Group:
        args = self.args
        with eval_mode(self.run.model):  # no dropout; the sampling RNG is the run's own
            ids, mask = generate(
                self.run.model, self.base, prompt, self.resources.device,
                num=int(args.num_generations), do_sample=True,
                temperature=float(args.temperature), top_p=float(args.top_p),
                top_k=int(args.top_k or 0), max_new_tokens=int(args.max_completion_length))
        return Group(prompt, ids, mask, decode(self.base.tokenizer, ids, mask))

    def _rewards(self, rows: list[dict[str, Any]], texts: list[list[str]]
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted sum of the reward functions, ``[prompts, G]``; per-function means."""
        flat_rows = [row for row, group in zip(rows, texts) for _ in group]
        prompts = [row["prompt"] for row in flat_rows]
        completions: list[Any] = [
            [{"role": "assistant", "content": t}] if is_chat(row["prompt"]) else t
            for row, group in zip(rows, texts) for t in group]
        columns = {k: [row[k] for row in flat_rows] for k in flat_rows[0] if k != "prompt"}
        scores = []
        for func in self.reward_funcs:
            values = func(prompts=prompts, completions=completions, **columns)
            if len(values) != len(completions):
                raise ValueError(f"reward function {_name(func)} returned {len(values)} "
                                 f"rewards for {len(completions)} completions")
            scores.append([math.nan if v is None else float(v) for v in values])
        table = torch.tensor(scores, dtype=torch.float32)  # [funcs, completions]
        total = torch.nansum(table * self.reward_weights[:, None], dim=0)
        means = {f"rewards/{_name(f)}": float(torch.nanmean(row))
                 for f, row in zip(self.reward_funcs, table)}
        return total.view(len(rows), -1), means

    def _group_loss(self, group: Group, advantages: torch.Tensor
                    ) -> tuple[torch.Tensor, float]:
        """(-mean advantage x mean token log-prob + beta x KL, the KL) for one prompt."""
        device = self.resources.device
        count = group.completions.shape[0]
        prompt = torch.tensor([group.prompt], device=device).expand(count, -1)
        input_ids = torch.cat([prompt, group.completions], dim=1)
        attention = torch.cat([torch.ones_like(prompt), group.mask], dim=1)
        start = len(group.prompt) - 1  # position predicting the first completion token
        mask = group.mask.float()
        lengths = mask.sum(dim=1).clamp(min=1)
        logps = token_logps(self.run.model, input_ids, attention)[:, start:]
        loss = -(advantages.to(device) * (logps * mask).sum(dim=1) / lengths).mean()
        kl = 0.0
        if self.beta > 0:
            with self.run.reference() as ref_model:
                ref = token_logps(ref_model, input_ids, attention)[:, start:]
            delta = ref - logps
            per_token = torch.exp(delta) - delta - 1  # k3 estimator, >= 0
            kl_term = ((per_token * mask).sum(dim=1) / lengths).mean()
            loss = loss + self.beta * kl_term
            kl = float(kl_term.detach())
        return loss, kl


@dataclass
class Group:
    """The sampled completions of one prompt."""

    prompt: list[int]
    completions: torch.Tensor  # [G, C] token ids
    mask: torch.Tensor  # [G, C], 1 up to and including the first EOS
    texts: list[str]


def _name(func: Any) -> str:
    return str(getattr(func, "__name__", type(func).__name__))
