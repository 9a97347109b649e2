"""Run states and shared stage folders across the nodes of a Ray cluster: the *keeper* actor
pinned to the controller's node writes them into the experiment's folders there
(:class:`RayCheckpointStore`, :class:`RayFolderShare`), or an fsspec URL holds them
(:class:`FsspecCheckpointStore`). Used by :class:`~runfleet.engine.ray_executor.RayExecutor`.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

from runfleet.engine.checkpoint import CheckpointStore, LocalCheckpointStore, run_of
from runfleet.engine.spec import WorkerSetup

_FLUSH_S = 0.05  # how often a worker sends the events it has gathered


def ray_module() -> Any:
    """The ``ray`` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("RayExecutor needs Ray: pip install 'runfleet[ray]'") from exc
    return ray



def this_node() -> Any:
    """A scheduling strategy pinning an actor to this process's node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray_module().get_runtime_context().get_node_id(),
                                          soft=False)



# -- checkpoints across nodes -------------------------------------------------------------------
class _Keeper:
    """Keeps run states in a local checkpoint folder of the controller's node for workers
    anywhere in the cluster (the body of the keeper actor)."""

    def __init__(self, root: str) -> None:
        self.store = LocalCheckpointStore(root, cache_size=0)

    def put(self, key: str, blob: bytes) -> None:
        """Write a serialised state atomically."""
        path = self.store.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)

    def get(self, key: str) -> bytes | None:
        """A serialised state, or None."""
        path = self.store.path(key)
        return path.read_bytes() if path.exists() else None

    def exists(self, key: str) -> bool:
        """Whether a state is there."""
        return self.store.exists(key)

    def copy(self, source: str, dest: str) -> None:
        """See :meth:`CheckpointStore.copy`."""
        self.store.copy(source, dest)

    def prune(self, keep: str) -> None:
        """See :meth:`CheckpointStore.prune`."""
        self.store.prune(keep)

    def delete_run(self, run_id: str) -> None:
        """See :meth:`CheckpointStore.delete_run`."""
        self.store.delete_run(run_id)


class RayFolderShare:
    """A folder on the controller's node, reached from any node through a keeper actor that
    runs :class:`runfleet.rag.stages.FolderKeeper` there (how RAG workers share stage
    artefacts: built once in the cluster, fetched by every other worker)."""

    def __init__(self, keeper: Any, root: str) -> None:
        self.keeper, self.root = keeper, root

    def __repr__(self) -> str:
        return f"RayFolderShare({self.root!r})"

    def __getattr__(self, name: str) -> Any:
        if name not in ("claim", "renew", "release", "publish", "fetch", "log"):
            raise AttributeError(name)
        method = getattr(self.keeper, name)
        return lambda *args: ray_module().get(method.remote(*args))


def with_shared_folders(setup: WorkerSetup, held: list[Any]) -> WorkerSetup:
    """``setup`` with its data's folders (RAG stage caches) shared through keeper actors:
    data objects that have folders say so with a ``shared_through(make_share)`` method.
    The shares made are added to ``held`` (a keeper lives while its handle is held here:
    workers get theirs inside a pickled blob, which Ray does not count)."""
    import dataclasses

    def make(root: Path) -> RayFolderShare:
        share = _folder_share(root)
        held.append(share)
        return share

    changes: dict[str, Any] = {}
    for field in ("train_dataset", "eval_dataset"):
        data = getattr(setup, field)
        if hasattr(data, "shared_through"):
            changes[field] = data.shared_through(make)
    if changes.get("train_dataset") is not None and setup.eval_dataset is setup.train_dataset:
        changes["eval_dataset"] = changes["train_dataset"]  # one object, shared once
    return dataclasses.replace(setup, **changes) if changes else setup


def _folder_share(root: Path) -> RayFolderShare:
    """The share of a folder of this node: its keeper actor (one per folder)."""
    from runfleet.rag.stages import FolderKeeper

    name = "runfleet-folder-" + hashlib.sha256(str(root).encode()).hexdigest()[:16]
    keeper = ray_module().remote(FolderKeeper).options(
        name=name, num_cpus=0, scheduling_strategy=this_node(), max_concurrency=16,
        get_if_exists=True).remote(str(root))
    return RayFolderShare(keeper, str(root))


def keeper_for(root: Path) -> Any:
    """The keeper actor of a checkpoint folder, on this node (one per folder)."""
    name = "runfleet-keeper-" + hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return ray_module().remote(_Keeper).options(
        name=name, num_cpus=0, scheduling_strategy=this_node(), max_concurrency=8,
        get_if_exists=True).remote(str(root))


def _dumps(state: dict[str, Any]) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _loads(blob: bytes) -> dict[str, Any]:
    import torch

    state: dict[str, Any] = torch.load(io.BytesIO(blob), map_location="cpu",
                                       weights_only=False)
    return state


class _Cached(CheckpointStore):
    """What both remote stores share: a host-RAM cache of this process's recent states."""

    def __init__(self, cache_size: int = 8) -> None:
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    def _remember(self, key: str, state: dict[str, Any]) -> None:
        self._cache[key] = state
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def forget(self, run_id: str) -> None:
        """See :meth:`CheckpointStore.forget`."""
        for key in [k for k in self._cache if run_of(k) == run_id]:
            del self._cache[key]


class RayCheckpointStore(_Cached):
    """Run states kept by the keeper actor on the controller's node, reached through Ray
    from any node (no shared filesystem). ``root`` is the folder the keeper writes."""

    def __init__(self, keeper: Any, root: str, cache_size: int = 8) -> None:
        super().__init__(cache_size)
        self.keeper, self.root = keeper, root

    def __repr__(self) -> str:
        return f"RayCheckpointStore({self.root!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"keeper": self.keeper, "root": self.root, "cache_size": self._cache_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["keeper"], state["root"], state["cache_size"])  # type: ignore[misc]

    def save(self, key: str, state: dict[str, Any]) -> None:
        """See :meth:`CheckpointStore.save` (returns once the keeper has it on disk)."""
        ray_module().get(self.keeper.put.remote(key, _dumps(state)))
        self._remember(key, state)

    def load(self, key: str) -> dict[str, Any]:
        """See :meth:`CheckpointStore.load`."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        blob = ray_module().get(self.keeper.get.remote(key))
        if blob is None:
            raise FileNotFoundError(f"no checkpoint {key} in {self.root}")
        state = _loads(blob)
        self._remember(key, state)
        return state

    def exists(self, key: str) -> bool:
        """See :meth:`CheckpointStore.exists`."""
        return bool(ray_module().get(self.keeper.exists.remote(key)))

    def copy(self, source: str, dest: str) -> None:
        """See :meth:`CheckpointStore.copy`."""
        ray_module().get(self.keeper.copy.remote(source, dest))
        self._cache.pop(dest, None)

    def prune(self, keep: str) -> None:
        """See :meth:`CheckpointStore.prune`."""
        ray_module().get(self.keeper.prune.remote(keep))
        for key in [k for k in self._cache if run_of(k) == run_of(keep) and k != keep]:
            del self._cache[key]

    def delete_run(self, run_id: str) -> None:
        """See :meth:`CheckpointStore.delete_run`."""
        self.forget(run_id)
        ray_module().get(self.keeper.delete_run.remote(run_id))


class FsspecCheckpointStore(_Cached):
    """Run states as files under an fsspec URL every node can reach (a shared folder,
    ``s3://bucket/path``, ``gs://...``); ``experiment`` names the sub-folder."""

    def __init__(self, url: str, experiment: str = "", cache_size: int = 8) -> None:
        super().__init__(cache_size)
        self.url = url.rstrip("/") + (f"/{experiment}" if experiment else "")

    def __repr__(self) -> str:
        return f"FsspecCheckpointStore({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "cache_size": self._cache_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], "", state["cache_size"])  # type: ignore[misc]

    def _fs(self) -> tuple[Any, str]:
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.url)
        return fs, root

    def _path(self, key: str) -> str:
        run_id, _, name = key.partition("/")
        return f"{self._fs()[1]}/{run_id}/{name}.pt"

    def save(self, key: str, state: dict[str, Any]) -> None:
        """See :meth:`CheckpointStore.save` (a temporary file, then a move)."""
        fs, _ = self._fs()
        path = self._path(key)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path + ".tmp", "wb") as f:
            f.write(_dumps(state))
        fs.mv(path + ".tmp", path)
        self._remember(key, state)

    def load(self, key: str) -> dict[str, Any]:
        """See :meth:`CheckpointStore.load`."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        fs, _ = self._fs()
        path = self._path(key)
        if not fs.exists(path):
            raise FileNotFoundError(f"no checkpoint {key} at {self.url}")
        with fs.open(path, "rb") as f:
            state = _loads(f.read())
        self._remember(key, state)
        return state

    def exists(self, key: str) -> bool:
        """See :meth:`CheckpointStore.exists`."""
        fs, _ = self._fs()
        return bool(fs.exists(self._path(key)))

    def copy(self, source: str, dest: str) -> None:
        """See :meth:`CheckpointStore.copy`."""
        fs, _ = self._fs()
        target = self._path(dest)
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.copy(self._path(source), target + ".tmp")
        fs.mv(target + ".tmp", target)
        self._cache.pop(dest, None)

    def prune(self, keep: str) -> None:
        """See :meth:`CheckpointStore.prune`."""
        fs, root = self._fs()
        folder = f"{root}/{run_of(keep)}"
        wanted = self._path(keep)
        for path in fs.glob(f"{folder}/*.pt"):
            if path.rstrip("/") != wanted and not path.endswith(wanted):
                fs.rm(path)
        for key in [k for k in self._cache if run_of(k) == run_of(keep) and k != keep]:
            del self._cache[key]

    def delete_run(self, run_id: str) -> None:
        """See :meth:`CheckpointStore.delete_run`."""
        self.forget(run_id)
        fs, root = self._fs()
        with contextlib.suppress(FileNotFoundError):
            fs.rm(f"{root}/{run_id}", recursive=True)
