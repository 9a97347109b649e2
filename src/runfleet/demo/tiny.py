"""Tiny causal LMs built offline (a tokenizer trained on the fly, a small Llama) and the
instruction and preference datasets shipped with the package.

Nothing here touches the Hugging Face Hub: the tokenizer is a byte-level BPE trained with
the ``tokenizers`` library on your texts, the model is a ``LlamaForCausalLM`` built from a
``LlamaConfig`` with a fixed seed, and both are written with ``save_pretrained`` so that
the standard ``from_pretrained`` path (:func:`load_model`) loads them like any hub model.

Example:
    >>> from runfleet.demo import build_demo_model, load_model
    >>> from runfleet.fit import ModelConfig
    >>> path = build_demo_model("/tmp/tiny-llama")                  # doctest: +SKIP
    >>> model, tokenizer = load_model(ModelConfig(model_name=path))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from importlib import resources
from typing import Any

from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS = "<pad>", "<s>", "</s>"

# "role: content" lines; an assistant turn ends with the EOS token, and
# add_generation_prompt opens an assistant turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}{{ '\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts``, ready for ``save_pretrained``.

    It has ``<pad>`` (id 0), ``<s>`` (BOS, prepended when encoding with special tokens)
    and ``</s>`` (EOS) and the simple :data:`CHAT_TEMPLATE`. Byte-level means any text
    encodes, even characters never seen in ``texts``; ``vocab_size`` must be at least
    259 (256 bytes and the three special tokens).

    Example:
        >>> tok = train_tokenizer(["Reverse the word: apple", "elppa"], vocab_size=300)
        >>> tok.decode(tok("apple").input_ids, skip_special_tokens=True)
        'apple'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if vocab_size < 259:
        raise ValueError(f"vocab_size must be >= 259 for a byte-level BPE, got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS,
                                   pad_token=PAD, chat_template=CHAT_TEMPLATE)


def tiny_llama(tokenizer: Any, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
               intermediate_size: int | None = None, max_position_embeddings: int = 256,
               seed: int = 0) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` sized for ``tokenizer`` (in memory).

    The weights are a pure function of ``seed`` and the sizes; the caller's RNG state is
    left untouched. Input and output embeddings are tied.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=num_heads, max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save(model: Any, tokenizer: Any, path: str | os.PathLike[str]) -> str:
    """``save_pretrained`` model and tokenizer into ``path``; return it as a string."""
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def build_tiny_llama(path: str | os.PathLike[str], tokenizer: Any, hidden_size: int = 64,
                     num_layers: int = 2, num_heads: int = 4, intermediate_size: int | None = None,
                     max_position_embeddings: int = 256, seed: int = 0) -> str:
    """Build a randomly initialised tiny Llama for ``tokenizer`` (:func:`tiny_llama`) and
    save both at ``path``. Returns ``path`` as a string, ready to be a ``model_name``.

    Example:
        >>> tok = train_tokenizer(["hello world"] * 4, vocab_size=260)
        >>> build_tiny_llama("/tmp/tiny", tok, hidden_size=32)          # doctest: +SKIP
        '/tmp/tiny'
    """
    model = tiny_llama(tokenizer, hidden_size=hidden_size, num_layers=num_layers,
                       num_heads=num_heads, intermediate_size=intermediate_size,
                       max_position_embeddings=max_position_embeddings, seed=seed)
    return save(model, tokenizer, path)


def pretrain(model: Any, tokenizer: Any, texts: list[str], steps: int, lr: float = 3e-3,
             batch_size: int = 16, seed: int = 0) -> list[float]:
    """A short causal-LM pass over ``texts`` updating all weights; returns the losses.

    Batches are drawn with their own seeded generator, so the result is a pure function of
    the arguments and the caller's RNG state is left untouched.
    """
    import torch

    encoded = [[*tokenizer(t).input_ids, tokenizer.eos_token_id] for t in texts]
    draw = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        batch = [encoded[i] for i in torch.randint(len(encoded), (batch_size,),
                                                   generator=draw).tolist()]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((batch_size, width), tokenizer.pad_token_id)
        attention = torch.zeros((batch_size, width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention[row, :len(ids)] = 1
        labels = input_ids.masked_fill(attention == 0, -100)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


# Tasks the demo base model has seen before fine-tuning: fine-tuning then has a model that
# knows the vocabulary and format (LoRA can barely move a randomly initialised one) and
# new tasks to learn (add, capital, first_letter).
PRETRAIN_TASKS = ("reverse", "uppercase", "repeat")


def build_demo_model(path: str | os.PathLike[str], vocab_size: int = 512,
                     hidden_size: int = 64, num_layers: int = 2, seed: int = 0,
                     pretrain_steps: int = 300) -> str:
    """The demo's base model at ``path``: a tokenizer trained on the shipped instruction
    texts, a tiny Llama, pretrained for ``pretrain_steps`` steps on the
    :data:`PRETRAIN_TASKS` rows (0: leave it random). About 5 s on a laptop CPU.

    Example:
        >>> build_demo_model("/tmp/demo-llama")                         # doctest: +SKIP
        '/tmp/demo-llama'
    """
    import torch

    rows = load_instructions()
    tokenizer = train_tokenizer([r["prompt"] + r["completion"] for r in rows],
                                vocab_size=vocab_size)
    model = tiny_llama(tokenizer, hidden_size=hidden_size, num_layers=num_layers, seed=seed)
    if pretrain_steps > 0:
        texts = [r["prompt"] + r["completion"] for r in rows if r["task"] in PRETRAIN_TASKS]
        with torch.random.fork_rng(devices=[]):
            pretrain(model, tokenizer, texts, steps=pretrain_steps, seed=seed)
    return save(model, tokenizer, path)


def load_model(config: Any) -> tuple[Any, Any]:
    """A ``create_model_fn``: load ``config.model_name`` with ``from_pretrained``.

    Example:
        >>> exp.run_fit(space, create_model_fn=load_model, ...)          # doctest: +SKIP
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = config["model_name"]
    return AutoModelForCausalLM.from_pretrained(name), AutoTokenizer.from_pretrained(name)


def _read_jsonl(name: str) -> list[dict[str, Any]]:
    text = (resources.files("runfleet.demo") / "data" / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_instructions() -> Any:
    """The shipped instruction set: a ``datasets.Dataset`` of 360 rows with ``prompt``,
    ``completion`` and ``task`` (see :mod:`runfleet.demo.make_data`).

    Example:
        >>> rows = load_instructions()
        >>> rows.column_names
        ['completion', 'prompt', 'task']
    """
    from datasets import Dataset

    return Dataset.from_list(_read_jsonl("instructions.jsonl"))


def load_preferences() -> Any:
    """The shipped preference set: a ``datasets.Dataset`` with ``prompt``, ``chosen``,
    ``rejected`` and ``task``, the rejected answer being a plausible mistake.

    Example:
        >>> load_preferences()[0]["chosen"] != load_preferences()[0]["rejected"]
        True
    """
    from datasets import Dataset

    return Dataset.from_list(_read_jsonl("prefs.jsonl"))
