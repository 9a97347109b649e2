"""Fixtures for the trainer backend tests: one tiny Llama and the demo datasets, built once."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The backends need the ``train`` extra; without it there is nothing here to test.
TRAIN_EXTRA = ("torch", "transformers", "peft", "trl", "datasets", "tokenizers")
collect_ignore_glob = ([] if all(importlib.util.find_spec(m) for m in TRAIN_EXTRA)
                       else ["test_*.py"])


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy machine OpenMP's
    spinning threads make them up to 10x slower: train on one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny Llama (hidden 32, 2 layers, vocab 400) and its trained tokenizer."""
    from runfleet.demo import build_tiny_llama, load_instructions, train_tokenizer

    rows = load_instructions()
    tokenizer = train_tokenizer([p + c for p, c in zip(rows["prompt"], rows["completion"])],
                                vocab_size=400)
    path: Path = tmp_path_factory.mktemp("tiny-llama")
    return build_tiny_llama(path, tokenizer, hidden_size=32, num_layers=2, num_heads=2)


@pytest.fixture(scope="session")
def instructions() -> Any:
    """The shipped prompt/completion dataset."""
    from runfleet.demo import load_instructions

    return load_instructions()


@pytest.fixture(scope="session")
def preferences() -> Any:
    """The shipped prompt/chosen/rejected dataset."""
    from runfleet.demo import load_preferences

    return load_preferences()
