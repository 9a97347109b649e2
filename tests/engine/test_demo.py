"""`runfleet demo` runs the demo experiment end to end (here with fewer steps)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import runfleet
from tests.conftest import subprocess_env


def test_demo_command_trains_four_configs_and_explains_next_steps(home: Path,
                                                                 tmp_path: Path) -> None:
    trackio_dir = tmp_path / "trackio"
    proc = subprocess.run(
        [sys.executable, "-m", "runfleet", "demo", "--dir", str(home), "--max-steps", "8",
         "--num-chunks", "2", "--no-progress", "--trackers", "runfleet,trackio"],
        env=subprocess_env(RUNFLEET_WORKER_THREADS="1", TRACKIO_DIR=str(trackio_dir),
                           COLUMNS="40"),
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sft-demo results" in proc.stdout
    # captured output and a narrow COLUMNS: the closing table is whole, its title apart
    lines = proc.stdout.splitlines()
    assert "…" not in proc.stdout
    title = lines.index("sft-demo results")
    assert lines[title - 1] == "" and lines[title + 1].startswith("┏")
    header = lines[title + 2]
    assert all(f" {name} " in header for name in ("run", "LoRA r", "lr", "status",
                                                  "best chrF", "best BLEU"))
    results = runfleet.Experiment.attach("sft-demo", dir=home).results()
    # the compared metric tells the configs apart (ROUGE-L gave all four runs 0.5)
    assert results["best_eval_chrf"].nunique() >= 2, results["best_eval_chrf"]
    for _, row in results.iterrows():
        assert any(line.startswith(f"│ {row['name']} ") and f" {row['best_eval_chrf']:.4g} "
                   in line and " completed " in line for line in lines), row['name']
    assert "runfleet show --project sft-demo" in proc.stdout
    assert (home / "demo-models" / "tiny-llama" / "config.json").exists()
    runs = runfleet.Api(home).runs("sft-demo")
    assert len(runs) == 4 and {r.status for r in runs} == {"completed"}
    assert sorted({(r.config["peft_config.r"], r.config["training_args.learning_rate"])
                   for r in runs}) == [(4, 5e-4), (4, 2e-3), (16, 5e-4), (16, 2e-3)]
    assert all({"loss", "eval_loss", "eval_rougeL", "eval_bleu", "eval_chrf"}
               <= set(r.history().columns) for r in runs)
    # --trackers trackio: the same runs and losses in trackio's own database
    db = trackio_dir / "sft-demo.db"
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT run_id, step, metrics FROM metrics").fetchall()
    in_trackio: dict[str, dict[int, float]] = {}
    for run_id, step, metrics in rows:
        if "loss" in json.loads(metrics):
            in_trackio.setdefault(run_id, {})[step] = json.loads(metrics)["loss"]
    assert in_trackio == {r.id: dict(zip(r.history(keys=["loss"])["_step"].tolist(),
                                         r.history(keys=["loss"])["loss"].tolist(),
                                         strict=True)) for r in runs}


def test_demo_refuses_an_unknown_tracker(home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runfleet", "demo", "--dir", str(home), "--trackers", "wandb"],
        env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--trackers: unknown tracker 'wandb'" in proc.stderr
    assert not (home / "runfleet.db").exists()  # nothing started


def test_demo_runs_on_a_local_ray_instance(home: Path) -> None:
    """`runfleet demo --executor ray`: the same 4 runs, trained by Ray actors on a local
    instance the command starts offline and shuts down."""
    pytest.importorskip("ray")
    proc = subprocess.run(
        [sys.executable, "-m", "runfleet", "demo", "--dir", str(home), "--executor", "ray",
         "--workers", "2", "--max-steps", "4", "--num-chunks", "2", "--no-progress"],
        env=subprocess_env(RAY_USAGE_STATS_ENABLED="0"), capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = " ".join(proc.stdout.split())  # rich wraps long lines
    assert "starting a local Ray instance: 2 worker(s)" in out
    assert "workers: 2 Ray worker(s) (1 CPU each) on 1 node(s)" in out
    assert "sft-demo results" in out and out.endswith("Ray shut down")
    runs = runfleet.Api(home).runs("sft-demo")
    assert len(runs) == 4 and {r.status for r in runs} == {"completed"}
    assert all(r.history(keys=["loss"])["_step"].tolist() == [1, 2, 3, 4] for r in runs)


def test_ray_address_needs_the_ray_executor(home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runfleet", "demo", "--dir", str(home), "--ray-address",
         "auto"], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--ray-address needs --executor ray" in proc.stderr
    assert not (home / "runfleet.db").exists()


def test_shipped_model_carries_the_demo_model_to_machines_without_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a Ray cluster without a shared filesystem the demo's create_model_fn brings the
    model's files along and loads a copy where the controller's folder is missing."""
    import shutil
    import tempfile

    import cloudpickle

    from runfleet.demo.sft_demo import ShippedModel

    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"\0weights" * 100)
    shipped = cloudpickle.loads(cloudpickle.dumps(ShippedModel(folder)))
    assert shipped.folder(str(folder)) == str(folder)  # the controller's machine
    assert shipped.folder("my-org/other-model") == "my-org/other-model"
    shutil.rmtree(folder)  # another machine: a copy under the temporary folder
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    copy = Path(shipped.folder(str(folder)))
    assert copy.parent == tmp_path and shipped.folder(str(folder)) == str(copy)
    assert (copy / "config.json").read_text() == '{"model_type": "llama"}'
    assert (copy / "model.safetensors").read_bytes() == b"\0weights" * 100
