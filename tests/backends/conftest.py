"""Fixtures for the trainer backend tests (the tiny model and datasets are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy machine OpenMP's
    spinning threads make them up to 10x slower: train on one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def state_tensors(tree: Any) -> list[torch.Tensor]:
    """Every tensor of a nested state (dicts by sorted key, lists in order), flattened."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for key in sorted(tree, key=str) for t in state_tensors(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in state_tensors(item)]
    return []
