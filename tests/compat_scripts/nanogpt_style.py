# A nanoGPT-style training loop written for wandb; only the import line is changed.
import math
import sys

import torch

import runfleet as wandb

wandb_project, wandb_run_name = "owt", "gpt2-tiny"
config = {"n_layer": 2, "n_head": 2, "n_embd": 32, "learning_rate": 6e-4, "max_iters": 60,
          "eval_interval": 20, "batch_size": 8, "block_size": 16}
wandb.init(project=wandb_project, name=wandb_run_name, config=config)

torch.manual_seed(1337)
vocab = 64
model = torch.nn.Sequential(torch.nn.Embedding(vocab, config["n_embd"]),
                            torch.nn.Linear(config["n_embd"], vocab))
optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"])
data = torch.randint(0, vocab, (4096,))


def get_batch():
    ix = torch.randint(len(data) - config["block_size"] - 1, (config["batch_size"],))
    x = torch.stack([data[i:i + config["block_size"]] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + config["block_size"]] for i in ix])
    return x, y


@torch.no_grad()
def estimate_loss():
    out = {}
    model.eval()
    for split in ["train", "val"]:
        losses = torch.zeros(4)
        for k in range(4):
            x, y = get_batch()
            losses[k] = torch.nn.functional.cross_entropy(model(x).view(-1, vocab), y.view(-1))
        out[split] = losses.mean()
    model.train()
    return out


def get_lr(it):
    return config["learning_rate"] * 0.5 * (1 + math.cos(math.pi * it / config["max_iters"]))


running_mfu = -1.0
for iter_num in range(config["max_iters"] + 1):
    lr = get_lr(iter_num)
    for group in optimizer.param_groups:
        group["lr"] = lr
    if iter_num % config["eval_interval"] == 0:
        losses = estimate_loss()
        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        wandb.log({
            "iter": iter_num,
            "train/loss": losses["train"],
            "val/loss": losses["val"],
            "lr": lr,
            "mfu": running_mfu * 100,
        })
    x, y = get_batch()
    loss = torch.nn.functional.cross_entropy(model(x).view(-1, vocab), y.view(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    running_mfu = 0.01 if running_mfu < 0 else 0.9 * running_mfu + 0.1 * 0.012

print("run", wandb.run.id, file=sys.stderr)
