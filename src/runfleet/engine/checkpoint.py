"""Run state checkpoints, addressed by (run id, chunk) keys.

After every chunk a run's trainable weights, optimizer, LR scheduler, RNG state and step
counters are written under ``<experiment dir>/checkpoints/<run id>/chunk-<k>.pt`` (via a
temporary file and an atomic rename, so a crash never leaves a torn checkpoint); a run
stopped inside a chunk gets ``chunk-<k>-step-<s>.pt``. The controller prunes older ones
once it has recorded the newest, so the recorded checkpoint is always on disk.
Keys (``"<run id>/chunk-<k>"``), not paths, travel
between controller and workers, so a remote executor can map them to its own storage.
"""

from __future__ import annotations

import os
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any


def checkpoint_key(run_id: str, chunk: int, step: int | None = None) -> str:
    """The key of a run's state after ``chunk`` (or within it, stopped after ``step``)."""
    return f"{run_id}/chunk-{chunk}" if step is None else f"{run_id}/chunk-{chunk}-step-{step}"


class CheckpointStore:
    """Saves and loads run states under ``root``, with a small in-memory (host RAM) cache."""

    def __init__(self, root: Path, cache_size: int = 8) -> None:
        self.root = Path(root)
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    def path(self, key: str) -> Path:
        """The file of a key."""
        run_id, _, name = key.partition("/")
        return self.root / run_id / f"{name}.pt"

    def save(self, key: str, state: dict[str, Any]) -> None:
        """Persist ``state`` (CPU tensors and plain values) atomically.

        Older checkpoints of the run stay until :meth:`prune` (the controller prunes once
        it has recorded the new one, so the recorded checkpoint always exists on disk).
        """
        import torch

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        self._remember(key, state)

    def prune(self, keep: str) -> None:
        """Delete the run's checkpoints other than ``keep``."""
        path = self.path(keep)
        for old in path.parent.glob("*.pt"):
            if old != path:
                old.unlink(missing_ok=True)
        for key in [k for k in self._cache if k.split("/")[0] == keep.split("/")[0]
                    and k != keep]:
            del self._cache[key]

    def copy(self, source: str, dest: str) -> None:
        """Copy a checkpoint under a new key (a warm clone keeps its own copy)."""
        self.path(dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(source), self.path(dest))

    def load(self, key: str) -> dict[str, Any]:
        """The state saved under ``key`` (from the cache when this process saved it)."""
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
        """Whether a checkpoint for ``key`` is on disk."""
        return self.path(key).exists()

    def delete_run(self, run_id: str) -> None:
        """Remove every checkpoint of a run (memory and disk)."""
        self.forget(run_id)
        shutil.rmtree(self.root / run_id, ignore_errors=True)

    def forget(self, run_id: str) -> None:
        """Drop a run's states from the in-memory cache (the files stay)."""
        for key in [k for k in self._cache if k.startswith(run_id + "/")]:
            del self._cache[key]

    def _remember(self, key: str, state: dict[str, Any]) -> None:
        self._cache[key] = state
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
