"""Existing wandb code, unchanged: transformers' and TRL's own ``report_to="wandb"`` code
logs to runfleet through :func:`runfleet.patch_wandb` (wandb itself is not installed)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import runfleet
from runfleet.wandb.patch import unpatch_wandb
from tests.conftest import subprocess_env


@pytest.fixture
def wandb(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``import wandb`` gives runfleet (home: the test's), undone afterwards."""
    monkeypatch.setenv("RUNFLEET_DIR", str(home))
    monkeypatch.setenv("RUNFLEET_SYSTEM_METRICS", "0")
    for name in ("WANDB_PROJECT", "WANDB_NAME", "WANDB_MODE", "WANDB_LOG_MODEL",
                 "WANDB_WATCH", "WANDB_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    module = runfleet.patch_wandb()
    try:
        yield module
    finally:
        runfleet.finish()
        unpatch_wandb()


def _by_global_step(run: runfleet.ApiRun, key: str) -> dict[int, float]:
    """``{train/global_step: value}`` of one metric, read back from the store."""
    h = run.history(keys=[key, "train/global_step"])
    return {int(s): float(v) for s, v in zip(h["train/global_step"], h[key], strict=True)
            if v == v}


def _expected(log_history: list[dict[str, Any]], key: str) -> dict[int, float]:
    return {int(e["step"]): float(e[key]) for e in log_history if key in e}


def test_patch_makes_wandb_importable_with_the_names_libraries_use(wandb: ModuleType) -> None:
    import wandb as imported  # type: ignore[import-not-found]
    from wandb.sdk.lib.config_util import ConfigError  # type: ignore[import-not-found]
    from wandb.sdk.wandb_run import Run  # type: ignore[import-not-found]

    assert importlib.util.find_spec("wandb") is not None
    assert imported is wandb and imported.__name__ == "runfleet.wandb"
    from transformers.integrations import is_wandb_available

    assert is_wandb_available()
    assert issubclass(ConfigError, imported.Error) and Run is runfleet.Run
    assert imported.run is None
    with pytest.raises(imported.errors.UsageError, match=r"call runfleet\.init"):
        imported.config.update({"lr": 1})
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("wandb.not_a_module")


def test_trainer_report_to_wandb_logs_to_runfleet(wandb: ModuleType, home: Path,
                                                  tiny_model: str, instructions: Any,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from tests.integrations.test_transformers_callback import _collate, _tokenized

    monkeypatch.setenv("WANDB_PROJECT", "hf-wandb")
    data = _tokenized(tiny_model, instructions, 24)
    out = str(tmp_path / "out")
    args = TrainingArguments(out, run_name=out, max_steps=6, logging_steps=1,
                             per_device_train_batch_size=4, eval_strategy="steps",
                             eval_steps=3, report_to="wandb", use_cpu=True,
                             save_strategy="no", learning_rate=1e-3)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    trainer = Trainer(model, args,
                      train_dataset=data, eval_dataset=data.select(range(8)),
                      data_collator=_collate)
    trainer.train()
    live = wandb.run
    assert live is not None and live.url.endswith(f"?project=hf-wandb&run={live.id}")
    wandb.finish()
    # transformers warned through wandb.termwarn (run_name == output_dir), once
    assert capfd.readouterr().err.count("runfleet: WARNING The `run_name`") == 1

    (run,) = runfleet.Api(home).runs("hf-wandb")
    assert run.status == "completed" and run.name == out
    history = trainer.state.log_history
    assert _by_global_step(run, "train/loss") == _expected(history, "loss")
    assert _by_global_step(run, "eval/loss") == _expected(history, "eval_loss")
    assert sorted(_by_global_step(run, "train/loss")) == [1, 2, 3, 4, 5, 6]
    assert run.config["learning_rate"] == 1e-3 and run.config["num_hidden_layers"] == 2
    assert run.config["model/num_parameters"] == model.num_parameters()
    assert run.summary["train_loss"] == pytest.approx(history[-1]["train_loss"], abs=0)
    assert run.metadata["labels"] == {"code": "transformers_trainer"}
    definitions = {d["pattern"]: d for d in run.metadata["metrics"]}
    assert definitions["*"]["step_metric"] == "train/global_step"


def test_trl_sft_trainer_report_to_wandb(wandb: ModuleType, home: Path, tiny_model: str,
                                         instructions: Any, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    monkeypatch.setenv("WANDB_PROJECT", "trl-wandb")
    args = SFTConfig(output_dir=str(tmp_path / "sft"), run_name="sft-a", max_steps=4,
                     logging_steps=1, per_device_train_batch_size=4, report_to="wandb",
                     use_cpu=True, bf16=False, save_strategy="no", max_length=32)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args,
                         train_dataset=instructions.select(range(16)).remove_columns(["task"]),
                         processing_class=AutoTokenizer.from_pretrained(tiny_model))
    trainer.train()
    wandb.finish()
    (run,) = runfleet.Api(home).runs("trl-wandb")
    assert run.status == "completed" and run.name == "sft-a"
    expected = _expected(trainer.state.log_history, "loss")
    assert _by_global_step(run, "train/loss") == expected and sorted(expected) == [1, 2, 3, 4]
    # TRL's own metrics arrive too, under the same step
    tokens = _expected(trainer.state.log_history, "num_tokens")
    assert _by_global_step(run, "train/num_tokens") == tokens


SCRIPT = """
import importlib.util
assert importlib.util.find_spec("wandb") is None  # wandb is not installed
import runfleet                      # reads RUNFLEET_WANDB=1 and patches
import wandb                         # the script's own, unchanged wandb code from here on
from wandb.sdk.lib.config_util import ConfigError
run = wandb.init(project="env-route", config={"lr": 0.1})
for step in range(3):
    wandb.log({"loss": 1.0 / (step + 1), "pair": [step, step * 2]})
wandb.summary["best"] = 1.0
wandb.finish()
print("ok", run.id, wandb.__name__)
"""


def test_env_var_patches_when_runfleet_is_imported(home: Path, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = subprocess_env(RUNFLEET_WANDB="1", RUNFLEET_DIR=str(home))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    word, run_id, name = done.stdout.split()
    assert (word, name) == ("ok", "runfleet.wandb")
    run = runfleet.Api(home).run("env-route", run_id)
    rows = list(run.scan_history())
    assert [r["loss"] for r in rows] == [1.0, 0.5, 1.0 / 3]
    assert [json.loads(r["pair"]) for r in rows] == [[0, 0], [1, 2], [2, 4]]
    assert run.summary_metrics["best"] == 1.0 and run.config == {"lr": 0.1}


PLAIN_WANDB_SCRIPT = """
import sys
import wandb

wandb.init(project="launcher", config={"lr": float(sys.argv[2])})
wandb.log({"loss": 0.5})
wandb.finish()
print("ran", __name__, sys.argv[1:], wandb.__name__)
"""


def test_launcher_runs_an_unchanged_wandb_script(home: Path, tmp_path: Path) -> None:
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_WANDB_SCRIPT)
    done = subprocess.run([sys.executable, "-m", "runfleet.wandb", str(script), "--lr", "0.3"],
                          env=subprocess_env(RUNFLEET_DIR=str(home)), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran __main__ ['--lr', '0.3'] runfleet.wandb"
    (run,) = runfleet.Api(home).runs("launcher")
    assert run.config == {"lr": 0.3} and run.summary["loss"] == 0.5
    usage = subprocess.run([sys.executable, "-m", "runfleet.wandb"], env=subprocess_env(),
                           capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2 and "usage: python -m runfleet.wandb" in usage.stderr


def test_without_the_env_var_import_wandb_is_not_patched(tmp_path: Path) -> None:
    env = subprocess_env()
    env.pop("RUNFLEET_WANDB", None)
    code = ("import runfleet\ntry:\n    import wandb\nexcept ModuleNotFoundError:\n"
            "    print('absent')\nelse:\n    print(wandb.__name__)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("absent", "wandb")  # never runfleet.wandb unasked


def test_trainer_hyperparameter_search_with_the_wandb_backend(
        wandb: ModuleType, home: Path, tiny_model: str, instructions: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers' own wandb sweep driver runs on runfleet's in-process grid sweep."""
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from tests.integrations.test_transformers_callback import _collate, _tokenized

    monkeypatch.setenv("WANDB_PROJECT", "hp")
    data = _tokenized(tiny_model, instructions, 16)
    args = TrainingArguments(str(tmp_path / "hp"), max_steps=2, logging_steps=1,
                             per_device_train_batch_size=4, report_to="wandb", use_cpu=True,
                             save_strategy="no", eval_strategy="no")
    trainer = Trainer(args=args, train_dataset=data, eval_dataset=data.select(range(4)),
                      data_collator=_collate,
                      model_init=lambda *_: AutoModelForCausalLM.from_pretrained(tiny_model))
    space: Any = {"method": "grid", "metric": {"name": "eval/loss", "goal": "minimize"},
                  "parameters": {"learning_rate": {"values": [1e-2, 1e-5]}}}
    best = trainer.hyperparameter_search(backend="wandb", hp_space=lambda _: space,
                                         n_trials=2, direction="minimize")
    assert not isinstance(best, list)
    assert best.hyperparameters["learning_rate"] in (1e-2, 1e-5)
    trained = [r for r in runfleet.Api(home).runs("hp") if "train/loss" in r.keys(stream="default")]
    assert sorted(r.config["learning_rate"] for r in trained) == [1e-5, 1e-2]
    assert {r.group for r in trained} == {best.run_summary}  # the sweep id
    assert all(r.status == "completed" for r in runfleet.Api(home).runs("hp"))
    objectives = {r.config["learning_rate"]: r.summary["eval/loss"] for r in trained}
    assert best.objective == min(objectives.values())
