"""Per-query metrics of a RAG run: retrieval (trec_eval's definitions), answers, latency.

Pure functions with no state. Retrieval metrics take ONE query's document ranking (best
first) and its judgments (``{doc_id: grade}``); a document is relevant when its grade is
>= 1, which is trec_eval's (and ``pytrec_eval``'s) default ``relevance_level`` of 1. Every
value equals ``pytrec_eval`` and ``ranx`` on the same ranking (see tests/rag/test_metrics.py).
Proportions are clipped to [0, 1], so a value past a bound by rounding never escapes.

Answer metrics import ``rouge-score`` and ``sacrebleu`` when first called.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "METRIC_FAMILIES",
    "answer_metrics",
    "default_ks",
    "doc_ranking",
    "judged",
    "latency_summary",
    "metric_names",
    "normalize_answer",
    "retrieval_metrics",
]

#: Retrieval metric families, in the order ``metric_names`` lists them.
METRIC_FAMILIES: tuple[str, ...] = ("ndcg", "recall", "precision", "mrr", "map", "hit")
_DEFAULT_CUTOFFS = (1, 5, 10)


def _clip01(value: float) -> float:
    return min(1.0, max(0.0, float(value)))


def doc_ranking(
    chunk_hits: Sequence[tuple[str, float]],
    doc_of: Callable[[str], str] | Mapping[str, str],
    k: int | None = None,
) -> list[tuple[str, float]]:
    """Turn a chunk ranking into a document ranking.

    ``chunk_hits`` is ``[(chunk_id, score), ...]``, best first. Each document appears once,
    at the rank of its first (best) chunk and with that chunk's score; later chunks of the
    same document are dropped. ``doc_of`` maps a chunk id to its document id (a mapping or a
    function). The result is cut to ``k`` documents (all when ``k`` is None).
    """
    if k is not None and k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    lookup = doc_of.__getitem__ if isinstance(doc_of, Mapping) else doc_of
    seen: set[str] = set()
    ranking: list[tuple[str, float]] = []
    for chunk_id, score in chunk_hits:
        if k is not None and len(ranking) >= k:
            break
        doc_id = lookup(chunk_id)
        if doc_id not in seen:
            seen.add(doc_id)
            ranking.append((doc_id, float(score)))
    return ranking


def default_ks(retriever_k: int) -> tuple[int, ...]:
    """Cutoffs for a retriever returning ``retriever_k`` documents.

    The cutoffs of DESIGN section 8, (1, 5, 10), that are <= ``retriever_k``, plus
    ``retriever_k`` itself when it is not one of them, ascending: 1 -> (1,), 3 -> (1, 3),
    10 -> (1, 5, 10), 20 -> (1, 5, 10, 20).
    """
    if retriever_k < 1:
        raise ValueError(f"retriever_k must be >= 1, got {retriever_k}")
    return tuple(sorted({k for k in _DEFAULT_CUTOFFS if k <= retriever_k} | {retriever_k}))


def metric_names(ks: Sequence[int]) -> list[str]:
    """Names ``retrieval_metrics`` returns for cutoffs ``ks``, in a stable order.

    Family by family (``METRIC_FAMILIES``: ndcg, recall, precision, mrr, map, hit), each
    with every distinct cutoff ascending: ``["ndcg@1", "ndcg@5", ..., "hit@10"]``.
    """
    cutoffs = sorted(set(ks))
    return [f"{family}@{k}" for family in METRIC_FAMILIES for k in cutoffs]


def judged(qrels: Mapping[str, Mapping[str, int]]) -> set[str]:
    """Query ids with at least one relevant judgment (grade >= 1).

    trec_eval averages over these queries only; the caller leaves the others out and counts
    them as ``queries_unjudged``.
    """
    return {qid for qid, docs in qrels.items() if any(g >= 1 for g in docs.values())}


def retrieval_metrics(
    ranking: Sequence[str], judgments: Mapping[str, int], ks: Sequence[int]
) -> dict[str, float]:
    """Retrieval metrics of one query at each cutoff k, as trec_eval computes them.

    ``ranking`` is the query's document ids, best first (a repeated id counts at its first
    rank only); ``judgments`` its qrels ``{doc_id: grade}``, where grade >= 1 is relevant and
    unjudged documents count as grade 0. With R the number of relevant documents, rel_i = 1
    when the document at rank i is relevant, and g_i = max(grade, 0) its gain:

    - ``ndcg@k`` (trec_eval ``ndcg_cut_k``): DCG@k / IDCG@k with DCG@k = sum_{i<=k}
      g_i / log2(i + 1) (linear gain) and IDCG@k the DCG@k of all judged documents sorted by
      grade; 0 when IDCG@k = 0.
    - ``recall@k`` (``recall_k``): sum_{i<=k} rel_i / R.
    - ``precision@k`` (``P_k``): sum_{i<=k} rel_i / k, dividing by k even if fewer documents
      were retrieved.
    - ``mrr@k`` (``recip_rank`` of the ranking cut at k; ranx ``mrr@k``): 1 / rank of the
      first relevant document within the top k, else 0.
    - ``map@k`` (``map_cut_k``): sum_{i<=k} rel_i * precision@i / R (divides by ALL relevant
      documents, retrieved or not).
    - ``hit@k`` (ranx ``hit_rate@k``): 1 if any relevant document is in the top k, else 0.

    A query with R = 0 gets 0 for every metric (no division by zero); leave such queries out
    of averages (see ``judged``). Values are clipped to [0, 1].
    """
    if any(k < 1 for k in ks):
        raise ValueError(f"every cutoff must be >= 1, got {list(ks)}")
    docs = list(dict.fromkeys(ranking))  # first occurrence of each id, order kept
    gains = [max(judgments.get(doc, 0), 0) for doc in docs]
    relevant = [g >= 1 for g in gains]
    num_rel = sum(1 for g in judgments.values() if g >= 1)
    ideal = sorted((g for g in judgments.values() if g > 0), reverse=True)
    out: dict[str, float] = {}
    for k in sorted(set(ks)):
        top_gains, top_rel = gains[:k], relevant[:k]
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(top_gains) if g)
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal[:k]))
        hits = sum(top_rel)
        first = next((i for i, r in enumerate(top_rel) if r), None)
        ap, seen = 0.0, 0
        for i, rel in enumerate(top_rel):
            if rel:
                seen += 1
                ap += seen / (i + 1)
        out[f"ndcg@{k}"] = _clip01(dcg / idcg) if idcg > 0 else 0.0
        out[f"recall@{k}"] = _clip01(hits / num_rel) if num_rel else 0.0
        out[f"precision@{k}"] = _clip01(hits / k)
        out[f"mrr@{k}"] = 1.0 / (first + 1) if first is not None else 0.0
        out[f"map@{k}"] = _clip01(ap / num_rel) if num_rel else 0.0
        out[f"hit@{k}"] = 1.0 if hits else 0.0
    return {name: out[name] for name in metric_names(ks)}


# ---------------------------------------------------------------------------- answers

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's official answer normalisation.

    Lower-case, remove ASCII punctuation, remove the articles a/an/the, collapse whitespace
    (in that order, as in the SQuAD v1.1/v2.0 evaluation script).
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:  # SQuAD v2.0's rule: both empty is a match, one empty is not
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


@lru_cache(maxsize=1)
def _bleu() -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True)  # what sacrebleu.sentence_bleu uses


def answer_metrics(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """Answer-quality metrics of one prediction against its reference answers, in [0, 1].

    - ``exact_match``: 1 if the normalised prediction (``normalize_answer``, SQuAD's
      normalisation) equals some normalised reference, else 0.
    - ``f1``: SQuAD's token F1 between normalised token bags, maximum over references (when
      prediction or reference normalises to nothing: 1 if both do, else 0).
    - ``rougeL``: ``rouge-score``'s ROUGE-L F-measure with the library defaults
      (``use_stemmer=False``; its tokenizer lower-cases and keeps [a-z0-9] only), maximum
      over references.
    - ``bleu``: ``sacrebleu.sentence_bleu(prediction, references)`` (all references at once,
      exponential smoothing, effective order) divided by 100.

    With no references every metric is 0.
    """
    refs = [str(r) for r in references]
    if not refs:
        return {"exact_match": 0.0, "f1": 0.0, "rougeL": 0.0, "bleu": 0.0}
    norm = normalize_answer(prediction)
    scorer = _rouge_scorer()
    return {
        "exact_match": float(any(norm == normalize_answer(r) for r in refs)),
        "f1": _clip01(max(_token_f1(prediction, r) for r in refs)),
        "rougeL": _clip01(max(scorer.score(r, prediction)["rougeL"].fmeasure for r in refs)),
        "bleu": _clip01(_bleu().sentence_score(prediction, refs).score / 100.0),
    }


# ---------------------------------------------------------------------------- latency


def latency_summary(values_ms: Sequence[float] | npt.NDArray[Any]) -> dict[str, float]:
    """``mean``, ``p50`` and ``p95`` of per-query latencies (milliseconds).

    Percentiles are numpy's default (linear interpolation between order statistics).
    Refuses (ValueError) an empty sequence or NaN values.
    """
    arr = np.asarray(values_ms, dtype=float)
    if arr.size == 0:
        raise ValueError("latency_summary needs at least one value")
    if np.isnan(arr).any():
        raise ValueError("latency values contain NaN")
    p50, p95 = np.percentile(arr, [50, 95])
    return {"mean": float(arr.mean()), "p50": float(p50), "p95": float(p95)}
