"""A clone's changes are checked against the field types and bounds of the config classes
(and the peft/trl classes they wrap) before the op is accepted; the reason names the key."""

from __future__ import annotations

from typing import Any

import pytest

from runfleet.engine.planning import plan_clone, plan_runs
from runfleet.fit import LoraConfig, ModelConfig, SFTConfig, TorchConfig

TORCH = TorchConfig(hidden=8, learning_rate=0.01, max_steps=8, per_device_train_batch_size=8)
SFT = ModelConfig(model_name="tiny", peft_config=LoraConfig(r=4, target_modules=["q_proj"]),
                  training_args=SFTConfig(learning_rate=1e-3, max_steps=8,
                                          per_device_train_batch_size=2))


def clone(trainer: str, config: Any, **changes: Any) -> Any:
    (parent,) = plan_runs(trainer, [config], 64, 2, 0)
    return plan_clone(trainer, config, parent.flat, {k.replace("__", "."): v
                                                      for k, v in changes.items()},
                      False, 64, 2, 0)


@pytest.mark.parametrize(("changes", "reason"), [
    ({"hidden": "abc"}, r"hidden: the value it replaces is int 8, got str 'abc'"),
    ({"learning_rate": True}, r"learning_rate: the value it replaces is float 0.01, got bool"),
    ({"max_steps": -5}, r"max_steps must be -1 \(train num_train_epochs\) or >= 1, got -5"),
    ({"per_device_train_batch_size": 0}, r"per_device_train_batch_size must be >= 1, got 0"),
    ({"warmup_steps": 1.5}, r"warmup_steps: the value it replaces is int 0, got float"),
])
def test_torch_clone_values_are_checked(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        clone("torch", TORCH, **changes)


@pytest.mark.parametrize(("changes", "reason"), [
    ({"training_args__learning_rate": True},
     r"training_args.learning_rate: SFTConfig.learning_rate takes float, got bool True"),
    ({"training_args__max_steps": "10"}, r"SFTConfig.max_steps takes int, got str '10'"),
    ({"training_args__max_steps": -5}, r"training_args.max_steps must be -1 .* got -5"),
    ({"peft_config__r": 0}, r"peft_config.r must be >= 1, got 0"),
    ({"peft_config__lora_dropout": 1.5}, r"peft_config.lora_dropout must be in \[0, 1\)"),
    ({"peft_config__target_modules__0": "v_proj"},
     r"peft_config.target_modules.0: peft_config.target_modules is a list; a clone "
     r"replaces a list whole, e.g. peft_config.target_modules=\['q_proj'\]"),
])
def test_hf_clone_values_are_checked(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        clone("sft", SFT, **changes)


def test_valid_changes_are_accepted() -> None:
    planned = clone("sft", SFT, training_args__learning_rate=2e-4, peft_config__r=8,
                    peft_config__target_modules=["q_proj", "v_proj"])
    assert planned.flat["training_args.learning_rate"] == 2e-4
    assert planned.flat["peft_config.target_modules"] == ["q_proj", "v_proj"]
    assert clone("torch", TORCH, hidden=16, learning_rate=1, warmup_steps=2).flat["hidden"] == 16
