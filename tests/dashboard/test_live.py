"""Live updates: only new points and changes since the cursor, over a real SSE stream."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from runfleet.api import Api
from runfleet.dashboard import live
from runfleet.dashboard.cursor import decode_cursor, encode_cursor
from runfleet.dashboard.spec import ApiError
from runfleet.store import codec
from runfleet.store.base import SeriesChunk, WriteBatch
from runfleet.store.sqlite import SQLiteStore


def _write(store: SQLiteStore, rid: int, start: int, stop: int, key: str = "loss") -> None:
    steps = np.arange(start, stop, dtype=np.int64)
    times = (1.7e9 + steps * 1.0).astype(np.float64)
    store.write(WriteBatch(series=[SeriesChunk(rid, key, codec.FLOAT, steps, times,
                                               steps * 0.5)]))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    store = SQLiteStore.open(tmp_path / "runfleet.db")
    rid = store.create_run("p", "a", "run-a").rid
    _write(store, rid, 0, 100)
    store.close()
    return tmp_path


def test_cursor_round_trip_and_bad_tokens() -> None:
    token = encode_cursor({"a": 5, "b/x": -1})
    assert decode_cursor(token) == {"a": 5, "b/x": -1}
    not_steps = encode_cursor({"a": "x"})  # type: ignore[dict-item]
    for bad in ("!!!", not_steps, "W10"):  # not base64 JSON; steps not ints; a list
        with pytest.raises(ApiError, match="malformed cursor"):
            decode_cursor(bad)


def test_only_new_points_and_changes_are_sent(home: Path) -> None:
    api = Api(home)
    writer = SQLiteStore.open(home / "runfleet.db")
    watcher = live.LiveWatcher(api, "p", None, {"a": 99})
    assert watcher.poll() == []
    _write(writer, 1, 100, 110)
    events = watcher.poll()
    kinds = [name for name, _ in events]
    assert kinds == ["run", "points"]
    points = events[1][1]
    assert points["run"] == "a" and points["key"] == "loss"
    assert points["steps"] == list(range(100, 110)) and points["values"][0] == 50.0
    assert watcher.poll() == []  # nothing twice
    writer.update_run(1, status="completed")
    (name, run), = watcher.poll()
    assert name == "run" and run["status"] == "completed"
    # A run created after the stream opened is sent whole.
    rid = writer.create_run("p", "b", "run-b").rid
    _write(writer, rid, 0, 5)
    events = watcher.poll()
    assert ("run", "b") in [(n, d.get("id")) for n, d in events]
    assert [d["steps"] for n, d in events if n == "points"] == [[0, 1, 2, 3, 4]]
    assert decode_cursor(watcher.token()) == {"a": 109, "b": 4}
    writer.close()
    api.close()


def test_catch_up_from_an_older_cursor_and_thinning(home: Path) -> None:
    api = Api(home)
    watcher = live.LiveWatcher(api, "p", ["a"], {"a": 49})
    (_, data), = [e for e in watcher.poll() if e[0] == "points"]
    assert data["steps"] == list(range(50, 100))
    writer = SQLiteStore.open(home / "runfleet.db")
    _write(writer, 1, 100, 100 + 3 * live.LIVE_MAX_POINTS)
    (_, data), = [e for e in watcher.poll() if e[0] == "points"]
    assert data["thinned"] and len(data["steps"]) <= live.LIVE_MAX_POINTS
    assert max(data["values"]) == (100 + 3 * live.LIVE_MAX_POINTS - 1) * 0.5
    with pytest.raises(ApiError, match="unknown run"):
        live.LiveWatcher(api, "p", ["zzz"], {})
    writer.close()
    api.close()


def _read_events(url: str, out: list[tuple[str, Any]], seconds: float) -> None:
    with httpx.stream("GET", url, timeout=seconds + 5) as res:
        name = None
        for line in res.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                out.append((name, json.loads(line[6:])))


def test_sse_stream_over_http(home: Path, serve: Any) -> None:
    url = serve(home).url
    runs = httpx.get(f"{url}/api/runs", params={"project": "p"}).json()
    events: list[tuple[str, Any]] = []
    reader = threading.Thread(target=_read_events, args=(
        f"{url}/api/stream?project=p&cursor={runs['cursor']}&max_seconds=3", events, 3))
    reader.start()
    deadline = time.monotonic() + 5
    while not events and time.monotonic() < deadline:
        time.sleep(0.02)
    assert events and events[0][0] == "hello"
    writer = SQLiteStore.open(home / "runfleet.db")
    _write(writer, 1, 100, 103)
    writer.close()
    reader.join(timeout=10)
    points = [d for n, d in events if n == "points"]
    assert [p["steps"] for p in points] == [[100, 101, 102]]
    res = httpx.get(f"{url}/api/stream", params={"project": "p", "runs": "nope"})
    assert res.status_code == 404
