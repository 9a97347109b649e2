# A trackio quickstart-style script; only the import line is changed.
import random
import sys

import runfleet as trackio

random.seed(0)
for lr in (1e-3, 1e-4):
    trackio.init(project="trackio-demo", name=f"lr-{lr}", config={"lr": lr, "epochs": 5},
                 group="sweep", resume="never")
    for epoch in range(5):
        trackio.log({"train_loss": 1.0 / (epoch + 1) + random.random() * 0.01,
                     "accuracy": 0.5 + epoch * lr * 10})
    trackio.finish()
print("done", file=sys.stderr)
