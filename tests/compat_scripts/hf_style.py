# An HF-example-style loop written for wandb (config.update, define_metric, run.summary);
# only the import line is changed.
import argparse
import sys

import numpy as np

import runfleet as wandb

parser = argparse.ArgumentParser()
parser.add_argument("--learning_rate", type=float, default=5e-5)
parser.add_argument("--num_train_epochs", type=int, default=3)
parser.add_argument("--per_device_train_batch_size", type=int, default=8)
args = parser.parse_args([])

run = wandb.init(project="hf-glue", config=args, tags=["baseline"], group="mrpc")
wandb.config.update({"model_name_or_path": "tiny-bert", "task_name": "mrpc"},
                    allow_val_change=True)
wandb.define_metric("train/global_step")
wandb.define_metric("*", step_metric="train/global_step")
wandb.define_metric("eval/accuracy", summary="max")

rng = np.random.default_rng(0)
global_step = 0
best = float("inf")
for epoch in range(wandb.config.num_train_epochs):
    for _ in range(10):
        global_step += 1
        loss = float(np.exp(-global_step / 10) + rng.normal(0, 0.01))
        wandb.log({"train/loss": loss, "train/learning_rate": wandb.config.learning_rate,
                   "train/epoch": epoch + global_step % 10 / 10,
                   "train/global_step": global_step})
    eval_loss = float(np.exp(-global_step / 12))
    accuracy = float(0.6 + 0.1 * epoch)
    wandb.log({"eval/loss": eval_loss, "eval/accuracy": accuracy,
               "train/global_step": global_step})
    best = min(best, eval_loss)

wandb.run.summary["best_eval_loss"] = best
run.summary.update({"total_flos": np.float32(1.5e12)})
wandb.finish()
print("run", run.id, file=sys.stderr)
