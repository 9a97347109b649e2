"""Checkpoint storage: run states addressed by keys, shared by the controller and workers.

After every chunk a worker saves the run's state (trainable weights, optimizer, LR
schedule, RNG, step counters) under ``"<run id>/chunk-<k>"``; a run stopped inside a chunk
gets ``"<run id>/chunk-<k>-step-<s>"`` (:func:`checkpoint_key`). Keys, not paths, travel
between controller and workers, so each executor can keep states where its workers reach
them. The controller prunes a run's older states only once it has recorded the newest, so
the recorded state always exists.

:class:`CheckpointStore` is the interface; :class:`LocalCheckpointStore` keeps states in
files under the experiment folder (every worker of a :class:`~runfleet.engine.local.
LocalExecutor` shares the disk) with a small host-RAM cache per process. The shared suite
``tests/engine/test_checkpoint_conformance.py`` runs against every implementation.
"""

from __future__ import annotations

import abc
import os
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any


def checkpoint_key(run_id: str, chunk: int, step: int | None = None) -> str:
    """The key of a run's state after ``chunk`` (or within it, stopped after ``step``)."""
    return f"{run_id}/chunk-{chunk}" if step is None else f"{run_id}/chunk-{chunk}-step-{step}"


def run_of(key: str) -> str:
    """The run id a key belongs to."""
    return key.partition("/")[0]


class CheckpointStore(abc.ABC):
    """Run states by key. Contract (checked by the conformance suite):

    * ``save(key, state)`` is atomic: a crash leaves the old state or the new one, never a
      torn one; ``load(key)`` then returns an equal state (tensors equal bit for bit), in
      this process or any other process of the experiment;
    * ``load`` of a key never saved (or deleted) raises ``FileNotFoundError``;
    * ``prune(keep)`` removes every other state of ``keep``'s run, ``delete_run`` all of
      them; neither touches other runs; ``forget`` only drops in-memory copies;
    * ``copy(source, dest)`` makes ``dest`` load what ``source`` loads, independently of
      later changes to ``source``;
    * the object can be pickled and used in another process (workers get it that way).
    """

    @abc.abstractmethod
    def save(self, key: str, state: dict[str, Any]) -> None:
        """Persist ``state`` (CPU tensors and plain values) under ``key``, atomically."""

    @abc.abstractmethod
    def load(self, key: str) -> dict[str, Any]:
        """The state saved under ``key``; ``FileNotFoundError`` if there is none."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a state is saved under ``key``."""

    @abc.abstractmethod
    def copy(self, source: str, dest: str) -> None:
        """Save what ``source`` holds under ``dest`` too (a warm clone's own copy)."""

    @abc.abstractmethod
    def prune(self, keep: str) -> None:
        """Delete the states of ``keep``'s run other than ``keep``."""

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> None:
        """Delete every state of a run (and any in-memory copy)."""

    @abc.abstractmethod
    def forget(self, run_id: str) -> None:
        """Drop a run's in-memory copies in this process; what is saved stays."""


class LocalCheckpointStore(CheckpointStore):
    """States as ``<root>/<run id>/<name>.pt`` files (``torch.save``, written to a temporary
    file and renamed into place), with the ``cache_size`` most recent states of this process
    kept in host RAM."""

    def __init__(self, root: str | os.PathLike[str], cache_size: int = 8) -> None:
        self.root = Path(root)
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    def __repr__(self) -> str:
        return f"LocalCheckpointStore({str(self.root)!r})"

    def __getstate__(self) -> dict[str, Any]:
        # a worker gets the store, not the states this process happens to hold in RAM
        return {"root": self.root, "_cache_size": self._cache_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], state["_cache_size"])  # type: ignore[misc]

    def path(self, key: str) -> Path:
        """The file of a key."""
        run_id, _, name = key.partition("/")
        return self.root / run_id / f"{name}.pt"

    def save(self, key: str, state: dict[str, Any]) -> None:
        """See :meth:`CheckpointStore.save`."""
        import torch

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        self._remember(key, state)

    def load(self, key: str) -> dict[str, Any]:
        """See :meth:`CheckpointStore.load` (from the RAM cache when this process has it)."""
        import torch

        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        path = self.path(key)
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint {key} at {path}")
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
        self._remember(key, state)
        return state

    def exists(self, key: str) -> bool:
        """See :meth:`CheckpointStore.exists`."""
        return self.path(key).exists()

    def copy(self, source: str, dest: str) -> None:
        """See :meth:`CheckpointStore.copy`."""
        target = self.path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(self.path(source), tmp)
        os.replace(tmp, target)
        self._cache.pop(dest, None)

    def prune(self, keep: str) -> None:
        """See :meth:`CheckpointStore.prune`."""
        path = self.path(keep)
        for old in path.parent.glob("*.pt"):
            if old != path:
                old.unlink(missing_ok=True)
        for key in [k for k in self._cache if run_of(k) == run_of(keep) and k != keep]:
            del self._cache[key]

    def delete_run(self, run_id: str) -> None:
        """See :meth:`CheckpointStore.delete_run`."""
        self.forget(run_id)
        shutil.rmtree(self.root / run_id, ignore_errors=True)

    def forget(self, run_id: str) -> None:
        """See :meth:`CheckpointStore.forget`."""
        for key in [k for k in self._cache if run_of(k) == run_id]:
            del self._cache[key]

    def _remember(self, key: str, state: dict[str, Any]) -> None:
        self._cache[key] = state
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
