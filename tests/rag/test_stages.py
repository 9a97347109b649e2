"""Stage artefacts are computed once per content key, across runs, workers and processes."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from runfleet.rag import stages
from runfleet.rag.stages import FolderKeeper, StageCache, read_stats, stage_key


def save(value: list[str], folder: Path) -> None:
    (folder / "value.json").write_text(json.dumps(value))


def load(folder: Path) -> list[str]:
    loaded: list[str] = json.loads((folder / "value.json").read_text())
    return loaded


def test_keys_depend_on_every_part_and_nothing_else() -> None:
    assert stage_key("chunks", corpus="a", size=1) == stage_key("chunks", size=1, corpus="a")
    assert stage_key("chunks", corpus="a", size=1) != stage_key("chunks", corpus="a", size=2)
    assert stage_key("chunks", corpus="a") != stage_key("embed", corpus="a")


def test_memory_then_disk_then_another_process(tmp_path: Path) -> None:
    calls: list[str] = []

    def make(value: str) -> list[str]:
        calls.append(value)
        return [value]

    first = StageCache(tmp_path, experiment="e")
    key = stage_key("chunks", corpus="c")
    for run in ("r1", "r1", "r2"):
        assert first.get("chunks", key, lambda: make("x"), run=run, save=save,
                         load=load) == ["x"]
    second = StageCache(tmp_path, experiment="e")  # another worker: loads from the folder
    assert second.get("chunks", key, lambda: make("y"), run="r3", save=save,
                      load=load) == ["x"]
    assert calls == ["x"]
    events = [(e["event"], e["run"]) for e in read_stats(tmp_path, "e")]
    assert events == [("computed", "r1"), ("reused", "r2"), ("reused", "r3")]
    assert read_stats(tmp_path, "other") == []


def test_a_failed_compute_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    key = stage_key("embed", model="m")

    def broken() -> list[str]:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        cache.get("embed", key, broken, save=save, load=load)
    assert cache.get("embed", key, lambda: ["ok"], save=save, load=load) == ["ok"]


def _compute_in_process(root: str, started: object, go: object) -> list[str]:
    cache = StageCache(Path(root), experiment="race")
    started.set()  # type: ignore[attr-defined]
    go.wait()  # type: ignore[attr-defined]
    return cache.get("index", stage_key("index", x=1), lambda: ["built"], run="w",
                     save=save, load=load)


def test_processes_racing_for_a_key_compute_it_once(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(4) as pool:
        go = manager.Event()
        starts = [manager.Event() for _ in range(4)]
        results = [pool.apply_async(_compute_in_process, (str(tmp_path), s, go)) for s in starts]
        for s in starts:
            assert s.wait(120)
        go.set()
        assert [r.get(120) for r in results] == [["built"]] * 4
    events = [e["event"] for e in read_stats(tmp_path, "race")]
    assert sorted(events) == ["computed", "reused", "reused", "reused"]


def test_workers_away_from_the_folder_share_it_through_a_keeper(tmp_path: Path) -> None:
    """Caches given a share (as workers on other nodes are) compute a key once among them,
    fetch it from the keeper's folder, and log there; the folder serves local caches too."""
    import threading

    keeper = FolderKeeper(tmp_path)
    calls: list[int] = []
    go = threading.Barrier(4)
    results: list[list[str]] = []

    def worker(i: int) -> None:
        def build() -> list[str]:
            calls.append(i)
            return ["built"]

        cache = StageCache(tmp_path / "unreachable", experiment="shared", share=keeper)
        go.wait()
        results.append(cache.get("index", stage_key("index", x=1), build, run=f"r{i}",
                                 save=save, load=load))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [["built"]] * 4 and len(calls) == 1
    assert not (tmp_path / "unreachable").exists()  # nothing written where workers are
    events = read_stats(tmp_path, "shared")
    assert sorted(e["event"] for e in events) == ["computed", "reused", "reused", "reused"]
    assert all("host" in e for e in events)
    # what the share published is an ordinary cache entry of the folder
    local = StageCache(tmp_path, experiment="local")
    assert local.get("index", stage_key("index", x=1), lambda: ["again"], run="l",
                     save=save, load=load) == ["built"]


def test_a_failed_or_lapsed_claim_is_taken_over(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    keeper = FolderKeeper(tmp_path)
    cache = StageCache(None, share=keeper)
    key = stage_key("index", x=2)

    def fail() -> list[str]:
        raise RuntimeError("embedding server down")

    with pytest.raises(RuntimeError, match="embedding server down"):
        cache.get("index", key, fail, save=save, load=load)
    assert keeper.claim("index", key, "someone") == "yours"  # released on failure
    # "someone" died without renewing: once the claim lapses, another worker takes over
    monkeypatch.setattr(stages, "CLAIM_S", 0.0)
    keeper.renew("index", key, "someone")
    assert cache.get("index", key, lambda: ["built"], save=save, load=load) == ["built"]
    assert keeper.claim("index", key, "anyone") == "done"
    assert unpack_roundtrip(keeper.fetch("index", key)) == {"value.json": '["built"]'}


def unpack_roundtrip(blob: bytes | None) -> dict[str, str]:
    assert blob is not None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        stages.unpack(blob, Path(tmp))
        return {p.name: p.read_text() for p in Path(tmp).iterdir()}
