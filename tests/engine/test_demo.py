"""`runfleet demo` runs the demo experiment end to end (here with fewer steps)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import runfleet
from tests.conftest import subprocess_env


def test_demo_command_trains_four_configs_and_explains_next_steps(home: Path,
                                                                 tmp_path: Path) -> None:
    trackio_dir = tmp_path / "trackio"
    proc = subprocess.run(
        [sys.executable, "-m", "runfleet", "demo", "--dir", str(home), "--max-steps", "8",
         "--num-chunks", "2", "--no-progress", "--trackers", "runfleet,trackio"],
        env=subprocess_env(RUNFLEET_WORKER_THREADS="1", TRACKIO_DIR=str(trackio_dir)),
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sft-demo results" in proc.stdout
    assert "runfleet show --project sft-demo" in proc.stdout
    assert (home / "demo-models" / "tiny-llama" / "config.json").exists()
    runs = runfleet.Api(home).runs("sft-demo")
    assert len(runs) == 4 and {r.status for r in runs} == {"completed"}
    assert sorted({(r.config["peft_config.r"], r.config["training_args.learning_rate"])
                   for r in runs}) == [(4, 5e-4), (4, 2e-3), (16, 5e-4), (16, 2e-3)]
    assert all({"loss", "eval_loss", "eval_rougeL", "eval_bleu"} <= set(r.history().columns)
               for r in runs)
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
