"""Stage artefacts (passages, embeddings, indexes) computed once per content and shared.

Every stage result is addressed by a key: a hash of the stage's config and of its inputs'
keys (a corpus fingerprint, the chunks' key ...). A worker keeps what it built in memory for
the next runs it trains; with a folder (``<home>/rag-cache``) results are also saved there,
so other workers, a resumed experiment, a clone and later experiments on the same corpus
load them instead of computing them again. One process computes a key at a time (a file
lock per key); the others wait, then load.

Each use is logged to ``stats.jsonl`` in the folder (``computed`` with the seconds it took,
or ``reused``), which :meth:`runfleet.Experiment.stage_stats` sums up.

Example:
    >>> cache = StageCache(None)
    >>> key = stage_key("chunks", corpus="abc", size=256)
    >>> cache.get("chunks", key, lambda: ["a passage"], run="r1")
    ['a passage']
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

STATS_FILE = "stats.jsonl"


def stage_key(stage: str, **parts: Any) -> str:
    """The content key of a stage result: a hash of the stage's name and of ``parts`` (its
    settings and its inputs' keys), the same in every process."""
    text = json.dumps({"stage": stage, **parts}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class StageCache:
    """Stage results of one worker: in memory, and on disk under ``root`` when given.

    ``experiment`` tags the log lines, so an experiment's stats can be told from another's
    that shares the folder.
    """

    def __init__(self, root: Path | None, experiment: str = "") -> None:
        self.root = Path(root) if root is not None else None
        self.experiment = experiment
        self._memory: dict[str, Any] = {}
        self._told: set[tuple[str, str]] = set()  # (run, key) pairs already logged
        self._events: list[dict[str, Any]] = []

    def get(self, stage: str, key: str, compute: Callable[[], T], *, run: str = "",
            save: Callable[[T, Path], None] | None = None,
            load: Callable[[Path], T] | None = None) -> T:
        """The result under ``key``: from memory, else loaded from the folder, else made by
        ``compute()`` (and saved with ``save(result, folder)`` when a folder is set)."""
        if key in self._memory:
            self._log(stage, key, "reused", 0.0, run)
            found: T = self._memory[key]
            return found
        if self.root is None or save is None or load is None:
            started = time.perf_counter()
            value = compute()
            self._memory[key] = value
            self._log(stage, key, "computed", time.perf_counter() - started, run)
            return value
        folder = self.root / stage / key
        with self._locked(folder):
            started = time.perf_counter()
            if (folder / "DONE").exists():
                value = load(folder)
                event = "reused"
            else:
                value = compute()
                self._publish(folder, value, save)
                event = "computed"
        self._memory[key] = value
        self._log(stage, key, event, time.perf_counter() - started, run)
        return value

    def _publish(self, folder: Path, value: Any, save: Callable[[Any, Path], None]) -> None:
        """Save into a fresh folder and rename it into place: a crash leaves no half result."""
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, mode=0o700)
        save(value, tmp)
        (tmp / "DONE").write_text(json.dumps({"time": time.time()}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(folder.with_suffix(".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _log(self, stage: str, key: str, event: str, seconds: float, run: str) -> None:
        if event == "reused" and (run, key) in self._told:
            return  # a run uses a stage once however many shards it opens it for
        self._told.add((run, key))
        if self.root is None:
            self._events.append({"stage": stage, "key": key, "event": event,
                                "seconds": seconds, "run": run})
            return
        line = json.dumps({"experiment": self.experiment, "stage": stage, "key": key,
                           "event": event, "seconds": round(seconds, 6), "run": run,
                           "pid": os.getpid(), "time": time.time()}) + "\n"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.root / STATS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())  # one small append: whole lines from every process
        finally:
            os.close(fd)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The uses logged in memory (only when there is no folder)."""
        return self._events


def read_stats(root: Path, experiment: str | None = None) -> list[dict[str, Any]]:
    """The logged stage uses under ``root`` (of one experiment when given), oldest first."""
    path = Path(root) / STATS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash
        if experiment is None or event.get("experiment") == experiment:
            out.append(event)
    return out
