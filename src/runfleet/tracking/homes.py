"""Per-process registry of open homes: one store connection and one writer per home.

Opening a home also replays spill files left by earlier processes. At interpreter exit
every writer is flushed and closed (after active runs are finished).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import warnings
from dataclasses import dataclass

from runfleet.home import Home
from runfleet.store.base import StoreBusyError
from runfleet.store.sqlite import SQLiteStore
from runfleet.tracking import spill
from runfleet.tracking.writer import RunfleetWriteWarning, Writer, writer_pid_guard

OPEN_RETRY_S = 60.0  # how long opening a home (or creating a run) waits for the lock
# Optional cap on the database size in 4 KiB pages; writes past it spill to files.
MAX_PAGES_ENV = "RUNFLEET_MAX_DB_PAGES"


@dataclass
class OpenHome:
    """A home opened for writing in this process."""

    home: Home
    store: SQLiteStore
    writer: Writer


_lock = threading.Lock()
_open: dict[str, OpenHome] = {}
_pid = os.getpid()


def open_store(home: Home) -> SQLiteStore:
    """Open the home's database, retrying while another process holds the write lock."""
    home.ensure()
    quota = os.environ.get(MAX_PAGES_ENV)
    max_pages = int(quota) if quota else None
    deadline = time.monotonic() + OPEN_RETRY_S
    delay = 0.01
    while True:
        try:
            return SQLiteStore.open(home.db_path, max_pages=max_pages)
        except StoreBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def get(home: Home) -> OpenHome:
    """The open home for ``home`` in this process, opening it on first use."""
    global _pid
    key = str(home.root)
    with _lock:
        if os.getpid() != _pid:  # forked child: never share the parent's connection
            _open.clear()
            _pid = os.getpid()
        opened = _open.get(key)
        if opened is not None:
            return opened
        store = open_store(home)
        try:
            spill.replay(home, store)
        except Exception as exc:  # replay is retried at the next open; never block init
            warnings.warn(f"runfleet could not replay spilled points yet: {exc}",
                          RunfleetWriteWarning, stacklevel=3)
        writer = Writer(store, home)
        writer_pid_guard(writer)
        opened = _open[key] = OpenHome(home, store, writer)
        return opened


def close_all() -> None:
    """Drain the tracking sinks, then flush and close every writer (at exit and in tests)."""
    from runfleet.sinks import fanout

    fanout.close_all()
    with _lock:
        items = list(_open.values())
        _open.clear()
    for opened in items:
        opened.writer.close()
        opened.store.close()


atexit.register(close_all)
