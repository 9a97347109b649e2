"""Which process drives an experiment: the lease file in the experiment's folder.

An experiment lives in ``<home>/experiments/<name>/`` (``experiment.json`` marks it). While a
controller drives it, ``controller.json`` there names the controller's process
(``pid``, ``host``, ``started``). Only one live process may drive an experiment; the
others (``Experiment.attach``, the CLI, the dashboard) read the lease to tell whether ops
they write will be applied now or when a controller next runs.

Example:
    >>> lease = Lease(experiment_dir(home.root, "sft-demo"))          # doctest: +SKIP
    >>> lease.alive()                                                   # doctest: +SKIP
    False
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import psutil

from runfleet.home import EXPERIMENT_MARKER, Home

META_FILE = EXPERIMENT_MARKER  # marks a folder as an experiment; name, created, trackers
LEASE_FILE = "controller.json"


def experiment_dir(home_root: Path, name: str) -> Path:
    """Where the engine keeps the experiment ``name`` of the home at ``home_root``."""
    return Home(Path(home_root)).experiments_dir / name


def is_experiment(home_root: Path, name: str) -> bool:
    """Whether project ``name`` of the home is an engine experiment (its runs take ops)."""
    return Home(Path(home_root)).is_experiment(name)


class LeaseHeldError(RuntimeError):
    """Another live process drives the experiment."""


class Lease:
    """The lease of the experiment whose folder is ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LEASE_FILE

    def holder(self) -> dict[str, Any] | None:
        """The recorded controller (``pid``, ``host``, ``started``), alive or not."""
        try:
            info = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) and "pid" in info else None

    def alive(self) -> bool:
        """Whether a controller process drives the experiment now (on this host)."""
        info = self.holder()
        if info is None:
            return False
        try:
            pid = int(info["pid"])
        except (TypeError, ValueError):
            return False
        return info.get("host") == socket.gethostname() and psutil.pid_exists(pid)

    def check_free(self) -> None:
        """Raise :class:`LeaseHeldError` if another live process holds the lease."""
        info = self.holder()
        if self.alive() and info is not None and info.get("pid") != os.getpid():
            raise LeaseHeldError(str(info.get("pid")))

    def take(self) -> None:
        """Claim the lease for this process (atomically replacing a dead holder's)."""
        self.check_free()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                   "started": time.time()}))
        os.replace(tmp, self.path)

    def release(self) -> None:
        """Give the lease up (no-op when it is gone)."""
        self.path.unlink(missing_ok=True)


def controller_state(home_root: Path, name: str) -> dict[str, bool]:
    """``experiment``: whether project ``name`` is an engine experiment; ``alive``: whether
    a controller process drives it now."""
    found = is_experiment(home_root, name)
    return {"experiment": found,
            "alive": found and Lease(experiment_dir(home_root, name)).alive()}
