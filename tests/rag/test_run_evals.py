"""RAG configs evaluated hyper-parallel through the real engine (workers, controller, store)
on a slice of Cranfield: metrics equal pytrec_eval on the logged rankings, intervals close
to the exact value, shared stages are computed once, the query order is the same for every
config, and bad input fails before any work."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import pytrec_eval

import runfleet
from runfleet import Experiment, GridSearch, List
from runfleet.rag import Chunker, Embedder, Generator, RagConfig, Reranker, Retriever
from runfleet.rag.data import EvalDataError
from runfleet.store.base import RunStatus
from tests.rag.helpers import FailingReranker, cranfield_slice, minilm

METRICS = ("ndcg@10", "recall@10", "precision@5", "mrr@10", "map@10", "hit@1")
TREC = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "precision@5": "P_5",
        "map@10": "map_cut_10"}


@pytest.fixture(scope="module")
def data() -> tuple[Any, Any, Any]:
    return cranfield_slice(documents=120, queries=24)


@pytest.fixture(scope="module")
def grid(data: tuple[Any, Any, Any], tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Experiment, pd.DataFrame, Path]:
    corpus, queries, qrels = data
    home = tmp_path_factory.mktemp("rag-home")
    space = GridSearch(RagConfig(
        chunker=Chunker(strategy=List(["recursive", "document"]), size=128, overlap=16),
        embedder=Embedder(model=minilm()),
        retriever=Retriever(kind=List(["dense", "bm25", "hybrid"]), k=10)))
    exp = Experiment("rag-grid", dir=home)
    results = exp.run_evals(space, corpus, queries, qrels=qrels, num_shards=4, seed=3,
                            workers=1, progress=False)
    return exp, results, home


def test_every_config_completes_with_means_and_closed_intervals(
        grid: tuple[Experiment, pd.DataFrame, Path], data: tuple[Any, Any, Any]) -> None:
    _exp, results, _ = grid
    assert len(results) == 6 and set(results["status"]) == {RunStatus.COMPLETED}
    for metric in METRICS:
        for column in (metric, f"{metric}_ci_low", f"{metric}_ci_high"):
            assert column in results, column
        # every query is done: the interval for the whole set is the exact mean
        assert (results[f"{metric}_ci_low"] == results[metric]).all()
        assert (results[f"{metric}_ci_high"] == results[metric]).all()
    assert (results["queries_done"] == len(data[1])).all()
    assert (results["queries_unjudged"] == 0).all()
    assert (results["latency_ms/retrieve_p50"] > 0).all()
    assert results["ndcg@10"].between(0, 1).all() and results["ndcg@10"].nunique() > 1


def test_logged_metrics_equal_pytrec_eval_on_the_logged_rankings(
        grid: tuple[Experiment, pd.DataFrame, Path], data: tuple[Any, Any, Any]) -> None:
    exp, results, _ = grid
    qrels = data[2]
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(TREC.values()) | {"recip_rank"})
    for _, row in results.iterrows():
        ranked = exp.rankings(row["id"])
        assert set(ranked["query_id"]) == set(qrels)
        run: dict[str, dict[str, float]] = {}
        for qid, group in ranked.groupby("query_id"):
            # scores that give trec_eval the logged order exactly
            run[str(qid)] = {str(d): float(len(group) - r) for d, r in
                             zip(group["doc_id"], group["rank"])}
        per_query = evaluator.evaluate(run)
        for metric, measure in TREC.items():
            expected = sum(q[measure] for q in per_query.values()) / len(per_query)
            assert row[metric] == pytest.approx(expected, abs=1e-9), (row["name"], metric)
        mrr = sum(q["recip_rank"] for q in per_query.values()) / len(per_query)
        assert row["mrr@10"] == pytest.approx(mrr, abs=1e-9)  # 10 documents: cut is a no-op


def test_shared_stages_are_computed_once(grid: tuple[Experiment, pd.DataFrame, Path]) -> None:
    exp, _, _ = grid
    stats = exp.stage_stats()
    by_stage = stats.groupby("stage")[["computed", "reused"]].sum()
    # 2 chunkings; each embedded once (dense + hybrid share it) and BM25-indexed once
    assert by_stage.loc["chunks", "computed"] == 2
    assert by_stage.loc["embeddings", "computed"] == 2
    assert by_stage.loc["bm25_index", "computed"] == 2
    assert by_stage.loc["query_embeddings", "computed"] == 1  # the queries, once per embedder
    assert (stats["computed"] <= 1).all()  # no key was ever computed twice
    assert by_stage.loc["chunks", "reused"] == 4  # 3 runs per chunking, 1 computes it
    assert by_stage.loc["embeddings", "reused"] == 2


def test_every_config_sees_the_queries_in_the_same_order(
        grid: tuple[Experiment, pd.DataFrame, Path], data: tuple[Any, Any, Any]) -> None:
    exp, results, home = grid
    orders = []
    with runfleet.Api(home) as api:
        for run_id in results["id"]:
            run = api.run("rag-grid", run_id)
            steps = run.series("query/ndcg@10").steps.tolist()
            assert steps == list(range(1, len(data[1]) + 1))  # every query once
            orders.append(exp.per_query(run_id)["query_id"].tolist())
    assert all(order == orders[0] for order in orders)
    assert orders[0] != [q["_id"] for q in data[1]]  # shuffled with the seed, not as given


def test_compare_is_the_mean_paired_difference(
        grid: tuple[Experiment, pd.DataFrame, Path]) -> None:
    exp, results, _ = grid
    a, b = results["id"].iloc[0], results["id"].iloc[1]
    same = exp.compare(a, a, "ndcg@10")
    assert same["mean"] == same["ci_low"] == same["ci_high"] == 0.0
    diff = exp.compare(a, b, "ndcg@10")
    expected = results["ndcg@10"].iloc[0] - results["ndcg@10"].iloc[1]
    assert diff["mean"] == pytest.approx(expected, abs=1e-12)
    assert diff["n"] == diff["population"] == 24


def test_a_failing_stage_fails_its_run_only(data: tuple[Any, Any, Any], tmp_path: Path
                                            ) -> None:
    corpus, queries, qrels = data
    space = GridSearch(RagConfig(retriever=Retriever(kind="bm25", k=10),
                                 chunker=Chunker(unit="chars", size=400, overlap=40),
                                 reranker=List([None, FailingReranker()])))
    exp = Experiment("rag-fail", dir=tmp_path)
    results = exp.run_evals(space, corpus, queries, qrels=qrels, num_shards=2, workers=1,
                            progress=False)
    statuses = dict(zip(results["name"], results["status"]))
    assert statuses == {"run-1": RunStatus.COMPLETED, "run-2": RunStatus.FAILED}
    with runfleet.Api(tmp_path) as api:
        failed = api.runs("rag-fail", filters={"name": "run-2"})[0]
        alerts = failed.alerts()
    assert any("the reranker service is down" in a["text"] for a in alerts)


def test_an_endpoint_that_cannot_be_reached_fails_its_run_with_the_reason(
        data: tuple[Any, Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAG_TEST_KEY", "not-a-real-key")
    corpus, queries, qrels = data
    space = GridSearch(RagConfig(
        retriever=Retriever(kind="bm25", k=5), chunker=Chunker(unit="chars", size=400),
        generator=List([None, Generator(model="test-model", base_url=f"http://127.0.0.1:{port}/v1",
                                        api_key_env="RAG_TEST_KEY", timeout=2,
                                        max_retries=1)])))
    exp = Experiment("rag-endpoint", dir=tmp_path)
    results = exp.run_evals(space, corpus, queries[:4], qrels={q["_id"]: qrels[q["_id"]]
                                                              for q in queries[:4]},
                            num_shards=2, workers=1, progress=False)
    assert list(results["status"]) == [RunStatus.COMPLETED, RunStatus.FAILED]
    with runfleet.Api(tmp_path) as api:
        alerts = api.runs("rag-endpoint", filters={"name": "run-2"})[0].alerts()
    assert any("127.0.0.1" in a["text"] or "connect" in a["text"].lower() for a in alerts), alerts


@pytest.mark.parametrize(("change", "message"), [
    ({"corpus": []}, "corpus"),
    ({"qrels": {"q-unknown": {"1": 1}}}, "judg"),
    ({"qrels": {"1": {"no-such-doc": 2}}}, "no-such-doc"),
])
def test_bad_input_fails_before_any_work(data: tuple[Any, Any, Any], tmp_path: Path,
                                         change: dict[str, Any], message: str) -> None:
    corpus, queries, qrels = data
    inputs = {"corpus": corpus, "queries": queries, "qrels": qrels, **change}
    exp = Experiment("rag-bad", dir=tmp_path)
    with pytest.raises(EvalDataError, match=message):
        exp.run_evals(GridSearch(RagConfig(retriever=Retriever(kind="bm25"))),
                      inputs["corpus"], inputs["queries"], qrels=inputs["qrels"],
                      progress=False)
    assert not (tmp_path / "experiments" / "rag-bad" / "engine.pkl").exists()


def test_a_model_folder_that_does_not_exist_fails_before_any_work(
        data: tuple[Any, Any, Any], tmp_path: Path) -> None:
    corpus, queries, qrels = data
    space = GridSearch(RagConfig(embedder=Embedder(model=str(tmp_path / "no-model")),
                                 reranker=Reranker(model=minilm(), kind="embedder")))
    with pytest.raises(ValueError, match=r"embedder.model: no model folder at .*no-model"):
        Experiment("rag-nomodel", dir=tmp_path).run_evals(space, corpus, queries, qrels=qrels,
                                                          progress=False)
    assert not (tmp_path / "experiments" / "rag-nomodel" / "engine.pkl").exists()



def test_rescoring_by_a_second_embedder_shares_its_vectors(
        data: tuple[Any, Any, Any], tmp_path: Path) -> None:
    """BM25 and dense configs, each with and without rescoring by MiniLM: the passages are
    embedded once (the rescorer's vectors are the retrieval stage); a pipeline's rescored
    passages are in the order the standalone EmbedderReranker gives query by query, and a
    dense config rescored by its own embedder keeps its ranking and scores."""
    from runfleet.rag.data import eval_set
    from runfleet.rag.embedding import load_embedder
    from runfleet.rag.inputs import RagInputs
    from runfleet.rag.pipeline import Pipeline
    from runfleet.rag.rerank import EmbedderReranker
    from runfleet.rag.stages import StageCache

    corpus, queries, qrels = data
    rescorer = Reranker(model=minilm(), kind="embedder")
    space = GridSearch(RagConfig(
        chunker=Chunker(strategy="recursive", size=128, overlap=16),
        embedder=Embedder(model=minilm()),
        retriever=Retriever(kind=List(["bm25", "dense"]), k=5, candidates=5),
        reranker=List([None, rescorer])))
    exp = Experiment("rag-rescore", dir=tmp_path)
    results = exp.run_evals(space, corpus, queries, qrels=qrels, num_shards=3, seed=1,
                            workers=1, progress=False, cache_dir=tmp_path / "cache")
    assert set(results["status"]) == {RunStatus.COMPLETED}
    stats = exp.stage_stats().groupby("stage")[["computed", "reused"]].sum()
    assert stats.loc["embeddings", "computed"] == 1  # retrieval and rescoring, one model
    assert stats.loc["query_embeddings", "computed"] == 1
    dense = results[results["retriever.kind"] == "dense"]
    plain = exp.rankings(dense[dense["reranker.kind"].isna()]["id"].iloc[0])
    rescored = exp.rankings(dense[dense["reranker.kind"] == "embedder"]["id"].iloc[0])
    assert plain[["query_id", "doc_id", "rank"]].equals(rescored[["query_id", "doc_id", "rank"]])
    assert (plain["score"] - rescored["score"]).abs().max() <= 1e-6

    def config(reranker: Any) -> RagConfig:
        return RagConfig(chunker=Chunker(strategy="recursive", size=128, overlap=16),
                         embedder=Embedder(model=minilm()),
                         retriever=Retriever(kind="bm25", k=5, candidates=5), reranker=reranker)

    inputs = RagInputs(eval_set(corpus, queries, qrels=qrels), tmp_path / "cache", "p")
    cache = StageCache(tmp_path / "cache", "p")
    bm25 = Pipeline(config(None), inputs, cache, {})
    pipeline = Pipeline(config(rescorer), inputs, cache, {})
    reference = EmbedderReranker(load_embedder(minilm()))
    checked = 0
    for i, query in enumerate(inputs.evalset.queries):
        passages = bm25.run(i).passages
        scores = reference.rerank(query.text, passages)
        gaps = sorted(scores)
        if min((b - a for a, b in itertools.pairwise(gaps)), default=1.0) < 1e-5:
            continue  # near-ties may order either way between two batchings
        order = sorted(range(len(passages)), key=lambda j: (-scores[j], j))
        assert pipeline.run(i).passages == [passages[j] for j in order], query.id
        checked += 1
    assert checked >= len(queries) // 2
