"""One contract, every checkpoint store (see :class:`runfleet.engine.checkpoint.
CheckpointStore`): states come back equal, in this process and another one; keys are
independent; prune, delete and forget touch only what they say; a failed save leaves the
old state."""

from __future__ import annotations

import multiprocessing as mp
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from runfleet.engine.checkpoint import CheckpointStore, LocalCheckpointStore, checkpoint_key


def _ray_store(tmp: Path) -> CheckpointStore:
    """States kept by a keeper actor on this node, reached through Ray (RayExecutor's
    default: no shared filesystem)."""
    from runfleet.engine.ray_storage import RayCheckpointStore, keeper_for

    root = tmp / "checkpoints"
    return RayCheckpointStore(keeper_for(root), str(root), cache_size=2)


def _fsspec_store(tmp: Path) -> CheckpointStore:
    """States as files under an fsspec URL (RayExecutor(checkpoints="s3://...") and the like)."""
    from runfleet.engine.ray_storage import FsspecCheckpointStore

    return FsspecCheckpointStore(f"file://{tmp}/shared", "exp", cache_size=2)


CASES: dict[str, Callable[[Path], CheckpointStore]] = {
    "local": lambda tmp: LocalCheckpointStore(tmp / "checkpoints", cache_size=2),
    "ray": _ray_store,
    "fsspec": _fsspec_store,
}


@pytest.fixture(params=list(CASES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> CheckpointStore:
    if request.param == "ray":
        request.getfixturevalue("ray_local")
    return CASES[request.param](tmp_path)


def load_elsewhere(store: CheckpointStore, key: str) -> dict[str, Any]:
    """Load ``key`` in another process: a Ray worker (another node's view) for stores that
    travel through Ray, a spawned process otherwise."""
    from runfleet.engine.ray_storage import RayCheckpointStore

    if isinstance(store, RayCheckpointStore):
        import ray

        loaded: dict[str, Any] = ray.get(ray.remote(_load_in_child).remote(
            pickle.dumps(store), key))
        return loaded
    with mp.get_context("spawn").Pool(1) as pool:
        out: dict[str, Any] = pool.apply(_load_in_child, (pickle.dumps(store), key))
        return out


def state(seed: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {"weights": {"a": torch.randn(3, 4, generator=g), "b": torch.randn(5, generator=g)},
            "optimizer": {"state": {0: {"step": torch.tensor(float(seed))}}, "lr": 0.1},
            "rng": torch.get_rng_state(), "step": seed, "kind": "lora"}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def fresh(store: CheckpointStore) -> CheckpointStore:
    """The same store as another process sees it (nothing in memory)."""
    copy: CheckpointStore = pickle.loads(pickle.dumps(store))
    return copy


def _load_in_child(blob: bytes, key: str) -> dict[str, Any]:
    loaded: dict[str, Any] = pickle.loads(blob).load(key)
    return loaded


def test_a_saved_state_loads_equal_here_and_in_another_process(store: CheckpointStore) -> None:
    key = checkpoint_key("run1", 0)
    store.save(key, state(1))
    assert store.exists(key)
    assert same(store.load(key), state(1))
    assert same(fresh(store).load(key), state(1))
    assert same(load_elsewhere(store, key), state(1))


def test_a_missing_key_is_a_clear_error(store: CheckpointStore) -> None:
    assert not store.exists("nobody/chunk-0")
    with pytest.raises(FileNotFoundError, match="nobody/chunk-0"):
        store.load("nobody/chunk-0")


def test_prune_keeps_one_state_of_that_run_only(store: CheckpointStore) -> None:
    for chunk in range(3):
        store.save(checkpoint_key("run1", chunk), state(chunk))
    store.save(checkpoint_key("run2", 0), state(9))
    store.prune(checkpoint_key("run1", 2))
    for view in (store, fresh(store)):
        assert not view.exists(checkpoint_key("run1", 0))
        assert not view.exists(checkpoint_key("run1", 1))
        assert same(view.load(checkpoint_key("run1", 2)), state(2))
        assert same(view.load(checkpoint_key("run2", 0)), state(9))


def test_delete_run_removes_every_state_of_that_run_only(store: CheckpointStore) -> None:
    store.save(checkpoint_key("run1", 0), state(1))
    store.save(checkpoint_key("run1", 1, step=3), state(2))
    store.save(checkpoint_key("run2", 0), state(3))
    store.delete_run("run1")
    for view in (store, fresh(store)):
        assert not view.exists(checkpoint_key("run1", 0))
        with pytest.raises(FileNotFoundError):
            view.load(checkpoint_key("run1", 1, step=3))  # not even from memory
        assert same(view.load(checkpoint_key("run2", 0)), state(3))


def test_forget_drops_memory_only(store: CheckpointStore) -> None:
    store.save(checkpoint_key("run1", 0), state(1))
    store.forget("run1")
    assert same(store.load(checkpoint_key("run1", 0)), state(1))


def test_a_copy_is_independent_of_its_source(store: CheckpointStore) -> None:
    store.save(checkpoint_key("parent", 0), state(1))
    store.copy(checkpoint_key("parent", 0), "child/warm-start")
    store.save(checkpoint_key("parent", 0), state(2))
    store.delete_run("parent")
    for view in (store, fresh(store)):
        assert same(view.load("child/warm-start"), state(1))


def test_a_failed_save_leaves_the_old_state(store: CheckpointStore) -> None:
    key = checkpoint_key("run1", 0)
    store.save(key, state(1))
    with pytest.raises(Exception, match="pickle"):
        store.save(key, {**state(2), "callback": lambda: None})  # cannot be serialised
    for view in (store, fresh(store)):
        assert same(view.load(key), state(1))
