"""RAG configs evaluated on a real two-node Ray cluster (``ray.cluster_utils.Cluster``, as
Ray's own tests do): the same results as on local workers, and every stage artefact built
once in the whole cluster, then fetched by the workers of the other node through the keeper
of the controller's stage folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runfleet import Experiment, GridSearch, List
from runfleet.engine import RayExecutor
from runfleet.rag import Chunker, Embedder, RagConfig, Retriever
from runfleet.store.base import RunStatus
from tests.conftest import RAY_ENV
from tests.rag.helpers import cranfield_slice, minilm

METRICS = ["ndcg@10", "recall@10", "mrr@10", "map@10"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two Ray nodes on this machine, one CPU each: a worker asking for one CPU lands on
    each node."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    if ray.is_initialized():
        ray.shutdown()
    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": 100 * 2**20, "include_dashboard": False})
    nodes.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, log_to_driver=False,
             runtime_env={"env_vars": RAY_ENV})
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def space() -> GridSearch:
    return GridSearch(RagConfig(
        chunker=Chunker(strategy="recursive", size=List([96, 192]), overlap=16),
        embedder=Embedder(model=minilm()),
        retriever=Retriever(kind=List(["dense", "bm25"]), k=10)))


def test_rag_grid_on_two_nodes_equals_local_and_builds_each_stage_once(
        cluster: Any, tmp_path: Path) -> None:
    import ray

    corpus, queries, qrels = cranfield_slice(documents=60, queries=12)
    alive = [n for n in ray.nodes() if n["Alive"]]
    assert len(alive) == 2 and all(n["Resources"]["CPU"] == 1 for n in alive)

    on_ray = Experiment("rag-ray", dir=tmp_path / "home")
    ray_results = on_ray.run_evals(
        space(), corpus, queries, qrels=qrels, num_shards=4, seed=1, progress=False,
        executor=RayExecutor(address=cluster.address, num_workers=2),
        cache_dir=tmp_path / "ray-cache")
    local = Experiment("rag-local", dir=tmp_path / "home")
    local_results = local.run_evals(space(), corpus, queries, qrels=qrels, num_shards=4,
                                    seed=1, progress=False, workers=1,
                                    cache_dir=tmp_path / "local-cache")

    assert set(ray_results["status"]) == {RunStatus.COMPLETED} and len(ray_results) == 4
    by_name = ["name", *METRICS, *(f"{m}_ci_low" for m in METRICS)]
    pd.testing.assert_frame_equal(
        ray_results[by_name].sort_values("name").reset_index(drop=True),
        local_results[by_name].sort_values("name").reset_index(drop=True), atol=1e-9)
    for run_id in ray_results["id"]:  # query by query too, in the same order
        name = ray_results.set_index("id").loc[run_id, "name"]
        twin = local_results.set_index("name").loc[name, "id"]
        a, b = on_ray.per_query(run_id), local.per_query(twin)
        assert a["query_id"].tolist() == b["query_id"].tolist()
        assert a["ndcg@10"].tolist() == pytest.approx(b["ndcg@10"].tolist(), abs=1e-9)

    # one build per stage key in the whole cluster, logged in the controller's folder
    stats = on_ray.stage_stats()
    assert (stats["computed"] <= 1).all()
    by_stage = stats.groupby("stage")[["computed", "reused"]].sum()
    assert by_stage.loc["chunks", "computed"] == 2
    assert by_stage.loc["embeddings", "computed"] == 2
    assert by_stage.loc["bm25_index", "computed"] == 2
    assert by_stage.loc["query_embeddings", "computed"] == 1
    from runfleet.rag.stages import read_stats

    events = read_stats(tmp_path / "ray-cache", "rag-ray")
    assert events and all("host" in e for e in events)  # every use went through the share
    builders = {e["key"]: e["pid"] for e in events if e["event"] == "computed"}
    fetched = [e for e in events if e["event"] == "reused" and builders[e["key"]] != e["pid"]]
    assert fetched, "no worker used an artefact another worker built"
    assert len({e["pid"] for e in events}) == 2  # both workers, one on each node
    # the published artefacts are ordinary cache entries: a local experiment reuses them
    again = Experiment("rag-again", dir=tmp_path / "home")
    again.run_evals(space(), corpus, queries, qrels=qrels, num_shards=2, seed=1,
                    progress=False, workers=1, cache_dir=tmp_path / "ray-cache")
    assert again.stage_stats()["computed"].sum() == 0
