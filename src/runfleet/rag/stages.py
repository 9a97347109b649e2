"""Stage artefacts (passages, embeddings, indexes) computed once per content and shared.

Every stage result is addressed by a key: a hash of the stage's config and of its inputs'
keys (a corpus fingerprint, the chunks' key ...). A worker keeps what it built in memory for
the next runs it trains; with a folder (``<home>/rag-cache``) results are also saved there,
so other workers, a resumed experiment, a clone and later experiments on the same corpus
load them instead of computing them again. One process computes a key at a time (a file
lock per key); the others wait, then load.

Each use is logged to ``stats.jsonl`` in the folder (``computed`` with the seconds it took,
or ``reused``), which :meth:`runfleet.Experiment.stage_stats` sums up.

Workers that cannot reach the folder (other nodes of a Ray cluster) are given a *share*
instead: an object with the methods of :class:`FolderKeeper` (claim, renew, release,
fetch, publish, log), which the executor runs next to the folder. One worker in the whole
cluster computes a key; the others wait, then fetch the published folder as one archive.

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
import io
import json
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

STATS_FILE = "stats.jsonl"
CLAIM_S = 60.0  # a claim not renewed for this long is free again (its holder died)
_WAIT_S = 0.2  # how often a worker waiting for another's result asks again


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

    def __init__(self, root: Path | None, experiment: str = "", share: Any = None) -> None:
        self.root = Path(root) if root is not None else None
        self.experiment = experiment
        self.share = share
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
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
        if self.share is not None and save is not None and load is not None:
            started = time.perf_counter()
            value, event = self._through_share(stage, key, compute, save, load)
            self._memory[key] = value
            self._log(stage, key, event, time.perf_counter() - started, run)
            return value
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
        _publish(folder, lambda tmp: save(value, tmp))

    def _through_share(self, stage: str, key: str, compute: Callable[[], T],
                       save: Callable[[T, Path], None], load: Callable[[Path], T]
                       ) -> tuple[T, str]:
        """The result from the share: fetched when published, else computed here and
        published when this worker wins the claim, else waited for."""
        share = self.share
        while True:
            answer = share.claim(stage, key, self._owner)
            if answer == "done":
                blob = share.fetch(stage, key)
                if blob is None:
                    continue  # removed in between: claim again
                with tempfile.TemporaryDirectory(prefix="runfleet-stage-") as tmp:
                    unpack(blob, Path(tmp))
                    return load(Path(tmp)), "reused"
            if answer == "yours":
                with _renewing(share, stage, key, self._owner):
                    try:
                        value = compute()
                        with tempfile.TemporaryDirectory(prefix="runfleet-stage-") as tmp:
                            save(value, Path(tmp))
                            blob = pack(Path(tmp))
                    except BaseException:
                        share.release(stage, key, self._owner)
                        raise
                    share.publish(stage, key, self._owner, blob)
                return value, "computed"
            time.sleep(_WAIT_S)  # another worker computes it

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
        if self.share is not None:
            self.share.log({"experiment": self.experiment, "stage": stage, "key": key,
                            "event": event, "seconds": round(seconds, 6), "run": run,
                            "pid": os.getpid(), "host": socket.gethostname(),
                            "time": time.time()})
            return
        if self.root is None:
            self._events.append({"stage": stage, "key": key, "event": event,
                                "seconds": seconds, "run": run})
            return
        _append_stat(self.root, {"experiment": self.experiment, "stage": stage, "key": key,
                                 "event": event, "seconds": round(seconds, 6), "run": run,
                                 "pid": os.getpid(), "time": time.time()})

    @property
    def events(self) -> list[dict[str, Any]]:
        """The uses logged in memory (only when there is no folder)."""
        return self._events


def _append_stat(root: Path, event: dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(root / STATS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())  # one small append: whole lines
    finally:
        os.close(fd)


def _publish(folder: Path, fill: Callable[[Path], None]) -> None:
    """Fill a fresh folder and rename it into place: a crash leaves no half result."""
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, mode=0o700)
    fill(tmp)
    (tmp / "DONE").write_text(json.dumps({"time": time.time()}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def pack(folder: Path) -> bytes:
    """A folder's files as one archive (what a share sends between nodes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.name != "DONE":
                tar.add(path, arcname=path.name)
    return buffer.getvalue()


def unpack(blob: bytes, folder: Path) -> None:
    """Write the files of a :func:`pack` archive into ``folder`` (plain files only)."""
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        tar.extractall(folder, filter="data")


@contextlib.contextmanager
def _renewing(share: Any, stage: str, key: str, owner: str) -> Iterator[None]:
    """Keep a claim alive while its holder computes (a dead holder stops renewing)."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(max(CLAIM_S / 4, 0.05)):
            with contextlib.suppress(Exception):
                share.renew(stage, key, owner)

    thread = threading.Thread(target=renew, daemon=True, name="runfleet-stage-claim")
    thread.start()
    try:
        yield
    finally:
        done.set()


class FolderKeeper:
    """Serves a stage folder to workers that cannot reach it (on other nodes), run next to
    the folder by the executor (e.g. as a Ray actor on the controller's node).

    The contract a share follows (:class:`StageCache` calls these):

    - ``claim(stage, key, owner)``: ``"done"`` when the result is published, ``"yours"``
      when the caller must compute it (nobody else holds a live claim), ``"busy"`` when
      another holder computes it; a claim lapses unless renewed within :data:`CLAIM_S`;
    - ``renew`` / ``release``: keep or drop the caller's claim;
    - ``publish(stage, key, owner, blob)``: the :func:`pack` ed result, written into the
      folder atomically; ``fetch`` gives it back (None when absent);
    - ``log(event)``: one line of ``stats.jsonl`` in the folder.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._claims: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _done(self, stage: str, key: str) -> bool:
        return (self.root / stage / key / "DONE").exists()

    def claim(self, stage: str, key: str, owner: str) -> str:
        """See the class docstring."""
        with self._lock:
            if self._done(stage, key):
                return "done"
            now = time.monotonic()
            held = self._claims.get((stage, key))
            if held is not None and held[0] != owner and held[1] > now:
                return "busy"
            self._claims[(stage, key)] = (owner, now + CLAIM_S)
            return "yours"

    def renew(self, stage: str, key: str, owner: str) -> None:
        """See the class docstring."""
        with self._lock:
            held = self._claims.get((stage, key))
            if held is not None and held[0] == owner:
                self._claims[(stage, key)] = (owner, time.monotonic() + CLAIM_S)

    def release(self, stage: str, key: str, owner: str) -> None:
        """See the class docstring."""
        with self._lock:
            held = self._claims.get((stage, key))
            if held is not None and held[0] == owner:
                del self._claims[(stage, key)]

    def publish(self, stage: str, key: str, owner: str, blob: bytes) -> None:
        """See the class docstring."""
        _publish(self.root / stage / key, lambda tmp: unpack(blob, tmp))
        self.release(stage, key, owner)

    def fetch(self, stage: str, key: str) -> bytes | None:
        """See the class docstring."""
        if not self._done(stage, key):
            return None
        return pack(self.root / stage / key)

    def log(self, event: dict[str, Any]) -> None:
        """See the class docstring."""
        _append_stat(self.root, event)


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
