"""`runfleet demo` runs the demo experiment end to end (here with fewer steps)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import runfleet
from tests.conftest import subprocess_env


def test_demo_command_trains_four_configs_and_explains_next_steps(home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runfleet", "demo", "--dir", str(home), "--max-steps", "8",
         "--num-chunks", "2", "--no-progress"],
        env=subprocess_env(RUNFLEET_WORKER_THREADS="1"), capture_output=True, text=True,
        timeout=600)
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
