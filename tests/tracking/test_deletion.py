"""Deleting plain tracked runs: soft delete, restore, gc (with media files and purge hooks),
and the refusals (running run, engine experiment, resume of a deleted run)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import runfleet
from runfleet.api import Api
from runfleet.home import EXPERIMENT_MARKER, Home
from runfleet.store.base import RunRecord, Store
from runfleet.tracking import homes
from runfleet.tracking.deletion import DeleteRefusedError, gc, purge_run
from runfleet.tracking.run import Run
from tests.conftest import subprocess_env


def _make_run(home: Path, name: str, image: bool = False) -> str:
    run = runfleet.init(project="p", name=name, dir=home, config={"lr": 0.1})
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)})
    if image:
        run.log({"img": runfleet.Image(np.zeros((4, 4, 3), dtype=np.uint8))})
    run.summary["best"] = 0.5
    run.finish()
    return run.id


def test_delete_hides_a_run_and_restore_brings_it_back_unchanged(home: Path) -> None:
    keep, gone = _make_run(home, "keep"), _make_run(home, "gone")
    with Api(home) as api:
        before = api.run("p", gone)
        history = before.history()
        deleted = before.delete()
        assert deleted.status == "deleted"
        assert deleted.metadata["deleted"]["status"] == "completed"
        assert [r.id for r in api.runs("p")] == [keep]  # hidden from listings
        assert {r.id for r in api.runs("p", include_deleted=True)} == {keep, gone}
        assert api.run("p", gone).history().equals(history)  # data kept until gc
        with pytest.raises(DeleteRefusedError, match="already deleted"):
            api.run("p", gone).delete()
        restored = api.run("p", gone).restore()
        assert restored.status == "completed" and "deleted" not in restored.metadata
        assert [r.id for r in api.runs("p")] == [keep, gone]
        assert restored.history().equals(history) and restored.summary["best"] == 0.5
        with pytest.raises(DeleteRefusedError, match="is not deleted"):
            restored.restore()


def test_gc_purges_only_deleted_runs_with_their_media_files_and_hooks(home: Path) -> None:
    keep, gone = _make_run(home, "keep", image=True), _make_run(home, "gone", image=True)
    seen: list[str] = []

    def hook(store: Store, h: Home, record: RunRecord) -> None:
        assert store.get_run(record.rid).id == record.id  # still readable in the hook
        seen.append(record.id)

    with Api(home) as api:
        files = {r: [home / m.path for m in api.store.media(api.run("p", r).rid)]
                 for r in (keep, gone)}
        assert all(f.is_file() for fs in files.values() for f in fs) and files[gone]
        api.run("p", gone).delete()
        dry = gc(api.store, api.home, dry_run=True, hooks=[hook])
        assert [r.id for r in dry.runs] == [gone] and dry.files == 1 and not seen
        assert all(f.is_file() for f in files[gone])
        report = gc(api.store, api.home, hooks=[hook])
        assert [r.id for r in report.runs] == [gone] and seen == [gone]
        assert report.files == 1 and report.bytes > 0
        assert not any(f.exists() for f in files[gone])
        assert not files[gone][0].parent.exists()  # the run's empty media folder went too
        assert all(f.is_file() for f in files[keep])  # the other run's media stay
        assert [r.id for r in api.runs("p", include_deleted=True)] == [keep]
        assert api.run("p", keep).history()["loss"].dropna().tolist() == [1.0, 0.5, 1 / 3]
        assert gc(api.store, api.home).runs == []  # nothing left to purge


def test_purge_never_touches_files_outside_the_media_folder(home: Path, tmp_path: Path) -> None:
    run_id = _make_run(home, "r")
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    with Api(home) as api:
        record = api.store.find_run("p", id=run_id)
        assert record is not None
        from runfleet.store.base import MediaRow, WriteBatch

        api.store.write(WriteBatch(media=[MediaRow(record.rid, "x", 0, "image",
                                                   os.path.relpath(outside, home), {}, 1.0)]))
        purge_run(api.store, api.home, record)
    assert outside.read_text() == "keep me"


def test_a_running_run_is_refused_a_crashed_one_is_deleted(home: Path) -> None:
    run = runfleet.init(project="p", name="live", dir=home)
    assert isinstance(run, Run)
    run.log({"loss": 1.0})
    run.flush()
    with Api(home) as api, pytest.raises(DeleteRefusedError, match="still running"):
        api.run("p", run.id).delete()
    run.finish()
    # A run whose process died without finishing (status running, stale heartbeat).
    code = ("import os, runfleet\n"
            f"r = runfleet.init(project='p', name='crashed', dir={str(home)!r})\n"
            "r.log({'loss': 2.0}); r.flush(); print(r.id, flush=True); os._exit(0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120, check=True)
    crashed = proc.stdout.split()[-1]
    with Api(home) as api:
        record = api.store.find_run("p", id=crashed)
        assert record is not None and record.status == "running"
        api.store.update_run(record.rid, heartbeat=time.time() - 3600)
        assert api.run("p", crashed).status == "crashed"
        assert api.run("p", crashed).delete().status == "deleted"
        assert api.run("p", crashed).restore().status == "crashed"  # running, process gone


def test_runs_of_an_engine_experiment_are_left_to_its_controller(home: Path) -> None:
    run_id = _make_run(home, "engine-run")
    marker = Home(home).experiments_dir / "p" / EXPERIMENT_MARKER
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    with Api(home) as api:
        with pytest.raises(DeleteRefusedError, match=r"engine experiment.*runfleet delete"):
            api.run("p", run_id).delete()
        assert api.run("p", run_id).status == "completed"
        # A run its controller deleted lost its checkpoints: not restorable.
        record = api.store.find_run("p", id=run_id)
        assert record is not None
        api.store.update_run(record.rid, status="deleted")
        with pytest.raises(DeleteRefusedError, match="controller"):
            api.run("p", run_id).restore()


def test_a_deleted_run_is_not_resumed_until_restored(home: Path) -> None:
    run_id = _make_run(home, "r")
    with Api(home) as api:
        api.run("p", run_id).delete()
    with pytest.raises(ValueError, match="is deleted: restore it first"):
        runfleet.init(project="p", id=run_id, resume="allow", dir=home)
    with Api(home) as api:
        api.run("p", run_id).restore()
    run = runfleet.init(project="p", id=run_id, resume="allow", dir=home)
    run.log({"loss": 0.1})
    run.finish()
    homes.close_all()
    with Api(home) as api:
        assert api.run("p", run_id).history()["loss"].tolist() == [1.0, 0.5, 1 / 3, 0.1]


def test_purge_never_follows_a_symlink_planted_for_a_media_file(home: Path,
                                                                tmp_path: Path) -> None:
    """A media row whose file was replaced by a link (to another run's file, or anywhere):
    the link goes at most, never what it points to."""
    run_id = _make_run(home, "r")
    other = home / "media" / "p" / "other-run" / "kept.png"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another run's image")
    planted = home / "media" / "p" / run_id / "img.png"
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.symlink_to(other)
    with Api(home) as api:
        record = api.store.find_run("p", id=run_id)
        assert record is not None
        from runfleet.store.base import MediaRow, WriteBatch

        api.store.write(WriteBatch(media=[MediaRow(record.rid, "x", 0, "image",
                                                   os.path.relpath(planted, home), {}, 1.0)]))
        purge_run(api.store, api.home, record)
    assert other.read_bytes() == b"another run's image"
