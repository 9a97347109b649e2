"""The engine owns the data order: one seeded permutation per epoch, cut into chunks.

A run's training is a sequence of ``total_steps`` optimizer steps. Step ``s`` consumes the
``s % steps_per_epoch``-th batch of epoch ``s // steps_per_epoch``'s permutation, a pure
function of the experiment seed and the run's batch size. Chunks are contiguous ranges of
steps (whole batches), so where the chunk boundaries fall never changes what a step
trains on: that is why a run trained in 4 chunks, swapped on and off a worker, matches
the same run trained in one go.

Example:
    >>> plan = StepPlan.build(num_examples=100, batch_size=8, epochs=2, max_steps=-1,
    ...                       num_chunks=4, seed=0)
    >>> plan.total_steps, plan.chunks[0]
    (24, (0, 6))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


class ChunkingError(ValueError):
    """The dataset cannot be split as asked (too small for the number of chunks)."""


def check_num_chunks(num_chunks: int) -> None:
    """Raise :class:`ChunkingError` unless ``num_chunks`` is a whole number >= 1."""
    if isinstance(num_chunks, bool) or not isinstance(num_chunks, int) or num_chunks < 1:
        raise ChunkingError(f"num_chunks must be an integer >= 1, got {num_chunks!r}")


@lru_cache(maxsize=64)
def epoch_permutation(num_examples: int, seed: int, epoch: int) -> tuple[int, ...]:
    """The order of examples in ``epoch`` (same for every run of an experiment)."""
    rng = np.random.default_rng([seed, epoch])
    return tuple(int(i) for i in rng.permutation(num_examples))


@dataclass(frozen=True)
class StepPlan:
    """Which examples each optimizer step of a run uses, and how steps form chunks."""

    num_examples: int
    batch_size: int  # examples per optimizer step (per-device batch x accumulation)
    steps_per_epoch: int
    total_steps: int
    chunks: tuple[tuple[int, int], ...]  # [start, end) step ranges
    seed: int

    @classmethod
    def build(cls, *, num_examples: int, batch_size: int, epochs: float, max_steps: int,
              num_chunks: int, seed: int) -> StepPlan:
        """Plan a run: ``max_steps > 0`` wins over ``epochs``; chunks split the steps evenly.

        Raises :class:`ChunkingError` when the data yields fewer optimizer steps than chunks.
        """
        if batch_size < 1:
            raise ChunkingError(f"batch size must be >= 1, got {batch_size}")
        check_num_chunks(num_chunks)
        steps_per_epoch = num_examples // batch_size
        if steps_per_epoch < 1:
            raise ChunkingError(
                f"the dataset has {num_examples} examples, fewer than one batch of "
                f"{batch_size}; use a smaller batch or more data")
        total = max_steps if max_steps > 0 else round(epochs * steps_per_epoch)
        if total < num_chunks:
            raise ChunkingError(
                f"{num_examples} examples in batches of {batch_size} give {total} optimizer "
                f"steps, fewer than num_chunks={num_chunks}; lower num_chunks to at most "
                f"{total} or add data")
        edges = [round(i * total / num_chunks) for i in range(num_chunks + 1)]
        chunks = tuple((edges[i], edges[i + 1]) for i in range(num_chunks))
        return cls(num_examples, batch_size, steps_per_epoch, total, chunks, seed)

    def batch_indices(self, step: int) -> list[int]:
        """Example indices of optimizer step ``step`` (0-based)."""
        if not 0 <= step < self.total_steps:
            raise IndexError(f"step {step} outside 0..{self.total_steps - 1}")
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = epoch_permutation(self.num_examples, self.seed, epoch)
        return list(order[pos * self.batch_size:(pos + 1) * self.batch_size])

    def epoch_of(self, step: int) -> float:
        """Fractional epoch reached after ``step`` (like the Trainer's ``epoch`` log)."""
        return (step + 1) / self.steps_per_epoch

    @property
    def num_chunks(self) -> int:
        """Number of chunks."""
        return len(self.chunks)


def eval_every(eval_steps: float | None, total_steps: int) -> int | None:
    """Steps between evaluations: ``eval_steps`` as a count (>= 1) or as a fraction of the
    run's steps (< 1), as transformers reads it; None evaluates at chunk ends only."""
    if eval_steps is None:
        return None
    return int(eval_steps) if eval_steps >= 1 else max(1, round(eval_steps * total_steps))
