"""The engine end to end with the HF/TRL backends: real workers, a tiny Llama, the store.

These are the issue's acceptance tests: chunked training equals training alone (SFT with
LoRA and full fine-tuning), a 4-config SFT grid, 2-config DPO and GRPO runs, all with their
automatic metrics and configs readable through ``runfleet.Api``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

import runfleet
from runfleet import Experiment, GridSearch, List
from runfleet.demo.tiny import load_model
from runfleet.engine.checkpoint import LocalCheckpointStore
from runfleet.fit import DPOConfig, GRPOConfig, LoraConfig, ModelConfig, SFTConfig
from runfleet.fit.metrics import rouge_l_and_bleu

AUTOMATIC = {"loss", "learning_rate", "grad_norm", "epoch", "step", "chunk"}


def final_state(home: Path, exp: str, run_id: str) -> dict[str, Any]:
    root = home / "experiments" / exp / "checkpoints"
    (path,) = (root / run_id).glob("chunk-*.pt")
    return LocalCheckpointStore(root).load(f"{run_id}/{path.stem}")


def check_equivalence(home: Path, tiny_model: str, data: Any, peft: Any, tag: str) -> None:
    def config(lr: Any) -> ModelConfig:
        return ModelConfig(model_name=tiny_model, peft_config=peft,
                           training_args=SFTConfig(learning_rate=lr, max_steps=8,
                                                   per_device_train_batch_size=4,
                                                   max_length=32))

    alone = Experiment(f"{tag}-alone", dir=home)
    alone.run_fit(GridSearch(config(1e-3)), load_model, data, num_chunks=1, workers=1,
                  progress=False)
    both = Experiment(f"{tag}-both", dir=home)
    both.run_fit(GridSearch(config(List([1e-3, 3e-3]))), load_model, data, num_chunks=4,
                 workers=1, progress=False)
    api = runfleet.Api(home)
    (a,) = api.runs(f"{tag}-alone")
    b = next(r for r in api.runs(f"{tag}-both")
             if r.config["training_args.learning_rate"] == 1e-3)
    la, lb = a.history(keys=["loss"])["loss"].to_numpy(), b.history(keys=["loss"])["loss"]
    assert len(la) == len(lb) == 8
    assert np.max(np.abs(la - lb.to_numpy())) <= 1e-6
    wa = final_state(home, f"{tag}-alone", a.id)["weights"]
    wb = final_state(home, f"{tag}-both", b.id)["weights"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_lora_sft_in_4_interleaved_chunks_equals_training_alone(
        home: Path, tiny_model: str, instructions: Any) -> None:
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "v_proj"])
    check_equivalence(home, tiny_model, instructions.select(range(64)), lora, "lora")


def test_full_sft_in_4_interleaved_chunks_equals_training_alone(
        home: Path, tiny_model: str, instructions: Any) -> None:
    check_equivalence(home, tiny_model, instructions.select(range(64)), None, "full")


def test_sft_grid_of_4_logs_every_automatic_metric(home: Path, tiny_model: str,
                                                   instructions: Any) -> None:
    space = GridSearch(ModelConfig(
        model_name=tiny_model,
        peft_config=List([LoraConfig(r=2, target_modules=["q_proj"]),
                          LoraConfig(r=8, target_modules="all-linear")]),
        training_args=SFTConfig(learning_rate=List([1e-3, 1e-2]), max_steps=4,
                                per_device_train_batch_size=4, eval_steps=2, max_length=32),
        compute_metrics=rouge_l_and_bleu, generation_kwargs={"max_new_tokens": 3}),
        trainer="sft")
    exp = Experiment("grid", dir=home)
    results = exp.run_fit(space, load_model, instructions.select(range(32)),
                          instructions.select(range(300, 308)), num_chunks=2, workers=1,
                          progress=False)
    assert list(results["status"]) == ["completed"] * 4
    runs = runfleet.Api(home).runs("grid")
    assert sorted((r.config["peft_config.r"], r.config["training_args.learning_rate"])
                  for r in runs) == [(2, 1e-3), (2, 1e-2), (8, 1e-3), (8, 1e-2)]
    for r in runs:
        h = r.history()
        assert AUTOMATIC | {"eval_loss", "eval_rougeL", "eval_bleu"} <= set(h.columns)
        assert h["_step"].tolist() == [1, 2, 3, 4]
        assert h["eval_loss"].notna().tolist() == [False, True, False, True]
        assert r.config["trainer"] == "sft" and r.config["num_chunks"] == 2
        assert r.metadata["engine"]["chunks_done"] == 2


def test_dpo_and_grpo_runs_complete(home: Path, tiny_model: str, preferences: Any,
                                    instructions: Any) -> None:
    dpo = GridSearch(ModelConfig(
        model_name=tiny_model, peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
        training_args=DPOConfig(beta=List([0.1, 0.5]), max_steps=4,
                                per_device_train_batch_size=2, max_length=48)),
        trainer="dpo")
    results = Experiment("dpo", dir=home).run_fit(
        dpo, load_model, preferences.select(range(16)), preferences.select(range(300, 304)),
        num_chunks=2, workers=1, progress=False)
    assert list(results["status"]) == ["completed", "completed"]
    for r in runfleet.Api(home).runs("dpo"):
        h = r.history()
        assert AUTOMATIC | {"rewards/chosen", "rewards/margins", "eval_loss"} <= set(h.columns)
        assert r.config["training_args.beta"] in (0.1, 0.5)

    def short_answers(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        return [1.0 / (1 + len(c)) for c in completions]

    grpo = GridSearch(ModelConfig(
        model_name=tiny_model, peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
        training_args=GRPOConfig(learning_rate=List([1e-3, 1e-2]), max_steps=2,
                                 per_device_train_batch_size=4, num_generations=2,
                                 max_completion_length=4),
        reward_funcs=[short_answers]), trainer="grpo")
    prompts = instructions.select(range(16)).select_columns(["prompt"])
    results = Experiment("grpo", dir=home).run_fit(grpo, load_model, prompts, num_chunks=2,
                                                   workers=1, progress=False)
    assert list(results["status"]) == ["completed", "completed"]
    for r in runfleet.Api(home).runs("grpo"):
        assert AUTOMATIC | {"reward", "reward_std"} <= set(r.history().columns)
        assert r.config["reward_funcs"] == [
            "test_dpo_and_grpo_runs_complete.<locals>.short_answers"]
