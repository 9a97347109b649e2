"""RunfleetCallback logs what a real Trainer (and TRL's SFTTrainer) logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import runfleet
from runfleet.integrations.transformers import RunfleetCallback
from runfleet.sinks.trackio import TrackioSink


def _tokenized(tiny_model: str, instructions: Any, n: int) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)

    def encode(row: dict[str, Any]) -> dict[str, Any]:
        ids = tok(row["prompt"] + row["completion"])["input_ids"][:32]
        return {"input_ids": ids, "labels": ids}

    return instructions.select(range(n)).map(encode, remove_columns=instructions.column_names)


def _collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def logged_losses(history: list[dict[str, Any]], key: str) -> dict[int, float]:
    return {int(e["step"]): float(e[key]) for e in history if key in e}


def test_trainer_logs_land_at_the_global_step(home: Path, tiny_model: str,
                                              instructions: Any, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    data = _tokenized(tiny_model, instructions, 32)
    args = TrainingArguments(str(tmp_path / "out"), max_steps=6, logging_steps=1,
                             per_device_train_batch_size=4, eval_strategy="steps",
                             eval_steps=3, report_to="none", use_cpu=True, save_strategy="no",
                             learning_rate=1e-3)
    trainer = Trainer(AutoModelForCausalLM.from_pretrained(tiny_model), args,
                      train_dataset=data, eval_dataset=data.select(range(8)),
                      data_collator=_collate,
                      callbacks=[RunfleetCallback(project="hf", dir=home, tags=["t"])])
    trainer.train()
    (run,) = runfleet.Api(home).runs("hf")
    assert run.status == "completed" and run.tags == ["t"]
    assert run.config["args.learning_rate"] == 1e-3 and run.config["model.num_hidden_layers"] == 2
    h = run.history(keys=["loss", "eval_loss", "learning_rate"])
    mine = {int(s): float(v) for s, v in zip(h["_step"], h["loss"], strict=True) if v == v}
    assert mine == pytest.approx(logged_losses(trainer.state.log_history, "loss"), abs=0)
    evals = {int(s): float(v) for s, v in zip(h["_step"], h["eval_loss"], strict=True) if v == v}
    assert evals == logged_losses(trainer.state.log_history, "eval_loss")
    assert sorted(mine) == [1, 2, 3, 4, 5, 6] and sorted(evals) == [3, 6]


def test_trl_sft_trainer_with_the_callback(home: Path, tiny_model: str, instructions: Any,
                                           tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=4, logging_steps=1,
                     per_device_train_batch_size=4, report_to="none", use_cpu=True,
                     bf16=False, save_strategy="no", max_length=32)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args,
                         train_dataset=instructions.select(range(16)).remove_columns(["task"]),
                         processing_class=AutoTokenizer.from_pretrained(tiny_model),
                         callbacks=[RunfleetCallback(project="trl-callback", dir=home,
                                                     sinks=["trackio"])])
    trainer.train()
    (run,) = runfleet.Api(home).runs("trl-callback")
    h = run.history(keys=["loss"])
    expected = logged_losses(trainer.state.log_history, "loss")
    assert dict(zip(h["_step"].tolist(), h["loss"].tolist(), strict=True)) == expected
    assert run.status == "completed" and len(h) == 4
    # the same run, sent to trackio through the callback's sinks
    (in_trackio,) = TrackioSink().read_project("trl-callback")
    assert (in_trackio.run_id, in_trackio.status) == (run.id, "completed")
    assert dict(in_trackio.points["loss"]) == expected
    assert in_trackio.config["args.learning_rate"] == run.config["args.learning_rate"]
