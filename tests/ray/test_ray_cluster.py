"""The engine on a real 2-node Ray cluster (``ray.cluster_utils.Cluster`` on this machine):
a 2x2 SFT LoRA grid equals the same grid on the local executor, per step, and its chunks
ran on both nodes; a node lost mid-chunk costs nothing but time (its chunk is retried on
the other node, every run completes, no step is logged twice)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from runfleet import Experiment, GridSearch, List
from runfleet.demo.tiny import load_model
from runfleet.fit import LoraConfig, ModelConfig, SFTConfig, TorchConfig
from tests.engine.models import make_held_model, regression_data
from tests.ray.helpers import (
    HopNodes,
    TwoNodes,
    alert_titles,
    assert_logged_once,
    history,
    run_info,
    wait_for,
)


def test_sft_lora_grid_on_two_nodes_equals_the_local_executor_per_step(
        nodes: TwoNodes, home: Path, tiny_model: str, instructions: Any) -> None:
    space = GridSearch(ModelConfig(
        model_name=tiny_model,
        peft_config=List([LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]),
                          LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1,
                                     target_modules=["q_proj", "v_proj"])]),
        training_args=SFTConfig(learning_rate=List([1e-3, 3e-3]), max_steps=4,
                                per_device_train_batch_size=4, max_length=32)),
        trainer="sft")
    data = instructions.select(range(32))
    executor = nodes.executor()
    on_ray = Experiment("on-ray", dir=home).run_fit(space, load_model, data, num_chunks=2,
                                                    executor=executor, policy=HopNodes(),
                                                    progress=False)
    local = Experiment("local", dir=home).run_fit(space, load_model, data, num_chunks=2,
                                                  workers=1, progress=False)
    assert list(on_ray["status"]) == list(local["status"]) == ["completed"] * 4

    # Chunks ran on both nodes (each worker said which node it runs on, and chunks were
    # reported finished by the workers of each), and every run changed node between its
    # two chunks: its state went from a worker on one node through the keeper to a worker
    # on the other. The losses are still those of local workers, step by step.
    assert set(executor.slot_node.values()) == {nodes.head_id, nodes.worker_id}
    assert len(executor.chunks) == 8 and not executor.failures
    assert executor.chunks_on(nodes.head_id) == executor.chunks_on(nodes.worker_id) == 4
    where = {(run, chunk): node for run, chunk, node in executor.chunks}
    assert all(where[run, 0] != where[run, 1] for run in on_ray["id"])
    config_cols = ["peft_config.r", "training_args.learning_rate"]
    pairs = pd.merge(on_ray[["id", *config_cols]], local[["id", *config_cols]],
                     on=config_cols, suffixes=("_ray", "_local"))
    assert len(pairs) == 4
    for ray_id, local_id in zip(pairs["id_ray"], pairs["id_local"], strict=True):
        ray_steps, ray_loss = history(home, "on-ray", ray_id)
        local_steps, local_loss = history(home, "local", local_id)
        assert ray_steps == local_steps == [1, 2, 3, 4]
        assert np.max(np.abs(ray_loss - local_loss)) <= 1e-6, (ray_loss, local_loss)
    assert len({tuple(history(home, "local", i)[1]) for i in pairs["id_local"]}) == 4


def test_a_node_lost_mid_chunk_costs_no_run_and_logs_no_step_twice(
        nodes: TwoNodes, home: Path, tmp_path: Path) -> None:
    # Each worker trains its first chunk, then is held in its next one (after a step).
    hold = tmp_path / "hold"
    hold.touch()
    max_steps = 12
    space = GridSearch(TorchConfig(hidden=List([4, 8, 16, 32]), learning_rate=0.01,
                                   max_steps=max_steps, per_device_train_batch_size=8,
                                   hold=str(hold), hold_after=1), trainer="torch")
    exp = Experiment("lost-node", dir=home)
    executor = nodes.executor()
    failures: list[BaseException] = []

    def drive() -> None:
        try:
            exp.run_fit(space, make_held_model, regression_data(64), num_chunks=3,
                        executor=executor, progress=False)
        except BaseException as exc:  # reported by the test
            failures.append(exc)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    lost = nodes.worker_id
    try:
        # A chunk is done on the node to be lost, whose worker is now held mid-chunk.
        wait_for(lambda: executor.chunks_on(lost) >= 1, "a chunk done on the worker node",
                 thread.is_alive)
        slot = executor.slot_on(lost)
        assert slot is not None
        held = Path(f"{hold}.{executor.slot_pid[slot]}")
        wait_for(held.exists, "the worker node's worker held mid-chunk", thread.is_alive)
        with executor.lock:
            task = executor.inflight[slot]
        wait_for(lambda: run_info(home, "lost-node", task.spec.run_id).last_step > task.start,
                 "a step of the held chunk in the store", thread.is_alive)
        nodes.cluster.remove_node(nodes.worker_node, allow_graceful=False)
        # The controller notices (an alert on the run: its chunk is retried from the last
        # checkpoint) and the slot gets a new worker on the node left; then training goes on.
        wait_for(lambda: "worker died" in alert_titles(home, "lost-node", task.spec.run_id),
                 "the lost chunk noticed", thread.is_alive)
        wait_for(lambda: len(executor.readies) == 3, "a new worker in the lost slot",
                 thread.is_alive)
    finally:
        hold.unlink(missing_ok=True)
    thread.join(300)
    assert not thread.is_alive() and not failures, failures

    results = exp.results()
    assert list(results["status"]) == ["completed"] * 4
    for run_id in results["id"]:
        assert_logged_once(home, "lost-node", run_id, max_steps)
    # The lost chunk was retried on the head node (the only one left); the new worker of
    # the lost slot runs there too.
    with executor.lock:
        chunks, readies = list(executor.chunks), list(executor.readies)
    assert (task.spec.run_id, task.chunk, nodes.head_id) in chunks
    assert (task.spec.run_id, task.chunk, lost) not in chunks
    # A run whose state was last saved by a worker of the lost node went on from it.
    first_run, first_chunk, _ = next(c for c in chunks if c[2] == lost)
    assert (first_run, first_chunk + 1, nodes.head_id) in chunks
    assert readies[-1] == (slot, nodes.head_id) and len(readies) == 3
    assert not executor.failures
