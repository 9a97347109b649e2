"""Bad data never becomes a traceback or a dead project: a database damaged in the middle,
lone surrogates stored below the tracking API, unknown projects on the live stream."""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
import zlib
from pathlib import Path

import numpy as np
from starlette.testclient import TestClient

from runfleet.dashboard import jsonio
from runfleet.dashboard.app import create_app
from runfleet.dashboard.routes import store_failure
from runfleet.store import codec
from runfleet.store.base import SeriesChunk, StoreBusyError, WriteBatch
from runfleet.store.sqlite import SQLiteStore
from tests.dashboard.helpers import auth

PAGE = 4096


def _damage_the_middle(db: Path) -> None:
    """Overwrite a quarter of the pages in the middle of the file (page 1, the header and
    schema, stays intact, so the database still opens)."""
    size = db.stat().st_size
    pages = size // PAGE
    rng = random.Random(7)
    with db.open("r+b") as fh:  # the test owns this copy: no SQLite connection is open on it
        for page in range(pages * 3 // 8, pages * 5 // 8):
            fh.seek(page * PAGE)
            fh.write(rng.randbytes(PAGE))


def test_a_database_damaged_in_the_middle_is_a_clear_503(demo_copy: Path) -> None:
    app = create_app(demo_copy)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        runs = c.get("/api/runs", params={"project": "demo"}).json()["runs"]
    app.state.query.close()
    ids = ",".join(r["id"] for r in runs)
    db = demo_copy / "runfleet.db"
    assert not (demo_copy / "runfleet.db-wal").exists() or \
        (demo_copy / "runfleet.db-wal").stat().st_size == 0
    _damage_the_middle(db)
    app = create_app(demo_copy)  # still openable: the header and schema are intact
    answers = {}
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        for path, params in [
                ("/api/runs", {"project": "demo"}), ("/api/keys", {"project": "demo"}),
                ("/api/run", {"project": "demo", "run": runs[1]["id"]}),
                ("/api/series", {"project": "demo", "key": "loss", "runs": ids}),
                ("/api/series", {"project": "demo", "key": "acc", "runs": ids}),
                ("/api/export.csv", {"project": "demo"})]:
            res = c.get(path, params=params)
            answers[(path, params.get("key"))] = res.status_code
            assert res.status_code in (200, 503), (path, res.status_code, res.text[:300])
            if res.status_code == 503:
                error = res.json()["error"]
                assert str(db) in error and "damaged" in error and "recover" in error, error
                assert "Traceback" not in res.text
    assert 503 in answers.values(), answers  # the damage was read, and explained


def test_the_live_stream_of_an_unknown_project_is_404(client: TestClient) -> None:
    res = client.get("/api/stream", params={"project": "nope", "max_seconds": 0.1})
    assert res.status_code == 404 and "unknown project" in res.json()["error"]


def test_a_patch_with_a_lone_surrogate_is_refused_naming_the_field(demo_copy: Path) -> None:
    app = create_app(demo_copy)
    with TestClient(app, base_url="http://127.0.0.1", headers=auth(app)) as c:
        run = c.get("/api/runs", params={"project": "demo"}).json()["runs"][0]
        url = f"/api/run?project=demo&run={run['id']}"
        json_headers = {"Content-Type": "application/json"}
        for raw, field in [(b'{"notes": "a\\ud800b"}', "notes"),
                           (b'{"tags": ["ok", "\\udfff"]}', "tags[1]")]:
            res = c.patch(url, content=raw, headers=json_headers)
            assert res.status_code == 400, res.text
            assert repr(field) in res.json()["error"] and "surrogate" in res.json()["error"]
        after = c.get("/api/run", params={"project": "demo", "run": run["id"]}).json()
        assert after["notes"] == run["notes"] and after["tags"] == run["tags"]  # untouched


def test_values_stored_with_lone_surrogates_never_break_a_listing(tmp_path: Path) -> None:
    # Written below the tracking API (as an importer or an older runfleet could have).
    store = SQLiteStore.open(tmp_path / "runfleet.db")
    bad = store.create_run("s", "bad", "bad-run", config={"k\ud800": "v\udc00", "lr": 0.1})
    store.create_run("s", "good", "good-run", config={"lr": 0.2})
    # (JSON columns: SQLite's text columns cannot hold a lone surrogate at all)
    store.update_run(bad.rid, tags=["\ud800"], summary={"txt": "z\udfff"})
    steps = np.arange(3, dtype=np.int64)
    store.write(WriteBatch(series=[SeriesChunk(bad.rid, "txt", codec.JSON, steps,
                                               1.7e9 + steps.astype(np.float64),
                                               ["a\ud800b", "ok", "\udfff"])]))
    store.close()
    app = create_app(tmp_path)
    with TestClient(app, base_url="http://127.0.0.1", headers=auth(app)) as c:
        listing = c.get("/api/runs", params={"project": "s"})
        assert listing.status_code == 200
        runs = {r["id"]: r for r in json.loads(listing.content)["runs"]}
        assert set(runs) == {"bad", "good"}
        assert runs["bad"]["tags"] == ["\ud800"] and runs["bad"]["summary"]["txt"] == "z\udfff"
        detail = c.get("/api/run", params={"project": "s", "run": "bad"})
        assert detail.status_code == 200 and detail.json()["config"]["k\ud800"] == "v\udc00"
        series = c.get("/api/series", params={"project": "s", "key": "txt", "runs": "bad"})
        assert series.status_code == 200
        assert series.json()["series"][0]["y"] == ["a\ud800b", "ok", "\udfff"]  # escaped
        export = c.get("/api/export.csv", params={"project": "s"})
        assert export.status_code == 200
        rows = list(csv.DictReader(io.StringIO(export.content.decode("utf-8"))))
        text = [r["value"] for r in rows if r["key"] == "txt"]
        assert len(text) == 3 and text[1] == "ok"  # the others escaped or U+FFFD
        filtered = c.get("/api/runs", params={"project": "s", "search": "^bad",
                                              "regex": "true", "filter": "tags~."})
        assert [r["id"] for r in filtered.json()["runs"]] == ["bad"]


def test_text_encoding_helpers_never_fail_on_a_lone_surrogate() -> None:
    assert json.loads(jsonio.dumps({"s": "a\ud800b", "é": 1})) == {"s": "a\ud800b", "é": 1}
    assert jsonio.dumps({"é": 1}) == '{"é":1}'.encode()  # valid text stays as it is
    assert jsonio.safe_text("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert jsonio.has_surrogate("\udc80") and not jsonio.has_surrogate("é")


def test_store_failures_are_told_apart_from_bugs(tmp_path: Path) -> None:
    db = tmp_path / "runfleet.db"
    assert store_failure(RuntimeError("a bug"), db) is None
    assert store_failure(sqlite3.ProgrammingError("closed database"), db) is None
    for exc, words in [(sqlite3.DatabaseError("database disk image is malformed"), "damaged"),
                       (zlib.error("invalid stored block lengths"), "damaged"),
                       (StoreBusyError("database is locked"), "busy")]:
        failure = store_failure(exc, db)
        assert failure is not None and failure.status == 503
        assert str(db) in failure.message and words in failure.message
