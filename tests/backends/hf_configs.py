"""Configs and worker resources for the HF backend tests (tiny Llama, shipped datasets)."""

from __future__ import annotations

from typing import Any

from runfleet.demo import load_model
from runfleet.engine.backend import WorkerResources
from runfleet.engine.chunking import StepPlan
from runfleet.engine.spec import RunSpec
from runfleet.fit import DPOConfig, GRPOConfig, LoraConfig, ModelConfig, SFTConfig

NUM_TRAIN = 32


def lora(rank: int = 4) -> LoraConfig:
    return LoraConfig(r=rank, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear")


def sft_config(path: str, peft: LoraConfig | None, lr: float = 5e-3, **extra: Any
               ) -> ModelConfig:
    args = SFTConfig(learning_rate=lr, per_device_train_batch_size=2,
                     gradient_accumulation_steps=2, max_length=48, warmup_steps=2,
                     lr_scheduler_type="cosine", weight_decay=0.01, per_device_eval_batch_size=8)
    return ModelConfig(model_name=path, peft_config=peft, training_args=args,
                       generation_kwargs={"max_new_tokens": 4}, **extra)


def dpo_config(path: str, peft: LoraConfig | None, lr: float = 5e-3) -> ModelConfig:
    args = DPOConfig(learning_rate=lr, per_device_train_batch_size=2,
                     gradient_accumulation_steps=2, max_length=48, beta=0.2,
                     per_device_eval_batch_size=8)
    return ModelConfig(model_name=path, peft_config=peft, training_args=args,
                       generation_kwargs={"max_new_tokens": 4})


def reward_short(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    return [-abs(len(c) - 4) / 4 for c in completions]


def reward_exact(prompts: list[str], completions: list[str], completion: list[str],
                 **_: Any) -> list[float]:
    return [float(c.strip() == ref.strip()) for c, ref in zip(completions, completion)]


def grpo_config(path: str, peft: LoraConfig | None, lr: float = 5e-3, beta: float = 0.1
                ) -> ModelConfig:
    args = GRPOConfig(learning_rate=lr, per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=6, temperature=1.0, beta=beta)
    return ModelConfig(model_name=path, peft_config=peft, training_args=args,
                       reward_funcs=[reward_short, reward_exact])


def make_spec(trainer: str, config: Any, *, run_id: str = "run", steps: int = 8,
              chunks: int = 1, seed: int = 0, batch_size: int = 4) -> RunSpec:
    plan = StepPlan.build(num_examples=NUM_TRAIN, batch_size=batch_size, epochs=1,
                          max_steps=steps, num_chunks=chunks, seed=11)
    return RunSpec(run_id=run_id, trainer=trainer, config=config, plan=plan, seed=seed)


def resources_for(trainer: str, instructions: Any, preferences: Any, **kw: Any
                  ) -> WorkerResources:
    data = preferences if trainer == "dpo" else instructions
    return WorkerResources(device="cpu", train_dataset=data.select(range(NUM_TRAIN)),
                           eval_dataset=data.select(range(300, 308)),
                           create_model_fn=kw.get("create_model_fn", load_model))
