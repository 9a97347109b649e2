"""The engine's data order does not depend on where chunk boundaries fall."""

from __future__ import annotations

import pytest

from runfleet.engine.chunking import ChunkingError, StepPlan


def test_chunks_cover_all_steps_contiguously() -> None:
    plan = StepPlan.build(num_examples=100, batch_size=8, epochs=2, max_steps=-1,
                          num_chunks=4, seed=0)
    assert plan.steps_per_epoch == 12 and plan.total_steps == 24
    assert plan.chunks == ((0, 6), (6, 12), (12, 18), (18, 24))


def test_batches_are_the_same_whatever_the_chunking() -> None:
    one = StepPlan.build(num_examples=50, batch_size=4, epochs=3, max_steps=-1, num_chunks=1,
                         seed=7)
    four = StepPlan.build(num_examples=50, batch_size=4, epochs=3, max_steps=-1, num_chunks=4,
                          seed=7)
    assert [one.batch_indices(s) for s in range(one.total_steps)] == \
        [four.batch_indices(s) for s in range(four.total_steps)]
    epoch0 = [i for s in range(one.steps_per_epoch) for i in one.batch_indices(s)]
    assert len(set(epoch0)) == len(epoch0) == 48  # a permutation, whole batches only
    other_epoch = [i for s in range(12, 24) for i in one.batch_indices(s)]
    assert other_epoch != epoch0  # a new permutation each epoch


def test_max_steps_wins_and_small_data_fails_early() -> None:
    plan = StepPlan.build(num_examples=10, batch_size=2, epochs=1, max_steps=13, num_chunks=4,
                          seed=0)
    assert plan.total_steps == 13 and plan.chunks[-1] == (10, 13)
    with pytest.raises(ChunkingError, match="fewer than num_chunks=4"):
        StepPlan.build(num_examples=6, batch_size=2, epochs=1, max_steps=-1, num_chunks=4,
                       seed=0)
    with pytest.raises(ChunkingError, match="fewer than one batch"):
        StepPlan.build(num_examples=3, batch_size=4, epochs=1, max_steps=-1, num_chunks=1,
                       seed=0)
