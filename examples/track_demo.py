"""A tracked training loop: a tiny torch regression logged with runfleet.

Run it with ``python examples/track_demo.py`` (``make demo`` runs something else: the
fine-tuning demo, ``runfleet demo``). It writes to the default home (``RUNFLEET_DIR`` or
``~/.runfleet``) and prints how to read the run back.
"""

from __future__ import annotations

import math

import torch

import runfleet


def main() -> None:
    torch.manual_seed(0)
    config = {"lr": 0.05, "hidden": 16, "steps": 300, "batch_size": 64}
    run = runfleet.init(project="demo", config=config, tags=["demo"],
                        notes="tiny regression of sin(x)")
    runfleet.define_metric("eval/*", summary="min")
    model = torch.nn.Sequential(torch.nn.Linear(1, run.config.hidden), torch.nn.Tanh(),
                                torch.nn.Linear(run.config.hidden, 1))
    opt = torch.optim.Adam(model.parameters(), lr=run.config.lr)
    x_eval = torch.linspace(-math.pi, math.pi, 200).unsqueeze(1)
    for step in range(run.config.steps):
        x = (torch.rand(run.config.batch_size, 1) * 2 - 1) * math.pi
        loss = torch.nn.functional.mse_loss(model(x), torch.sin(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        metrics = {"loss": loss.detach(), "lr": opt.param_groups[0]["lr"]}
        if step % 25 == 0:
            with torch.no_grad():
                metrics["eval/mse"] = torch.nn.functional.mse_loss(
                    model(x_eval), torch.sin(x_eval))
        runfleet.log(metrics)
    with torch.no_grad():
        pred = model(x_eval).squeeze(1)
    xs, preds = x_eval.squeeze(1)[::20].tolist(), pred[::20].tolist()
    table = runfleet.Table(columns=["x", "sin", "pred"],
                           data=[[a, math.sin(a), p] for a, p in zip(xs, preds, strict=True)])
    runfleet.log({"predictions": table, "residuals": runfleet.Histogram(
        (pred - torch.sin(x_eval.squeeze(1))).numpy())})
    run.summary["final_loss"] = float(loss.detach())
    runfleet.finish()

    api = runfleet.Api(run.dir)
    stored = api.run(run.path)
    history = stored.history(keys=["loss", "eval/mse"])
    print(f"\nrun {stored.name} ({stored.path}) is {stored.status}: {len(history)} steps in "
          f"{run.dir}")
    print(f"summary: loss={stored.summary['loss']:.4f}  "
          f"best eval/mse={stored.summary['eval/mse']:.4f}")
    print("\nRead it back:")
    print(f"  runfleet runs --project demo --dir {run.dir}")
    print(f"  runfleet export --project demo --format csv --dir {run.dir} -o demo.csv")
    print(f"  python -c \"import runfleet; print(runfleet.Api('{run.dir}')"
          f".run('{run.path}').history().tail())\"")


if __name__ == "__main__":
    main()
