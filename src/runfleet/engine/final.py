"""A completed run's final model as an artefact (``Experiment.run_fit(save_final=True)``).

The run's last checkpoint holds its trainable weights next to the optimizer, schedule and
RNG state; only the weights are kept: ``weights.pt`` (a ``torch.save``d dict of CPU tensors:
the model's ``state_dict`` for ``trainer="torch"``, the adapter's tensors for LoRA, the full
model's ``state_dict`` for full fine-tuning) and ``run.json`` (what the weights are: the
run's config, trainer, kind and steps trained). The artefact is named ``model-<run id>``,
of type ``model``, logged by the run itself.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from runfleet.artifacts import Artifact
from runfleet.engine.checkpoint import CheckpointStore
from runfleet.engine.controller import EngineRun

logger = logging.getLogger("runfleet")

ARTIFACT_TYPE = "model"


def final_artifact_name(run_id: str) -> str:
    """The name of a run's final model artefact: ``model-<run id>``."""
    return f"model-{run_id}"


def final_weights(state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(kind, weights)`` of a run's checkpoint state: ``torch``, ``lora`` or ``full``."""
    if "model" in state:
        return "torch", state["model"]
    if "weights" in state:
        return str(state.get("kind", "full")), state["weights"]
    raise ValueError(f"a checkpoint with keys {sorted(state)} holds no model weights")


def save_final_model(run: EngineRun, checkpoints: CheckpointStore, trainer: str) -> None:
    """Log the final weights of the completed ``run`` (from its last checkpoint) as the
    artefact :func:`final_artifact_name` on its tracked run. Never raises: a failure is an
    error alert on the run, which still completes."""
    try:
        if run.state_key is None:
            raise ValueError("the run saved no checkpoint")
        import torch

        kind, weights = final_weights(checkpoints.load(run.state_key))
        with tempfile.TemporaryDirectory(prefix="runfleet-final-") as tmp:
            folder = Path(tmp)
            torch.save(weights, folder / "weights.pt")
            (folder / "run.json").write_text(json.dumps(
                {"run_id": run.spec.run_id, "run_name": run.name, "trainer": trainer,
                 "kind": kind, "steps": run.next_step, "config": run.config},
                indent=2, sort_keys=True, default=str))
            art = Artifact(final_artifact_name(run.spec.run_id), ARTIFACT_TYPE,
                           description=f"final weights of run {run.name} ({kind})",
                           metadata={"trainer": trainer, "kind": kind, "steps": run.next_step})
            art.add_dir(folder)
            run.tracker.log_artifact(art)
    except Exception as exc:  # the boundary: the run completes, the failure is recorded
        logger.warning("run %s: final model not saved as an artefact: %r", run.name, exc)
        run.tracker.alert("final model not saved", f"save_final: {exc!r}", "error")
