"""Dataset rows to tokens: TRL's standard formats, a per-worker token cache, batches.

SFT rows are ``prompt``/``completion`` (loss on the completion only), ``messages`` (chat
template), ``text`` (``dataset_text_field``), or anything with ``formatting_func(row) ->
str``; DPO rows ``prompt``/``chosen``/``rejected``; GRPO rows ``prompt`` (other columns reach
the reward functions). Prompts and completions may be strings or lists of chat messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from runfleet.engine.backend import WorkerResources

Tokens = tuple[list[int], list[int]]  # token ids, and 1 where the token is trained on


class DatasetFormatError(ValueError):
    """A dataset lacks the columns its trainer needs; the message says which."""


def is_chat(value: Any) -> bool:
    """Whether ``value`` is a list of chat messages (dicts with a ``role``)."""
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value)


def render_chat(tokenizer: Any, messages: list[dict[str, Any]],
                add_generation_prompt: bool = False) -> str:
    """Messages as text: the tokenizer's chat template, else ``role: content`` lines."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
        return str(text)
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines) + ("\nassistant:" if add_generation_prompt else "")


def _encode(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def prompt_ids(tokenizer: Any, prompt: Any) -> list[int]:
    """Token ids of a prompt (a string, or chat messages opening an assistant turn)."""
    if is_chat(prompt):  # the template writes its own special tokens
        return _encode(tokenizer, render_chat(tokenizer, prompt, True), special=False)
    return _encode(tokenizer, str(prompt), special=True)


def prompt_completion_tokens(tokenizer: Any, prompt: Any, completion: Any, eos: int) -> Tokens:
    """Prompt then completion ids (ending with EOS), trained on the completion only."""
    head = prompt_ids(tokenizer, prompt)
    if is_chat(prompt) or is_chat(completion):
        before = render_chat(tokenizer, _as_chat(prompt), True)
        whole = render_chat(tokenizer, _as_chat(prompt) + _as_chat(completion, "assistant"))
        text = whole[len(before):] if whole.startswith(before) else completion_text(completion)
    else:
        text = str(completion)
    tail = _encode(tokenizer, text, special=False)
    if not tail or tail[-1] != eos:
        tail.append(eos)
    return head + tail, [0] * len(head) + [1] * len(tail)


def _as_chat(value: Any, role: str = "user") -> list[dict[str, Any]]:
    return list(value) if is_chat(value) else [{"role": role, "content": str(value)}]


def completion_text(value: Any) -> str:
    """The text of a completion: a string, or the content of its last message."""
    return str(value[-1]["content"]) if is_chat(value) else str(value)


def sft_tokens(row: dict[str, Any], tokenizer: Any, eos: int,
               formatting_func: Callable[[dict[str, Any]], str] | None,
               text_field: str = "text") -> Tokens:
    """One SFT row as token ids and a loss mask (see the module docstring for formats)."""
    if formatting_func is not None:
        ids = _encode(tokenizer, formatting_func(row), special=True)
    elif "prompt" in row and "completion" in row:
        return prompt_completion_tokens(tokenizer, row["prompt"], row["completion"], eos)
    elif "messages" in row:
        templated = bool(getattr(tokenizer, "chat_template", None))
        ids = _encode(tokenizer, render_chat(tokenizer, row["messages"]), special=not templated)
    else:
        ids = _encode(tokenizer, str(row[text_field]), special=True)
    if not ids or ids[-1] != eos:
        ids.append(eos)
    return ids, [1] * len(ids)


def check_columns(dataset: Any, trainer: str, config: Any, args: Any) -> None:
    """Raise :class:`DatasetFormatError` unless ``dataset`` has what ``trainer`` needs."""
    if dataset is None:
        raise DatasetFormatError(f"trainer {trainer!r} needs a train dataset")
    columns = set(dataset.column_names)
    if trainer == "sft":
        text_field = getattr(args, "dataset_text_field", "text")
        ok = (config["formatting_func"] is not None or {"prompt", "completion"} <= columns
              or "messages" in columns or text_field in columns)
        need = f"prompt+completion, messages or {text_field} (or a formatting_func)"
    elif trainer == "dpo":
        ok, need = {"prompt", "chosen", "rejected"} <= columns, "prompt, chosen and rejected"
    else:
        ok, need = "prompt" in columns, "prompt"
    if not ok:
        raise DatasetFormatError(f"the {trainer.upper()} dataset needs the columns {need}; "
                                 f"it has {sorted(columns)}")


class TokenCache:
    """Rows of one dataset turned into tokens once per worker, lazily by index."""

    def __init__(self, dataset: Any, tokenize: Callable[[dict[str, Any]], Any]) -> None:
        self.dataset, self.tokenize = dataset, tokenize
        self.done: dict[int, Any] = {}

    def __getitem__(self, index: int) -> Any:
        if index not in self.done:
            self.done[index] = self.tokenize(self.dataset[index])
        return self.done[index]

    def __len__(self) -> int:
        return len(self.dataset)


def token_cache(resources: WorkerResources, key: tuple[Any, ...], dataset: Any,
                tokenize: Callable[[dict[str, Any]], Any]) -> TokenCache:
    """The worker's :class:`TokenCache` under ``key`` (which must name the dataset)."""
    full_key = ("hf.tokens", *key, id(dataset))
    cache: TokenCache | None = resources.cache.get(full_key)
    if cache is None or cache.dataset is not dataset:
        cache = resources.cache[full_key] = TokenCache(dataset, tokenize)
    return cache


def function_key(func: Callable[..., Any] | None) -> str | None:
    """A cache key for a user function that survives pickling: workers unpickle a new
    function object with every task, so identity would miss the cache every chunk."""
    if func is None:
        return None
    import hashlib

    import cloudpickle

    return hashlib.sha256(cloudpickle.dumps(func)).hexdigest()


def collate(examples: Sequence[Tokens], max_length: int | None, pad: int,
            device: str) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``loss_mask`` (truncated)."""
    cut = [(ids[:max_length], mask[:max_length]) if max_length else (ids, mask)
           for ids, mask in examples]
    width = max(len(ids) for ids, _ in cut)
    input_ids = torch.full((len(cut), width), pad, dtype=torch.long)
    attention = torch.zeros((len(cut), width), dtype=torch.long)
    loss_mask = torch.zeros((len(cut), width), dtype=torch.long)
    for row, (ids, mask) in enumerate(cut):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        attention[row, :len(ids)] = 1
        loss_mask[row, :len(ids)] = torch.tensor(mask)
    return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device),
            "loss_mask": loss_mask.to(device)}



def has_rows(dataset: Any) -> bool:
    """Whether ``dataset`` is given and not empty."""
    return dataset is not None and len(dataset) > 0

