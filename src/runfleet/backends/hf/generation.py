"""Generating completions: sampling for GRPO, greedy eval generations for ``compute_metrics``."""

from __future__ import annotations

from typing import Any

import torch

from runfleet.backends.hf.data import completion_text, is_chat, prompt_ids
from runfleet.backends.hf.slots import SharedBase

MAX_EVAL_GENERATIONS = 16  # eval prompts generated for compute_metrics / GRPO eval_reward
DEFAULT_MAX_NEW_TOKENS = 32


def generate(model: Any, base: SharedBase, prompt: list[int], device: str, *, num: int = 1,
             **settings: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` completions of one prompt: ids ``[num, C]`` and a mask over each completion
    up to and including its first EOS. ``settings`` are ``GenerationConfig`` fields."""
    from transformers import GenerationConfig

    config = GenerationConfig(pad_token_id=base.pad_id, eos_token_id=base.eos_id,
                              num_return_sequences=num, **settings)
    input_ids = torch.tensor([prompt], device=device)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             generation_config=config)
    completion = out[:, len(prompt):]
    is_eos = (completion == base.eos_id).long()
    after_eos = (is_eos.cumsum(dim=1) - is_eos) > 0
    return completion, (~after_eos).long()


def decode(tokenizer: Any, ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    """Completion texts without special tokens."""
    return [str(tokenizer.decode(row[m.bool()].tolist(), skip_special_tokens=True))
            for row, m in zip(ids, mask)]


def eval_generation_settings(config: Any, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
                             ) -> dict[str, Any]:
    """Greedy decoding with ``config.generation_kwargs`` (default ``max_new_tokens``:
    32, or GRPO's ``max_completion_length``)."""
    kwargs = dict(config["generation_kwargs"] or {})
    return {"max_new_tokens": max_new_tokens, **kwargs, "do_sample": False}


def reference_text(row: dict[str, Any]) -> tuple[Any, str] | None:
    """(prompt, reference completion) of an eval row, or None when it has no reference."""
    if "prompt" in row:
        for column in ("completion", "chosen", "reference", "answer", "solution"):
            if row.get(column) is not None:
                return row["prompt"], completion_text(row[column])
        return None
    messages: Any = row.get("messages")
    if is_chat(messages) and len(messages) > 1 and messages[-1]["role"] == "assistant":
        return messages[:-1], str(messages[-1]["content"])
    return None


def generation_metrics(model: Any, base: SharedBase, dataset: Any, config: Any,
                       device: str) -> dict[str, float]:
    """``compute_metrics(predictions, references)`` on greedy completions of the first
    eval rows that have a reference, keys prefixed with ``eval_``."""
    compute = config["compute_metrics"]
    if compute is None or dataset is None:
        return {}
    predictions, references = [], []
    for index in range(len(dataset)):
        pair = reference_text(dataset[index])
        if pair is None:
            continue
        ids, mask = generate(model, base, prompt_ids(base.tokenizer, pair[0]), device,
                             **eval_generation_settings(config))
        predictions.append(decode(base.tokenizer, ids, mask)[0].strip())
        references.append(pair[1].strip())
        if len(predictions) == MAX_EVAL_GENERATIONS:
            break
    if not predictions:
        return {}
    return {f"eval_{k}": float(v) for k, v in compute(predictions, references).items()}

