"""Live updates by Server-Sent Events: new points and run changes since a cursor.

The page opens one ``GET /api/stream?project=P[&runs=a,b][&cursor=C]`` per project view. The
server then watches the project's runs table (status, last step, update time: one cheap
query, no history) every :data:`POLL_S` seconds and sends

* ``event: run`` with a run's JSON when it is new or its status, summary or last step
  changed;
* ``event: points`` with ``{run, key, steps, times, values}``: only the points logged after
  the cursor's step for that run (more than :data:`LIVE_MAX_POINTS` at once are thinned to
  min/max pairs, so a fast run never floods the page);
* ``event: op`` with a control op's JSON (as ``GET /api/ops`` lists it) when it is new or
  its status changed (pending -> applied or rejected), for every run of the project;
* ``event: controller`` with ``{experiment, alive}`` when a controller starts or ends (the
  first event, ``hello``, carries it as ``{"controller": {...}}``);
* an ``id:`` line carrying the new cursor, which the browser sends back as
  ``Last-Event-ID`` when it reconnects, so nothing is sent twice or lost.

The cursor (see ``cursor.py``) is base64url JSON ``{run id: last step sent}``, or
``{"r": {run id: step}, "o": N}`` once ops are followed: every op with id >= N is (re)sent,
so N is the first op that was still pending (or one past the last op sent). Runs absent
from it start at their current last step (the page just fetched their history); runs
created after the stream opened are sent from their first point. Without an op position
(``ops_from``), only op changes after the stream opened are sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import numpy as np

from runfleet.api import Api
from runfleet.dashboard import jsonio
from runfleet.dashboard.cursor import encode_cursor, op_position
from runfleet.dashboard.query import op_json, run_json
from runfleet.dashboard.spec import ApiError
from runfleet.downsample import min_max_buckets
from runfleet.engine.lease import controller_state
from runfleet.store.base import SYSTEM_PREFIX

POLL_S = 0.25
HEARTBEAT_S = 15.0
LIVE_MAX_POINTS = 2000


CONTROLLER_CHECK_S = 1.0


class LiveWatcher:
    """Finds what changed in a project since the last call to :meth:`poll`."""

    def __init__(self, api: Api, project: str, runs: list[str] | None,
                 cursor: dict[str, int], ops_from: int | None = None) -> None:
        self.api = api
        self.project = project
        states = api.store.run_states(project)
        self.ids = {s.rid: s.id for s in states}
        by_id = {s.id: s for s in states}
        missing = [r for r in (runs or []) if r not in by_id]
        if missing:
            raise ApiError(404, f"unknown run {missing[0]!r} in project {project!r}")
        self.known = {s.rid: (s.status, s.last_step, s.updated) for s in states}
        watched = [by_id[r] for r in runs] if runs else states
        self.watched = {s.rid for s in watched}
        self.cursor = {s.rid: cursor.get(s.id, s.last_step) for s in watched}
        # Ops: every op with id >= ops_from may be unsent or still change; op_status holds
        # what was sent of those. Without a position, the ops as they are now count as sent.
        self.op_status: dict[int, str] = {}
        if ops_from is None:
            current = api.store.ops(project)
            ops_from = op_position(current, 0)
            self.op_status = {op.id: op.status for op in current if op.id >= ops_from}
        self.ops_from = ops_from
        self.controller = controller_state(api.home.root, project)
        self.controller_checked = time.monotonic()

    def token(self) -> str:
        """The cursor token for what has been sent so far."""
        return encode_cursor({self.ids[rid]: step for rid, step in self.cursor.items()},
                             self.ops_from)

    def poll(self) -> list[tuple[str, dict[str, Any]]]:
        """Events for what changed since the previous call."""
        events = self._poll_runs()
        events += self._poll_ops()
        if time.monotonic() - self.controller_checked >= CONTROLLER_CHECK_S:
            self.controller_checked = time.monotonic()
            state = controller_state(self.api.home.root, self.project)
            if state != self.controller:
                self.controller = state
                events.append(("controller", dict(state)))
        return events

    def _poll_ops(self) -> list[tuple[str, dict[str, Any]]]:
        events: list[tuple[str, dict[str, Any]]] = []
        found = self.api.store.ops(self.project, after=self.ops_from - 1)
        for op in found:
            if self.op_status.get(op.id) != op.status:
                self.op_status[op.id] = op.status
                events.append(("op", op_json(op)))
        self.ops_from = op_position(found, self.ops_from - 1)
        self.op_status = {i: st for i, st in self.op_status.items() if i >= self.ops_from}
        return events

    def _poll_runs(self) -> list[tuple[str, dict[str, Any]]]:
        store = self.api.store
        events: list[tuple[str, dict[str, Any]]] = []
        for st in store.run_states(self.project):
            state = (st.status, st.last_step, st.updated)
            previous = self.known.get(st.rid)
            if previous is None:  # a run created after the stream opened: watch it all
                self.ids[st.rid] = st.id
                self.watched.add(st.rid)
                self.cursor[st.rid] = -1
            if previous != state:
                self.known[st.rid] = state
                events.append(("run", run_json(self.api.wrap(store.get_run(st.rid)))))
            after = self.cursor.get(st.rid)
            if st.rid in self.watched and after is not None and st.last_step > after:
                for info in store.keys(st.rid):
                    if info.key.startswith(SYSTEM_PREFIX) or info.step_max <= after:
                        continue
                    s = store.series(st.rid, info.key, start=after + 1)
                    if len(s.steps):
                        events.append(("points", _points(st.id, s.key, s.steps, s.times,
                                                         s.values)))
                self.cursor[st.rid] = st.last_step
        return events


def _points(run: str, key: str, steps: Any, times: Any, values: Any) -> dict[str, Any]:
    thinned = False
    if len(steps) > LIVE_MAX_POINTS:
        thinned = True
        if values.dtype.kind in "fiub":
            b = min_max_buckets(steps, values.astype(np.float64), LIVE_MAX_POINTS // 2)
            x = np.repeat(b["x"], 2)
            values = np.column_stack([b["min"], b["max"]]).reshape(-1)
            times = np.interp(x, steps, times)
            steps = x
        else:
            pick = np.unique(np.linspace(0, len(steps) - 1, LIVE_MAX_POINTS).astype(int))
            steps, times, values = steps[pick], times[pick], values[pick]
    return {"run": run, "key": key, "steps": np.asarray(steps).tolist(),
            "times": jsonio.floats(times), "values": jsonio.values(values),
            "thinned": thinned}


def _event(name: str, data: Any, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {jsonio.dumps(data).decode('utf-8')}\n\n"


async def event_stream(watcher: LiveWatcher, max_seconds: float | None,
                       stopping: threading.Event | None = None) -> AsyncIterator[str]:
    """The SSE body: events as they happen, a comment line as heartbeat when idle. Ends
    after ``max_seconds`` or when ``stopping`` is set (the server is shutting down)."""
    started = last_sent = time.monotonic()
    hello = jsonio.dumps({"controller": watcher.controller}).decode("utf-8")
    yield f"retry: 1000\nid: {watcher.token()}\nevent: hello\ndata: {hello}\n\n"
    while max_seconds is None or time.monotonic() - started < max_seconds:
        if stopping is not None and stopping.is_set():
            return
        events = await anyio.to_thread.run_sync(watcher.poll)
        if events:
            token = watcher.token()
            for i, (name, data) in enumerate(events):
                yield _event(name, data, token if i == len(events) - 1 else None)
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent > HEARTBEAT_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await anyio.sleep(POLL_S)
