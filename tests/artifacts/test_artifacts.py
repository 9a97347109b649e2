"""Artefacts end to end on real runs and the real SQLite store: versions, aliases,
deduplicated files, lineage, downloads, permissions and bad input."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

import runfleet
from runfleet.artifacts import ObjectStore
from runfleet.errors import ArtifactNotFoundError
from runfleet.home import Home
from runfleet.store.base import ArtifactRole
from runfleet.store.sqlite import SQLiteStore
from tests.conftest import PYTHON, subprocess_env


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _objects(home: Path) -> list[Path]:
    return list(ObjectStore(Home.resolve(home)).all())


def test_versions_aliases_dedup_and_lineage(home: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "src" / "data.txt", "hello")
    _write(tmp_path / "src" / "sub" / "extra.bin", "x" * 100)
    with runfleet.init(project="p", dir=home, name="producer") as run:
        art = runfleet.Artifact("ds", type="dataset", metadata={"rows": 2})
        art.add_file(data)
        a0 = run.log_artifact(art, aliases=["best"])
        assert (a0.version, a0.aliases) == ("v0", ["latest", "best"])
        # The same files again: the same version, no new object.
        again = runfleet.Artifact("ds", type="dataset")
        again.add_file(data)
        assert run.log_artifact(again).version == "v0"
        # New content: v1 takes latest; best stays on v0 until moved.
        a1 = run.log_artifact(tmp_path / "src", name="ds", type="dataset")
        assert (a1.version, a1.aliases) == ("v1", ["latest"])
        assert sorted(f.path for f in a1.files()) == ["data.txt", "sub/extra.bin"]
        assert a1.size == 105
        producer_id = run.id
    # data.txt is in v0 and v1 and stored once: two objects in all.
    assert len(_objects(home)) == 2

    with runfleet.init(project="p", dir=home, name="consumer") as run:
        latest = run.use_artifact("ds:latest", type="dataset")
        assert latest.version == "v1"
        assert runfleet.use_artifact("ds").version == "v1"  # module level, latest default
        best = run.use_artifact("ds:best")
        assert best.version == "v0" and best.metadata == {"rows": 2}
        assert Path(best.file()).read_text() == "hello"
        folder = Path(latest.download())
        assert (folder / "sub" / "extra.bin").read_text() == "x" * 100
        assert run.use_artifact("p/ds:v0").version == "v0"
        consumer_id = run.id
        # Moving a user alias.
        moved = runfleet.Artifact("ds", type="dataset")
        moved.add_dir(tmp_path / "src")
        assert run.log_artifact(moved, aliases=["best"]).aliases == ["latest", "best"]

    store = SQLiteStore.open(home / "runfleet.db")
    try:
        v0, v1 = store.artifact_versions("p", "ds")
        assert v0.aliases == [] and v1.aliases == ["latest", "best"]
        assert v0.producer is not None and v0.producer.run_id == producer_id
        assert [u.run_id for u in v0.users] == [consumer_id]  # used once, linked once
        assert [u.run_id for u in v1.users] == [consumer_id]
        consumer = store.find_run("p", id=consumer_id)
        assert consumer is not None
        roles = [(role, rec.version) for role, rec in store.run_artifacts(consumer.rid)]
        assert roles == [(ArtifactRole.USED, 1), (ArtifactRole.USED, 0),
                         (ArtifactRole.LOGGED, 1)]
    finally:
        store.close()


def test_same_content_in_two_artefacts_is_stored_once(home: Path, tmp_path: Path) -> None:
    weights = _write(tmp_path / "w.bin", "weights" * 1000)
    with runfleet.init(project="p", dir=home) as run:
        run.log_artifact(weights, name="model-a", type="model")
        other = run.log_artifact(weights, name="model-b", type="model")
    assert other.version == "v0"
    assert len(_objects(home)) == 1


def test_files_are_private_and_objects_content_addressed(home: Path, tmp_path: Path) -> None:
    src = _write(tmp_path / "secret.txt", "token")
    with runfleet.init(project="p", dir=home) as run:
        art = run.log_artifact(src, type="dataset")
        downloaded = Path(art.file("secret.txt"))
    (obj,) = _objects(home)

    assert obj.name == hashlib.sha256(b"token").hexdigest()
    assert stat.S_IMODE(obj.stat().st_mode) == 0o600
    assert stat.S_IMODE(obj.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "artifacts").stat().st_mode) == 0o700
    assert stat.S_IMODE(downloaded.stat().st_mode) == 0o600
    # A downloaded copy edited by the user is restored by the next download; the object
    # it came from is untouched.
    os.chmod(downloaded, 0o600)
    downloaded.write_text("edited")
    assert Path(art.file()).read_text() == "token"
    assert obj.read_text() == "token"


def test_bad_input_gets_clear_errors(home: Path, tmp_path: Path) -> None:
    f = _write(tmp_path / "f.txt", "1")
    with pytest.raises(ValueError, match="artefact name 'a:b' is not valid"):
        runfleet.Artifact("a:b", type="model")
    art = runfleet.Artifact("a", type="model")
    with pytest.raises(ValueError, match="not a file"):
        art.add_file(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="must be relative"):
        art.add_file(f, name="../escape.txt")
    with pytest.raises(ValueError, match="download\\(\\) needs a logged artefact"):
        art.download()
    with runfleet.init(project="p", dir=home) as run:
        with pytest.raises(ValueError, match="holds no files"):
            run.log_artifact(art)
        with pytest.raises(ValueError, match="no such file or folder"):
            run.log_artifact(tmp_path / "nope")
        with pytest.raises(ValueError, match="looks like a version"):
            run.log_artifact(f, name="a", type="model", aliases=["v2"])
        logged = run.log_artifact(f, name="a", type="model")
        with pytest.raises(ValueError, match="is logged and cannot change"):
            logged.add_file(f)
        with pytest.raises(ValueError, match="has type 'model', not 'dataset'"):
            run.log_artifact(f, name="a", type="dataset")
        with pytest.raises(ArtifactNotFoundError, match="no artefact named 'zzz'"):
            run.use_artifact("zzz:latest")
        with pytest.raises(ArtifactNotFoundError, match=r"no version or alias 'v9' \(versions: v0"):
            run.use_artifact("a:v9")
        with pytest.raises(ValueError, match="has type 'model', not 'dataset'"):
            run.use_artifact("a", type="dataset")
        with pytest.raises(ArtifactNotFoundError, match="has no file 'other'"):
            run.use_artifact("a").file("other")


def test_disabled_run_stores_nothing(home: Path, tmp_path: Path) -> None:
    f = _write(tmp_path / "f.txt", "1")
    with runfleet.init(project="p", dir=home, mode="disabled") as run:
        art = run.log_artifact(f, type="model")
        assert art.version is None
        with pytest.raises(ArtifactNotFoundError, match="disabled"):
            run.use_artifact("f.txt")
    assert not (home / "artifacts").exists()


def test_module_level_functions_need_a_run() -> None:
    with pytest.raises(Exception, match="init"):
        runfleet.use_artifact("x")


def test_api_reads_artefacts_outside_a_run(home: Path, tmp_path: Path) -> None:
    f = _write(tmp_path / "f.txt", "payload")
    with runfleet.init(project="p", dir=home) as run:
        run.log_artifact(f, name="data", type="dataset", aliases=["gold"])
    with runfleet.Api(home) as api:
        art = api.artifact("p/data:gold", type="dataset")
        assert art.version == "v0" and Path(art.file()).read_text() == "payload"
        assert art.users == []  # reading through the Api records no use
        assert [a.qualified_name for a in api.artifacts("p")] == ["p/data:v0"]
        with pytest.raises(ValueError, match="needs 'project/name"):
            api.artifact("data:latest")
        with pytest.raises(ArtifactNotFoundError):
            api.artifact("q/data")


def test_processes_logging_at_once_get_distinct_versions(home: Path, tmp_path: Path) -> None:
    script = tmp_path / "log.py"
    script.write_text(
        "import sys, pathlib, runfleet\n"
        "i = sys.argv[1]\n"
        "f = pathlib.Path(sys.argv[2]) / f'w{i}.bin'\n"
        "f.write_bytes(b'shared' * 1000)\n"
        "g = pathlib.Path(sys.argv[2]) / f'own{i}.bin'\n"
        "g.write_text(i)\n"
        "with runfleet.init(project='p', dir=sys.argv[3]) as run:\n"
        "    art = runfleet.Artifact('m', type='model')\n"
        "    art.add_file(f, name='shared.bin')\n"
        "    art.add_file(g, name='own.bin')\n"
        "    run.log_artifact(art)\n"
        "    same = runfleet.Artifact('same', type='model')\n"
        "    same.add_file(f, name='shared.bin')\n"
        "    run.log_artifact(same)\n")
    procs = [subprocess.Popen([PYTHON, str(script), str(i), str(tmp_path), str(home)],
                              env=subprocess_env()) for i in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    with runfleet.Api(home) as api:
        versions = api.store.artifact_versions("p", "m")
        assert sorted(v.version for v in versions) == [0, 1, 2, 3]
        (same,) = api.store.artifact_versions("p", "same")
        assert len(same.links) == 4  # one version, logged by each of the four runs
    assert len(_objects(home)) == 5  # shared.bin once, own.bin x4


def test_a_tampered_manifest_never_writes_outside_the_download_folder(
        home: Path, tmp_path: Path) -> None:
    f = _write(tmp_path / "f.txt", "x")
    with runfleet.init(project="p", dir=home) as run:
        run.log_artifact(f, name="a", type="model")
    conn = sqlite3.connect(home / "runfleet.db")
    conn.execute("UPDATE artifact_versions SET manifest = replace(manifest, 'f.txt',"
                 " '../../escape.txt')")
    conn.commit()
    conn.close()
    with runfleet.Api(home) as api:
        art = api.artifact("p/a:v0")
        with pytest.raises(ValueError, match="must be relative"):
            art.download(tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_new_file_and_wandb_keywords(home: Path, tmp_path: Path) -> None:
    # The shape of transformers' WandbCallback model upload: new_file() per file, then
    # log_artifact with aliases; wandb's keyword arguments are accepted.
    f = _write(tmp_path / "cfg.json", "{}")
    art = runfleet.Artifact("model-abc", type="model", metadata={"step": 3})
    with art.new_file("pytorch_model.bin", mode="wb") as out:
        out.write(b"\x00\x01")
    with art.new_file("notes/readme.txt") as text:
        text.write("hi")
    art.add_file(f, is_tmp=True, policy="mutable", skip_cache=True, overwrite=True)
    with pytest.raises(ValueError, match="mode 'x', 'w'"), art.new_file("bad.txt", mode="r"):
        pass
    staging = art._staging
    assert staging is not None
    with runfleet.init(project="p", dir=home) as run:
        logged = run.log_artifact(art, aliases=["final_model"])
        assert sorted(p.path for p in logged.files()) == [
            "cfg.json", "notes/readme.txt", "pytorch_model.bin"]
        assert not staging.exists()  # stored: the private staging copies are gone
        got = run.use_artifact("model-abc:final_model")
        assert Path(got.file("pytorch_model.bin")).read_bytes() == b"\x00\x01"


def test_a_project_name_never_moves_the_download_folder_out_of_the_home(
        home: Path, tmp_path: Path) -> None:
    """Project names are free text: the default download folder is built from cleaned
    names, inside ``<home>/artifacts/files``, and two names that clean alike stay apart."""
    src = tmp_path / "w.bin"
    src.write_bytes(b"weights")
    folders = []
    for project in ("../../../escaped", "/abs/olute", "..", "a_b", "a/b"):
        with runfleet.init(project=project, dir=home) as run:
            run.log_artifact(src, name="m", type="model")  # names are checked; projects not
            folders.append(Path(run.use_artifact("m:latest").download()).resolve())
    root = (home / "artifacts" / "files").resolve()
    assert all(f.is_relative_to(root) for f in folders), folders
    assert len(set(folders)) == len(folders)
    assert all((f / "w.bin").read_bytes() == b"weights" for f in folders)
    assert not (tmp_path / "escaped").exists() and not Path("/abs").exists()


def test_gc_never_follows_links_planted_in_the_object_folder(home: Path,
                                                             tmp_path: Path) -> None:
    """In a shared home another member could plant a link among the objects: a purge of
    unreferenced objects lists real object files only."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / ("ab" + "0" * 62)).write_text("keep")
    (precious / "notes.txt").write_text("keep")
    with runfleet.init(project="p", dir=home) as run:
        src = tmp_path / "f.bin"
        src.write_bytes(b"x")
        run.log_artifact(src, name="m", type="data")
    objects = ObjectStore(Home.resolve(home))
    (objects.root / "ab").symlink_to(precious)
    (objects.root / "cd").mkdir()
    (objects.root / "cd" / ("cd" + "1" * 62)).symlink_to(precious / "notes.txt")
    listed = list(objects.all())
    assert len(listed) == 1 and not any(p.is_symlink() for p in listed)
    assert objects.remove_unreferenced(set(), grace_s=-1) == (1, 1)
    assert sorted(p.name for p in precious.iterdir()) == ["ab" + "0" * 62, "notes.txt"]
