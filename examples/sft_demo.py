"""Hyper-parallel SFT on the CPU: 4 configs (2 LoRA ranks x 2 learning rates) at once.

The same flow as ``runfleet demo``, written out: build a tiny model offline, define a grid,
train every config chunk by chunk on one worker, compare. Run:
``python examples/sft_demo.py`` (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import runfleet
from runfleet import Experiment, GridSearch, List
from runfleet.demo.sft_demo import demo_metrics, prepare
from runfleet.demo.tiny import load_model
from runfleet.fit import LoraConfig, ModelConfig, SFTConfig
from runfleet.home import Home


def main() -> None:
    home = Home.resolve(None)  # $RUNFLEET_DIR or ~/.runfleet
    # A tokenizer trained on the fly and a 2-layer Llama saved with save_pretrained;
    # load_model reads it back with from_pretrained, as a real model would be.
    model_path, train, evaluation = prepare(home)

    space = GridSearch(ModelConfig(
        model_name=model_path,
        peft_config=List([
            LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
            LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"),
        ]),
        training_args=SFTConfig(learning_rate=List([2e-3, 5e-4]), max_steps=120,
                                per_device_train_batch_size=8, eval_steps=30,
                                lr_scheduler_type="cosine", warmup_steps=10, max_length=48),
        compute_metrics=demo_metrics,   # ROUGE-L, BLEU and chrF on generated answers
        generation_kwargs={"max_new_tokens": 8},
    ), trainer="sft")

    exp = Experiment("sft-example", dir=home.root)
    results = exp.run_fit(space, load_model, train, evaluation, num_chunks=4, seed=42)
    # chrF tells these configs apart; on one-word answers ROUGE-L is all or nothing
    columns = ["name", "peft_config.r", "training_args.learning_rate", "best_eval_loss",
               "best_eval_chrf"]
    print(results[[c for c in columns if c in results.columns]].to_string(index=False))
    print(f"\nEvery run is a tracked run of project {exp.name!r}:")
    for run in runfleet.Api(home.root).runs(exp.name)[-4:]:
        print(f"  {run.name}: {run.status}, {len(run.history())} steps logged")


if __name__ == "__main__":
    main()
