"""``purge_unreferenced``: what only purged runs logged or used goes; the rest stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

import runfleet
from runfleet.artifacts import ObjectStore, purge_unreferenced
from runfleet.home import Home
from runfleet.store.sqlite import SQLiteStore


def _log(home: Path, src: Path, name: str) -> str:
    with runfleet.init(project="p", dir=home) as run:
        run.log_artifact(src, name=name, type="model")
        return run.id


def _age_objects(home: Path) -> None:
    old = time.time() - 7200
    for f in ObjectStore(Home.resolve(home)).all():
        os.utime(f, (old, old))


def test_purge_deletes_versions_of_purged_runs_and_their_unshared_files(
        home: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared.bin"
    shared.write_bytes(b"s" * 1000)
    only_a = tmp_path / "a"
    only_a.mkdir()
    (only_a / "shared.bin").write_bytes(b"s" * 1000)
    (only_a / "own.bin").write_bytes(b"a" * 500)
    run_a = _log(home, only_a, "m")        # m:v0, shared + own
    run_b = _log(home, shared, "keep")     # keep:v0, shared only
    with runfleet.init(project="p", dir=home) as run:  # logs m:v1, then uses m:v0
        run.log_artifact(shared, name="m", type="model")
        run.use_artifact("m:v0")
        user = run.id
    _age_objects(home)
    home_obj = Home.resolve(home)
    store = SQLiteStore.open(home_obj.db_path)
    try:
        rec_a = store.find_run("p", id=run_a)
        assert rec_a is not None
        store.purge_run(rec_a.rid)
        # m:v0 is still used by a live run: nothing goes.
        report = purge_unreferenced(store, home_obj)
        assert report.versions == [] and report.objects == 0
        (v0, _) = store.artifact_versions("p", "m")
        assert v0.producer is not None and v0.producer.purged  # lineage kept, marked
        rec_user = store.find_run("p", id=user)
        assert rec_user is not None
        store.purge_run(rec_user.rid)
        # Now m:v0 and m:v1 were only referenced by purged runs; keep:v0's run is live.
        report = purge_unreferenced(store, home_obj)
        assert sorted((r.name, r.version) for r in report.versions) == [("m", 0), ("m", 1)]
        assert (report.objects, report.bytes_freed) == (1, 500)  # own.bin; shared.bin stays
        assert [(r.name, r.aliases) for r in store.artifact_versions()] == \
            [("keep", ["latest"])]
        assert store.find_run("p", id=run_b) is not None
    finally:
        store.close()
    with runfleet.init(project="p", dir=home) as run:
        assert Path(run.use_artifact("keep:latest").file()).read_bytes() == b"s" * 1000


def test_purge_moves_latest_to_the_newest_remaining_version(home: Path, tmp_path: Path
                                                            ) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"1")
    _log(home, f, "m")
    f.write_bytes(b"2")
    newer = _log(home, f, "m")
    _age_objects(home)
    home_obj = Home.resolve(home)
    store = SQLiteStore.open(home_obj.db_path)
    try:
        rec = store.find_run("p", id=newer)
        assert rec is not None
        store.purge_run(rec.rid)
        report = purge_unreferenced(store, home_obj)
        assert [r.version for r in report.versions] == [1]
        assert store.artifact_version("p", "m", "latest").version == 0
    finally:
        store.close()


def test_recent_objects_survive_a_purge(home: Path, tmp_path: Path) -> None:
    # An object written moments ago may belong to a version another process is logging.
    objects = ObjectStore(Home.resolve(home))
    f = tmp_path / "f.bin"
    f.write_bytes(b"in flight")
    sha, _ = objects.put(f)
    store = SQLiteStore.open(Home.resolve(home).db_path)
    try:
        assert purge_unreferenced(store, Home.resolve(home)).objects == 0
        assert objects.path(sha).exists()
        assert purge_unreferenced(store, Home.resolve(home), grace_s=-1).objects == 1
        assert not objects.path(sha).exists()
    finally:
        store.close()


def test_runfleet_gc_reclaims_the_artefacts_of_the_runs_it_purges(
        home: Path, tmp_path: Path) -> None:
    """``runfleet gc`` ends with the artefact clean-up: a version that only a purged run
    logged goes (its files stay through the grace period); a kept run's version stays."""
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    src = tmp_path / "weights.bin"
    src.write_bytes(b"w" * 300)
    gone = _log(home, src, "gone")
    _log(home, tmp_path / "weights.bin", "kept")
    runfleet.Api(home).run("p", gone).delete()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runfleet", *args, "--dir", str(home)],
                              capture_output=True, text=True, env=subprocess_env())

    out = cli("gc")
    assert out.returncode == 0, out.stderr
    assert "purged 1 deleted run(s)" in out.stdout and "1 artefact version(s)" in out.stdout
    store = SQLiteStore.open(Home.resolve(home).db_path)
    try:
        assert [(r.name, r.version) for r in store.artifact_versions("p")] == [("kept", 0)]
    finally:
        store.close()
    assert len(list(ObjectStore(Home.resolve(home)).all())) == 1  # shared content, kept
