"""``Experiment.run_fit(save_final=True)``: each completed run logs its final weights as the
artefact ``model-<run id>`` (real worker processes, the torch backend and a LoRA SFT run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

import runfleet
from runfleet import Experiment, GridSearch, List
from runfleet.demo.tiny import load_model
from runfleet.engine.checkpoint import LocalCheckpointStore
from runfleet.engine.recovery import SavedExperiment
from runfleet.fit import LoraConfig, ModelConfig, SFTConfig, TorchConfig
from runfleet.store.base import ArtifactRole
from tests.engine.models import Regressor, make_model, regression_data


def _checkpoint(home: Path, exp: str, run_id: str) -> dict[str, Any]:
    root = home / "experiments" / exp / "checkpoints"
    (path,) = (root / run_id).glob("chunk-*.pt")
    return LocalCheckpointStore(root).load(f"{run_id}/{path.stem}")


def test_torch_runs_log_their_final_model(home: Path) -> None:
    exp = Experiment("final", dir=home)
    results = exp.run_fit(
        GridSearch(TorchConfig(hidden=List([4, -1, 8]), per_device_train_batch_size=16,
                               num_train_epochs=1), trainer="torch"),
        make_model, regression_data(64), num_chunks=2, workers=1, progress=False,
        save_final=True)
    assert list(results["status"]) == ["completed", "failed", "completed"]
    api = runfleet.Api(home)
    logged = {}
    for run in api.runs("final"):
        rows = api.store.run_artifacts(run.rid)
        if run.status == "failed":
            assert rows == []  # a failed run has no final model
            continue
        ((role, record),) = rows
        assert role == ArtifactRole.LOGGED and record.name == f"model-{run.id}"
        assert (record.type, record.version, record.aliases) == ("model", 0, ["latest"])
        assert record.producer is not None and record.producer.run_id == run.id
        logged[run.id] = int(run.config["hidden"])
    assert sorted(logged.values()) == [4, 8]
    with runfleet.init(project="final", dir=home) as user:
        for run_id, hidden in logged.items():
            art = user.use_artifact(f"model-{run_id}:latest", type="model")
            weights = torch.load(art.file("weights.pt"), weights_only=True)
            expected = _checkpoint(home, "final", run_id)["model"]
            assert weights.keys() == expected.keys()
            assert all(torch.equal(weights[k], expected[k]) for k in weights)
            model = Regressor(hidden)
            model.load_state_dict(weights)  # usable as is
            info = json.loads(Path(art.file("run.json")).read_text())
            assert (info["run_id"], info["trainer"], info["kind"], info["steps"]) == \
                (run_id, "torch", "torch", 4)
            assert art.metadata == {"trainer": "torch", "kind": "torch", "steps": 4}


def test_without_save_final_the_controller_saves_nothing(home: Path) -> None:
    # The flag travels in engine.pkl (a resumed experiment keeps it); off, there is no hook.
    exp = Experiment("plain", dir=home)
    saved = SavedExperiment(None, "torch", 1, 0, None, None, [])  # type: ignore[arg-type]
    assert exp._final_saver(saved) is None
    saved.save_final = True
    assert exp._final_saver(saved) is not None


def test_lora_sft_run_logs_its_adapter(home: Path, tiny_model: str, instructions: Any
                                       ) -> None:
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    config = ModelConfig(model_name=tiny_model, peft_config=lora,
                         training_args=SFTConfig(learning_rate=1e-3, max_steps=2,
                                                 per_device_train_batch_size=4,
                                                 max_length=32))
    exp = Experiment("lora-final", dir=home)
    exp.run_fit(config, load_model, instructions.select(range(8)), num_chunks=1, workers=1,
                progress=False, save_final=True)
    (run,) = runfleet.Api(home).runs("lora-final")
    (record,) = runfleet.Api(home).store.artifact_versions("lora-final")
    assert record.name == f"model-{run.id}" and record.metadata["kind"] == "lora"
    with runfleet.init(project="lora-final", dir=home) as user:
        art = user.use_artifact(record.name)
        adapter = torch.load(art.file("weights.pt"), weights_only=True)
    expected = _checkpoint(home, "lora-final", run.id)["weights"]
    assert adapter.keys() == expected.keys() and len(adapter) > 0
    assert all(torch.equal(adapter[k], expected[k]) for k in adapter)
    assert all("lora" in k for k in adapter)  # the adapter only, not the base model
