"""Fan-out: each sink gets its calls from its own background thread, so no sink slows training.

``Run.log()`` appends a copy of the row to the queue of every sink channel of the run and
returns; the channel's thread drains the queue every ``interval`` seconds (or sooner when
it grows), groups consecutive rows of a run into one :meth:`Sink.log` call, and forwards
status changes and the run's end in order. A sink call that raises is counted; the first
failure of each run is recorded on the run as a ``warn`` alert (and as a Python warning)
with the sink's name and the error, the others are counted and summed up when the run
finishes. The sink keeps getting later calls (transient errors heal themselves); runfleet's
own store never depends on a sink. A sink that cannot keep up gets at most ``max_queue``
rows queued; rows beyond that are dropped *for that sink only* and counted on the run.

Channels are shared per sink object within a process; a channel's thread exits after
``IDLE_EXIT_S`` seconds without any open run and starts again when a run needs it. At
interpreter exit every channel is drained and closed (within ``RUNFLEET_SINK_TIMEOUT``
seconds in all, default 60).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import threading
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runfleet.sinks.base import Row, RunInfo, Sink

DEFAULT_INTERVAL_S = 0.2
DEFAULT_MAX_QUEUE = 1_000_000
WAKE_AT = 20_000
IDLE_EXIT_S = 30.0  # a channel's thread exits after this long without any open run
TIMEOUT_ENV = "RUNFLEET_SINK_TIMEOUT"

ErrorHook = Callable[[str, int | None], None]  # (message, step) -> record it on the run

# queue items: (kind, run_id, payload)
_START, _LOG, _STATUS, _CONFIG, _FINISH, _BARRIER = range(6)


class RunfleetSinkWarning(RuntimeWarning):
    """A tracking sink failed or fell behind; runfleet's own store has everything."""


def sink_timeout() -> float:
    """Seconds to wait for sinks to drain when a run or the process ends."""
    try:
        return float(os.environ.get(TIMEOUT_ENV, "60"))
    except ValueError:
        return 60.0


@dataclass
class _RunState:
    on_error: ErrorHook
    failures: int = 0
    dropped: int = 0
    last_step: int | None = None
    first_error: str | None = None
    skipped_start: bool = False


@dataclass
class _Barrier:
    done: threading.Event = field(default_factory=threading.Event)


class SinkChannel:
    """The queue and thread that feed one :class:`Sink`."""

    def __init__(self, sink: Sink, interval: float = DEFAULT_INTERVAL_S,
                 max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self.sink = sink
        self.interval = interval
        self.max_queue = max_queue
        self._queue: deque[tuple[int, str, Any]] = deque()
        self._runs: dict[str, _RunState] = {}
        self._runs_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._forked = False  # set in a fork()ed child: the parent owns the queue and sink
        self._warned: set[str] = set()
        self._life = threading.Lock()  # guards starting the thread and its idle exit
        self._alive = False
        self._thread: threading.Thread | None = None
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        """Start the channel's thread unless it runs (it exits after ``IDLE_EXIT_S`` without
        any open run, so idle sinks hold no thread)."""
        with self._life:
            if self._alive or self._closed or self._forked:
                return
            self._alive = True
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name=f"runfleet-sink-{self.sink.name}")
            self._thread.start()

    # -- producer side ----------------------------------------------------------------------------
    def start_run(self, info: RunInfo, on_error: ErrorHook) -> None:
        """Queue the start of a run; ``on_error`` records failures on it."""
        with self._runs_lock:
            self._runs[info.run_id] = _RunState(on_error)
        self._put(_START, info.run_id, info)
        if info.status is not None:
            self._put(_STATUS, info.run_id, info.status)

    def log(self, run_id: str, step: int, when: float, values: Mapping[str, Any]) -> None:
        """Queue one row (the caller passes a private copy of the values)."""
        q = self._queue
        if len(q) >= self.max_queue or self._forked:
            state = self._runs.get(run_id)
            if state is not None:
                state.dropped += 1
            return
        q.append((_LOG, run_id, (step, when, values)))
        if not self._alive:
            self._ensure_thread()
        if len(q) >= WAKE_AT:
            self._wake.set()

    def set_status(self, run_id: str, status: str) -> None:
        """Queue a status change."""
        self._put(_STATUS, run_id, status)

    def update_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Queue a config change (the whole new config)."""
        self._put(_CONFIG, run_id, dict(config))

    def finish_run(self, run_id: str, status: str) -> None:
        """Queue the run's end."""
        self._put(_FINISH, run_id, (status, self._runs.get(run_id)))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call reached the sink."""
        if self._forked:
            return True
        if self._closed:
            self._drain()
            return True
        barrier = _Barrier()
        self._put(_BARRIER, "", barrier)
        return barrier.done.wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Drain the queue, close the sink and stop the thread; False if it timed out."""
        if self._closed or self._forked:
            return True
        drained = self.flush(timeout)
        self._closed = True
        self._wake.set()
        if drained:
            thread = self._thread
            if thread is not None:
                thread.join(timeout)
                if thread.is_alive():  # still inside a sink call: never call it twice
                    return False
            try:
                self.sink.close()
            except Exception as exc:
                self._warn_once("close", f"the {self.sink.name} sink failed to close: {exc!r}")
        else:
            self._warn_once("timeout", f"the {self.sink.name} sink did not take all queued "
                            f"data within {timeout} s; what it did not take is only in "
                            f"runfleet's store")
        return drained

    def _put(self, kind: int, run_id: str, payload: Any) -> None:
        if self._forked:
            return
        self._queue.append((kind, run_id, payload))
        self._ensure_thread()
        self._wake.set()

    # -- channel thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        idle_since: float | None = None
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self._drain()
            except Exception as exc:  # a bug here must never kill the thread
                self._warn_once("loop", f"the {self.sink.name} sink channel hit an error: "
                                f"{exc!r}")
            if self._queue or self._runs:
                idle_since = None
                continue
            now = time.monotonic()
            idle_since = idle_since if idle_since is not None else now
            if now - idle_since >= IDLE_EXIT_S:
                with self._life:
                    self._alive = False  # producers that see this restart a thread
                    if not self._queue and not self._runs:
                        return
                    self._alive = True
                idle_since = None
        with self._life:
            self._alive = False

    def _drain(self) -> None:
        q = self._queue
        pending: dict[str, list[Row]] = {}
        while q:
            kind, run_id, payload = q.popleft()
            if kind == _LOG:
                pending.setdefault(run_id, []).append(payload)
                continue
            if kind == _BARRIER:
                try:
                    self._send_logs(pending)
                finally:
                    payload.done.set()
                continue
            rows = pending.pop(run_id, None)
            if rows:
                self._send_rows(run_id, rows)
            self._apply(kind, run_id, payload)
        self._send_logs(pending)

    def _send_logs(self, pending: dict[str, list[Row]]) -> None:
        for run_id, rows in pending.items():
            self._send_rows(run_id, rows)
        pending.clear()

    def _send_rows(self, run_id: str, rows: list[Row]) -> None:
        state = self._runs.get(run_id)
        if state is not None:
            state.last_step = rows[-1][0]
        self._call(run_id, "log", self.sink.log, run_id, rows)

    def _apply(self, kind: int, run_id: str, payload: Any) -> None:
        sink = self.sink
        if kind == _START:
            self._call(run_id, "start_run", sink.start_run, payload)
        elif kind == _STATUS:
            self._call(run_id, "set_status", sink.set_status, run_id, payload)
        elif kind == _CONFIG:
            self._call(run_id, "update_config", sink.update_config, run_id, payload)
        elif kind == _FINISH:
            status, state = payload
            self._call(run_id, "finish_run", sink.finish_run, run_id, status)
            self._report_end(run_id, state)

    def _call(self, run_id: str, what: str, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            state = self._runs.get(run_id)
            message = (f"the {self.sink.name} sink failed in {what}: {exc!r}; runfleet's "
                       f"store has everything")
            if state is None:
                self._warn_once(what, message)
                return
            state.failures += 1
            if state.failures == 1:
                state.first_error = "".join(traceback.format_exception_only(exc)).strip()
                self._record(state, message)

    def _report_end(self, run_id: str, state: _RunState | None) -> None:
        with self._runs_lock:
            if state is not None and self._runs.get(run_id) is state:
                del self._runs[run_id]  # a newer start of the same run keeps its own state
        if state is None:
            return
        notes = []
        if state.failures > 1:
            notes.append(f"{state.failures} calls to the {self.sink.name} sink failed "
                         f"(first: {state.first_error})")
        if state.dropped:
            notes.append(f"the {self.sink.name} sink fell behind: {state.dropped} points "
                         f"were not sent to it (runfleet's store has them)")
        for note in notes:
            self._record(state, note)

    def _record(self, state: _RunState, message: str) -> None:
        self._warn_once(message.split(":")[0], message)
        with contextlib.suppress(Exception):  # recording it must not fail the channel
            state.on_error(message, state.last_step)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            with contextlib.suppress(Exception):  # e.g. -W error: never kill the channel
                warnings.warn(message, RunfleetSinkWarning, stacklevel=2)


class RunSinks:
    """The channels of one run: what :class:`runfleet.tracking.run.Run` calls."""

    __slots__ = ("channels", "info", "on_error", "run_id")

    def __init__(self, channels: Iterable[SinkChannel], info: RunInfo,
                 on_error: ErrorHook) -> None:
        self.channels = tuple(channels)
        self.info = info
        self.on_error = on_error
        self.run_id = info.run_id
        for ch in self.channels:
            ch.start_run(info, on_error)

    def log(self, step: int, when: float, values: Mapping[str, Any]) -> None:
        """Forward one row (copied once, shared by the channels)."""
        row = dict(values)
        for ch in self.channels:
            ch.log(self.run_id, step, when, row)

    def set_status(self, status: str) -> None:
        """Forward a status change."""
        for ch in self.channels:
            ch.set_status(self.run_id, status)

    def update_config(self, config: Mapping[str, Any]) -> None:
        """Forward a config change."""
        for ch in self.channels:
            ch.update_config(self.run_id, config)

    def finish(self, status: str) -> None:
        """Forward the run's end."""
        for ch in self.channels:
            ch.finish_run(self.run_id, status)

    def finish_again(self, status: str) -> None:
        """A run that already ended changed status (e.g. deleted): reopen it in the sinks
        and end it with ``status``."""
        info = dataclasses.replace(self.info, resumed=True, status=None)
        for ch in self.channels:
            ch.start_run(info, self.on_error)
            ch.finish_run(self.run_id, status)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every channel delivered what this run queued; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for ch in self.channels:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ok = ch.flush(left) and ok
        return ok


# -- registry: one channel per sink object per process ---------------------------------------------
_lock = threading.Lock()
_channels: dict[int, SinkChannel] = {}
_pid = os.getpid()


def channel_for(sink: Sink) -> SinkChannel:
    """The process's channel for ``sink`` (created, with its thread, on first use)."""
    global _pid
    with _lock:
        if os.getpid() != _pid:  # a forked child must not use the parent's threads
            _channels.clear()
            _pid = os.getpid()
        ch = _channels.get(id(sink))
        if ch is None or ch._closed:
            ch = _channels[id(sink)] = SinkChannel(sink)
        return ch


def flush_all(timeout: float | None = None) -> bool:
    """Wait until every channel of this process delivered what is queued."""
    with _lock:
        channels = list(_channels.values())
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for ch in channels:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = ch.flush(left) and ok
    return ok


def close_all(timeout: float | None = None) -> None:
    """Drain and close every channel within one shared deadline (at exit, and in tests).

    :func:`runfleet.tracking.homes.close_all` calls this first, so that what the sinks
    report while draining (failures, dropped rows) still reaches the runs' writers.
    """
    with _lock:
        channels = list(_channels.values())
        _channels.clear()
    limit = sink_timeout() if timeout is None else timeout
    deadline = time.monotonic() + limit
    for ch in channels:
        ch.close(max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    """A forked child must neither drain nor close its parent's channels and sinks."""
    global _pid
    for ch in list(_channels.values()):
        ch._forked = True
        ch._queue = deque()
    _channels.clear()
    _pid = os.getpid()
    from runfleet import sinks

    sinks._defaults.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(close_all)
