"""The store contract, run against every Store implementation.

A new implementation (e.g. PostgreSQL) joins by adding a factory to ``STORES``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from runfleet.errors import ArtifactNotFoundError, RunNotFoundError
from runfleet.store import codec
from runfleet.store.base import (
    AlertRow,
    ArtifactFile,
    ArtifactRole,
    MediaRow,
    SeriesChunk,
    Store,
    WriteBatch,
)
from runfleet.store.sqlite import SEGMENT_POINTS, SQLiteStore


def _sqlite(tmp: Path) -> Store:
    return SQLiteStore.open(tmp / "runfleet.db")


STORES: dict[str, Callable[[Path], Store]] = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = STORES[request.param](tmp_path)
    yield s
    s.close()


def _chunk(rid: int, key: str, steps: list[int], values: Sequence[object],
           kind: str = codec.FLOAT) -> SeriesChunk:
    vals: object = np.array(values, dtype=np.float64) if kind == codec.FLOAT else list(values)
    return SeriesChunk(rid, key, kind, np.array(steps, dtype=np.int64),
                       np.array([1.7e9 + s for s in steps], dtype=np.float64), vals)


def test_create_and_find_runs(store: Store) -> None:
    run = store.create_run("p", "abc", "first", group="g", config={"lr": 0.1}, tags=["t"])
    assert store.find_run("p", id="abc") == run
    assert store.find_run("p", name="first") == run
    assert store.find_run("p", id="nope") is None
    assert store.get_run(run.rid).config == {"lr": 0.1}
    with pytest.raises(ValueError, match="already exists"):
        store.create_run("p", "abc", "again")
    with pytest.raises(RunNotFoundError):
        store.get_run(10_000)


def test_create_or_get_run_creates_once_then_returns_the_run(store: Store) -> None:
    run, created = store.create_or_get_run("p", "abc", "first", group="g", config={"lr": 1},
                                           tags=["t"], metadata={"pid": 1})
    assert created and run == store.find_run("p", id="abc")
    assert (run.name, run.group, run.config, run.tags) == ("first", "g", {"lr": 1}, ["t"])
    again, created = store.create_or_get_run("p", "abc", "second", config={"lr": 2})
    assert not created and again == run  # returned unchanged
    other, created = store.create_or_get_run("q", "abc", "other")  # ids are per project
    assert created and other.rid != run.rid
    assert [p.run_count for p in store.projects()] == [1, 1]
    with pytest.raises(ValueError, match="already exists"):
        store.create_run("p", "abc", "third")


def test_projects_and_unknown_project(store: Store) -> None:
    store.create_run("p1", "a", "a")
    store.create_run("p1", "b", "b")
    store.create_run("p2", "c", "c")
    assert [(p.name, p.run_count) for p in store.projects()] == [("p1", 2), ("p2", 1)]
    assert [r.id for r in store.runs("p1")] == ["a", "b"]
    with pytest.raises(ValueError, match="unknown project 'zzz'"):
        store.runs("zzz")


def test_update_run_columns(store: Store) -> None:
    run = store.create_run("p", "a", "a")
    store.update_run(run.rid, status="completed", summary={"loss": math.inf}, notes="n")
    got = store.get_run(run.rid)
    assert got.status == "completed" and got.summary == {"loss": math.inf} and got.notes == "n"
    with pytest.raises(ValueError, match="cannot update"):
        store.update_run(run.rid, bogus=5)


def test_series_round_trip_and_range(store: Store) -> None:
    run = store.create_run("p", "a", "a")
    steps = list(range(10_000))
    values = [float(s) * 0.5 for s in steps]
    store.write(WriteBatch(series=[_chunk(run.rid, "loss", steps, values)]))
    s = store.series(run.rid, "loss")
    assert s.steps.tolist() == steps and s.values.tolist() == values
    part = store.series(run.rid, "loss", 100, 199)
    assert part.steps.tolist() == list(range(100, 200))
    assert store.get_run(run.rid).last_step == 9_999
    info = store.keys(run.rid)
    assert [(k.key, k.count, k.step_min, k.step_max) for k in info] == [("loss", 10_000, 0, 9_999)]


def test_appends_across_batches_fill_segments(store: Store) -> None:
    run = store.create_run("p", "a", "a")
    for start in range(0, 3 * SEGMENT_POINTS, 1000):
        steps = list(range(start, start + 1000))
        store.write(WriteBatch(series=[_chunk(run.rid, "x", steps, [float(s) for s in steps])]))
    s = store.series(run.rid, "x")
    expected = len(range(0, 3 * SEGMENT_POINTS, 1000)) * 1000
    assert s.steps.tolist() == list(range(expected))
    assert np.array_equal(s.values, s.steps.astype(np.float64))


def test_one_series_is_read_without_the_others(store: Store) -> None:
    run = store.create_run("p", "a", "a")
    store.write(WriteBatch(series=[_chunk(run.rid, "a", [0, 1], [1.0, 2.0]),
                                   _chunk(run.rid, "b", [0, 1], [3.0, 4.0])]))
    assert store.series(run.rid, "a").values.tolist() == [1.0, 2.0]
    assert store.series(run.rid, "b").values.tolist() == [3.0, 4.0]
    assert store.series(run.rid, "missing").steps.size == 0


def test_mixed_kinds_in_one_key_keep_order_by_step(store: Store) -> None:
    run = store.create_run("p", "a", "a")
    store.write(WriteBatch(series=[
        _chunk(run.rid, "k", [0, 2], [0.5, 2.5]),
        _chunk(run.rid, "k", [1], ["text"], kind=codec.JSON),
    ]))
    s = store.series(run.rid, "k")
    assert s.steps.tolist() == [0, 1, 2]
    assert s.values.tolist() == [0.5, "text", 2.5]


def test_media_alerts_and_run_updates_land_together(store: Store) -> None:
    run = store.create_run("p", "a", "a")
    store.write(WriteBatch(
        media=[MediaRow(run.rid, "img", 3, "image", "media/p/a/img.png", {"w": 1}, 1.0)],
        alerts=[AlertRow(run.rid, "t", "x", "warn", 3, 2.0)],
        run_updates={run.rid: {"summary": {"acc": 0.5}}},
    ))
    assert [m.path for m in store.media(run.rid)] == ["media/p/a/img.png"]
    assert store.media(run.rid, "other") == []
    assert [(a.title, a.level) for a in store.alerts(run.rid)] == [("t", "warn")]
    assert store.get_run(run.rid).summary == {"acc": 0.5}


def test_spill_names_make_replays_idempotent(store: Store) -> None:
    run = store.create_run("p", "a", "a")
    batch = WriteBatch(series=[_chunk(run.rid, "x", [0], [1.0])], spill_name="f:0")
    store.write(batch)
    store.write(batch)
    assert store.is_replayed("f:0")
    assert store.series(run.rid, "x").values.tolist() == [1.0]


def test_failed_write_changes_nothing(store: Store) -> None:
    run = store.create_run("p", "a", "a")
    bad = WriteBatch(series=[_chunk(run.rid, "x", [0], [1.0])],
                     run_updates={run.rid: {"no_such_column": 1}})
    with pytest.raises(ValueError):
        store.write(bad)
    assert store.series(run.rid, "x").steps.size == 0
    store.write(WriteBatch(series=[_chunk(run.rid, "x", [1], [2.0])]))
    assert store.series(run.rid, "x").values.tolist() == [2.0]


def _files(*contents: str) -> list[ArtifactFile]:
    return [ArtifactFile(f"f{i}", c * 64, len(c)) for i, c in enumerate(contents)]


def test_artifact_versions_aliases_and_lineage(store: Store) -> None:
    producer = store.create_run("p", "prod", "prod")
    user = store.create_run("p", "user", "user")
    v0, created = store.add_artifact_version("p", "m", "model", "d0", _files("a"),
                                             metadata={"k": 1}, aliases=["best"],
                                             run=producer.rid)
    assert created and (v0.version, v0.aliases, v0.metadata) == (0, ["latest", "best"],
                                                                 {"k": 1})
    again, created = store.add_artifact_version("p", "m", "model", "d0", _files("a"),
                                                run=user.rid)
    assert not created and again.id == v0.id
    v1, created = store.add_artifact_version("p", "m", "model", "d1", _files("b", "c"),
                                             aliases=["best"], run=producer.rid)
    assert created and v1.version == 1 and v1.size == 2 and v1.aliases == ["latest", "best"]
    assert [f.path for f in v1.files] == ["f0", "f1"]
    assert store.artifact_version("p", "m", "v0").aliases == []
    assert store.artifact_version("p", "m", "best").id == v1.id
    with pytest.raises(ArtifactNotFoundError, match="versions: v0, v1"):
        store.artifact_version("p", "m", "nope")
    with pytest.raises(ArtifactNotFoundError):
        store.artifact_version("q", "m", "latest")
    with pytest.raises(ValueError, match="has type 'model'"):
        store.add_artifact_version("p", "m", "dataset", "d2", _files("x"))
    store.use_artifact_version(v0.id, user.rid)
    store.use_artifact_version(v0.id, user.rid)  # once only
    v0 = store.artifact_version("p", "m", "v0")
    assert v0.producer is not None and v0.producer.run_id == "prod"
    assert [(lk.run_id, lk.role) for lk in v0.links] == [
        ("prod", ArtifactRole.LOGGED), ("user", ArtifactRole.LOGGED), ("user", ArtifactRole.USED)]
    assert [(role, r.version) for role, r in store.run_artifacts(user.rid)] == [
        (ArtifactRole.LOGGED, 0), (ArtifactRole.USED, 0)]
    assert [(r.project, r.name, r.version) for r in store.artifact_versions()] == [
        ("p", "m", 0), ("p", "m", 1)]
    assert store.artifact_versions("q") == []


def test_orphaned_artifacts_are_those_of_purged_runs_only(store: Store) -> None:
    a = store.create_run("p", "a", "a")
    b = store.create_run("p", "b", "b")
    store.add_artifact_version("p", "free", "data", "d", _files("z"))  # no run: kept
    store.add_artifact_version("p", "m", "model", "d0", _files("a"), run=a.rid)
    v1, _ = store.add_artifact_version("p", "m", "model", "d1", _files("b"), run=a.rid)
    store.use_artifact_version(v1.id, b.rid)
    store.purge_run(a.rid)
    assert store.artifact_version("p", "m", "v0").links[0].purged
    assert store.run_artifacts(a.rid) == []
    gone = store.delete_orphaned_artifacts()
    assert [(r.name, r.version) for r in gone] == [("m", 0)]
    assert store.artifact_version("p", "m", "latest").version == 1
    store.purge_run(b.rid)
    assert [(r.name, r.version) for r in store.delete_orphaned_artifacts()] == [("m", 1)]
    assert [r.name for r in store.artifact_versions()] == ["free"]


def test_update_run_if_sets_columns_only_from_an_expected_status(store: Store) -> None:
    run = store.create_run("p", "a", "a", status="completed")
    assert not store.update_run_if(run.rid, ["running"], status="deleted")
    assert store.get_run(run.rid).status == "completed"  # left alone
    assert store.update_run_if(run.rid, ["completed", "failed"], status="deleted",
                               metadata={"deleted": {"status": "completed"}})
    got = store.get_run(run.rid)
    assert got.status == "deleted" and got.metadata == {"deleted": {"status": "completed"}}
    assert not store.update_run_if(run.rid, ["completed"], status="running")
    with pytest.raises(ValueError, match="cannot update"):
        store.update_run_if(run.rid, ["deleted"], bogus=1)
    with pytest.raises(RunNotFoundError):
        store.update_run_if(10_000, ["completed"], status="deleted")


def test_purge_run_drops_the_run_and_its_data_only(store: Store) -> None:
    gone = store.create_run("p", "a", "a")
    kept = store.create_run("p", "b", "b")
    for run in (gone, kept):
        store.write(WriteBatch(
            series=[_chunk(run.rid, "loss", [0, 1], [1.0, 2.0])],
            media=[MediaRow(run.rid, "img", 0, "image", f"media/p/{run.id}/x.png", {}, 1.0)],
            alerts=[AlertRow(run.rid, "t", "x", "warn", 0, 1.0)]))
    store.purge_run(gone.rid)
    assert store.find_run("p", id="a") is None and [r.id for r in store.runs("p")] == ["b"]
    with pytest.raises(RunNotFoundError):
        store.get_run(gone.rid)
    assert store.series(kept.rid, "loss").values.tolist() == [1.0, 2.0]
    assert len(store.media(kept.rid)) == 1 and len(store.alerts(kept.rid)) == 1
    assert store.media(gone.rid) == [] and store.alerts(gone.rid) == []
