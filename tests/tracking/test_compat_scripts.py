"""Everyday wandb and trackio scripts run unchanged with ``import runfleet as ...``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import runfleet
from runfleet.export import META_TYPES, read_long
from tests.conftest import ROOT, subprocess_env

SCRIPTS = ROOT / "tests" / "compat_scripts"


def run_script(name: str, home: Path) -> str:
    text = (SCRIPTS / name).read_text()
    assert re.search(r"^import runfleet as (wandb|trackio)$", text, re.M)
    proc = subprocess.run([sys.executable, str(SCRIPTS / name)], cwd=home,
                          env=subprocess_env(RUNFLEET_DIR=str(home)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_nanogpt_style_script(home: Path) -> None:
    stderr = run_script("nanogpt_style.py", home)
    run_id = re.search(r"run (\w+)", stderr).group(1)  # type: ignore[union-attr]
    r = runfleet.Api(home).run("owt", run_id)
    assert r.name == "gpt2-tiny" and r.config["n_layer"] == 2 and r.status == "completed"
    h = r.history()
    assert h["iter"].tolist() == [0, 20, 40, 60]
    assert h["_step"].tolist() == [0, 1, 2, 3]
    assert h["train/loss"].between(0.0, 10.0).all() and h["mfu"].iloc[0] == -100.0
    assert r.summary["iter"] == 60
    # ...and through `runfleet export`, value for value.
    out = home / "owt.csv"
    proc = subprocess.run([sys.executable, "-m", "runfleet", "--dir", str(home), "export",
                           "--project", "owt", "-o", str(out)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    exported = read_long(out)
    loss = exported[exported["key"] == "train/loss"]
    assert loss["step"].tolist() == [0, 1, 2, 3]
    assert loss["value"].tolist() == h["train/loss"].tolist()


def test_hf_style_script(home: Path) -> None:
    stderr = run_script("hf_style.py", home)
    run_id = re.search(r"run (\w+)", stderr).group(1)  # type: ignore[union-attr]
    r = runfleet.Api(home).run("hf-glue", run_id)
    assert r.config["learning_rate"] == 5e-5 and r.config["task_name"] == "mrpc"
    assert r.group == "mrpc" and r.tags == ["baseline"]
    assert r.summary["eval/accuracy"] == pytest.approx(0.8)
    assert r.summary["best_eval_loss"] == pytest.approx(float(__import__("numpy").exp(-30 / 12)))
    assert r.summary["total_flos"] == pytest.approx(1.5e12)
    assert r.summary["train/global_step"] == 30
    h = r.history(keys=["train/global_step", "train/loss", "eval/accuracy"],
                  x="train/global_step")
    assert len(h) == 33 and h["eval/accuracy"].dropna().tolist() == pytest.approx([0.6, 0.7, 0.8])
    assert {d["pattern"] for d in r.metadata["metrics"]} == {"train/global_step", "*",
                                                             "eval/accuracy"}


def test_trackio_style_script(home: Path) -> None:
    run_script("trackio_style.py", home)
    runs = runfleet.Api(home).runs("trackio-demo")
    assert [r.name for r in runs] == ["lr-0.001", "lr-0.0001"]
    assert all(r.group == "sweep" and r.status == "completed" for r in runs)
    assert [len(r.history()) for r in runs] == [5, 5]
    assert runs[0].config == {"lr": 1e-3, "epochs": 5}
    proc = subprocess.run([sys.executable, "-m", "runfleet", "--dir", str(home), "export",
                           "--project", "trackio-demo", "--format", "jsonl"],
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [r for r in map(json.loads, proc.stdout.splitlines())
            if r["value_type"] not in META_TYPES]  # points only, not the run rows
    assert len(rows) == 2 * 5 * 2  # runs x steps x keys
    first = [r["value"] for r in rows if r["run_name"] == "lr-0.001" and r["key"] == "accuracy"]
    assert first == runs[0].history()["accuracy"].tolist()
