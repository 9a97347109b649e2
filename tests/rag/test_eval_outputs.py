"""What an eval run records beyond retrieval metrics, read back through the engine: answer
metrics, tokens and cost from an OpenAI-compatible endpoint, index size and build time,
unjudged queries counted; the TREC run file export; a clone with another embedder reuses
the passages it shares with its parent."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytrec_eval
from ranx import Run  # type: ignore[import-untyped]

from runfleet import Experiment, GridSearch, List
from runfleet.rag import Chunker, Embedder, Generator, RagConfig, Retriever
from runfleet.rag.metrics import answer_metrics
from runfleet.store.base import RunStatus
from tests.conftest import subprocess_env
from tests.rag.helpers import cranfield_slice, minilm
from tests.rag.test_generation import KEY, KEY_ENV, FakeEndpoint


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEndpoint]:
    monkeypatch.setenv(KEY_ENV, KEY)  # the workers inherit it; the config names it only
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = FakeEndpoint()
    yield server
    server.close()


def test_answers_tokens_cost_index_and_unjudged_queries_are_logged(
        endpoint: FakeEndpoint, tmp_path: Path) -> None:
    corpus, queries, qrels = cranfield_slice(documents=60, queries=10)
    queries = [*queries, {"_id": "no-judgments", "text": "what is a boundary layer"}]
    answers = {q["_id"]: (["Mach 2."] if i % 2 == 0 else ["about mach two point five"])
               for i, q in enumerate(queries)}
    space = GridSearch(RagConfig(
        chunker=Chunker(unit="chars", size=400, overlap=0),
        retriever=Retriever(kind=List(["bm25", "dense"]), k=5),
        embedder=Embedder(model=minilm()),
        generator=Generator(model="fake-model", base_url=endpoint.base_url,
                            api_key_env=KEY_ENV, price_in=1.0, price_out=2.0)))
    exp = Experiment("rag-answers", dir=tmp_path)
    results = exp.run_evals(space, corpus, queries, qrels=qrels, answers=answers,
                            num_shards=2, seed=0, workers=1, progress=False)
    assert set(results["status"]) == {RunStatus.COMPLETED}
    expected = [answer_metrics("Mach 2.", answers[q["_id"]]) for q in queries]
    for _, row in results.iterrows():
        assert row["queries_done"] == len(queries) and row["queries_unjudged"] == 1
        for metric in ("exact_match", "f1", "rougeL", "bleu"):
            mean = sum(e[metric] for e in expected) / len(expected)
            assert row[metric] == pytest.approx(mean, abs=1e-12), metric
            assert row[f"{metric}_ci_low"] == row[f"{metric}_ci_high"] == row[metric]
        assert row["tokens_in"] == 12 * len(queries) and row["tokens_out"] == 3 * len(queries)
        assert row["cost"] == pytest.approx(len(queries) * (12 * 1.0 + 3 * 2.0) / 1000)
        assert row["index_bytes"] > 0 and row["index_build_s"] > 0
        assert row["latency_ms/generate_p50"] > 0
    assert len(endpoint.requests) == 2 * len(queries)  # one call per query per config
    assert all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in endpoint.requests)
    stored = exp.runs()
    assert not any(KEY in str(value) for value in stored.to_dict(orient="list").values())

    # The TREC run file: what pytrec_eval and ranx read, equal to the logged rankings.
    out = tmp_path / "runs.trec"
    cli = subprocess.run([sys.executable, "-m", "runfleet", "export", "--project",
                          "rag-answers", "--format", "trec", "-o", str(out), "--dir",
                          str(tmp_path)], capture_output=True, text=True, env=subprocess_env())
    assert cli.returncode == 0, cli.stderr
    lines = out.read_text().splitlines()
    by_tag: dict[str, list[list[str]]] = {}
    for line in lines:
        parts = line.split()
        assert len(parts) == 6 and parts[1] == "Q0"
        by_tag.setdefault(parts[5], []).append(parts)
    assert set(by_tag) == set(results["name"])
    for _, row in results.iterrows():
        ranked = exp.rankings(row["id"])
        logged = [[str(q), "Q0", str(d), str(r), repr(float(s)), row["name"]]
                  for q, d, r, s in ranked[["query_id", "doc_id", "rank", "score"]]
                  .itertuples(index=False)]
        assert sorted(by_tag[row["name"]]) == sorted(logged)
    # one run's lines are a run file of their own for pytrec_eval and ranx
    first = by_tag[results["name"].iloc[0]]
    single = tmp_path / "one.trec"
    single.write_text("".join(" ".join(p) + "\n" for p in first))
    with single.open() as fh:
        parsed = pytrec_eval.parse_run(fh)
    assert {q: len(d) for q, d in parsed.items()} == {
        q: sum(1 for p in first if p[0] == q) for q in {p[0] for p in first}}
    assert Run.from_file(str(single), kind="trec").size == len(parsed)


def test_a_clone_with_another_embedder_reuses_the_passages(tmp_path: Path) -> None:
    """Passages cut by characters do not depend on the embedder: a clone that changes only
    the embedder (here MiniLM through another folder name) chunks nothing again and embeds
    once more; its metrics equal the parent's (the same weights)."""
    corpus, queries, qrels = cranfield_slice(documents=60, queries=10)
    other = tmp_path / "minilm-copy"
    os.symlink(minilm(), other)
    exp = Experiment("rag-clone-emb", dir=tmp_path)
    space = GridSearch(RagConfig(chunker=Chunker(unit="chars", size=400, overlap=40),
                                 embedder=Embedder(model=minilm()),
                                 retriever=Retriever(kind="dense", k=5)))
    exp.run_evals(space, corpus, queries, qrels=qrels, num_shards=2, seed=0, workers=1,
                  progress=False, cache_dir=tmp_path / "cache")
    (parent,) = exp.runs()["id"].tolist()
    pending = exp.clone(parent, changes={"embedder.model": str(other)}, wait=False)
    assert getattr(pending, "status", None) == "pending"
    exp.resume_all(workers=1, progress=False)
    results = exp.results()
    assert list(results["status"]) == [RunStatus.COMPLETED] * 2
    child = results[results["id"] != parent].iloc[0]
    assert child["embedder.model"] == str(other)
    stats = exp.stage_stats().groupby("stage")[["computed", "reused"]].sum()
    counts = {(str(stage), what): int(row[what]) for stage, row in stats.iterrows()
              for what in ("computed", "reused")}
    assert counts[("chunks", "computed")] == 1 and counts[("chunks", "reused")] >= 1
    assert counts[("embeddings", "computed")] == 2  # one per embedder
    parent_row = results[results["id"] == parent].iloc[0]
    for metric in ("ndcg@5", "recall@5", "mrr@5"):
        assert child[metric] == pytest.approx(parent_row[metric], abs=1e-9)
