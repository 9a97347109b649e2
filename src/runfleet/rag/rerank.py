"""Reordering retrieved passages with a slower, finer scorer.

A :class:`Reranker` scores ``(query, passage)`` pairs: :class:`CrossEncoderReranker` (a
sentence-transformers ``CrossEncoder``), :class:`EmbedderReranker` (cosine similarity under
a second embedder) or :class:`CallableReranker` (any ``(query, texts) -> scores``
function). :func:`rerank_hits` applies one to a query's retrieved hits;
:func:`rescore_hits` does the same with vectors already made (what an experiment does
for a second embedder, whose passage vectors are a shared stage).

Models load offline, as in :mod:`runfleet.rag.embedding`; sentence-transformers is
imported when a model is loaded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from runfleet.rag.embedding import ModelError, embed, hub_offline, load_embedder, resolve_model

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "CallableReranker",
    "CrossEncoderReranker",
    "EmbedderReranker",
    "Reranker",
    "RerankerError",
    "rerank_hits",
    "rescore_hits",
]


class RerankerError(ModelError, ValueError):
    """A reranker returned something other than one finite score per passage."""


@runtime_checkable
class Reranker(Protocol):
    """Scores passages for a query; higher is more relevant."""

    def rerank(self, query: str, texts: list[str]) -> list[float]:
        """One score per text, in the order of ``texts``."""
        ...


def _checked(scores: Any, count: int, who: str) -> list[float]:
    values = np.asarray(scores, dtype=np.float64).reshape(-1) if not isinstance(
        scores, (str, bytes)) else None
    if values is None or values.shape[0] != count:
        got = "a string" if values is None else f"{values.shape[0]} scores"
        raise RerankerError(f"{who} returned {got} for {count} passages")
    if not np.isfinite(values).all():
        raise RerankerError(f"{who} returned NaN or infinite scores")
    return [float(value) for value in values]


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` (a name in the local cache or a folder)
    scoring each ``(query, passage)`` pair jointly.

    The score is the model's output for its single label (after the activation the model
    was saved with); for a model with several labels, the last label's logit (the
    "relevant" class of binary rerankers).

    Args:
        model: a name or a folder.
        device: torch device.
        batch_size: pairs per forward pass.
        max_length: truncate pairs to this many tokens (None: the model's own limit).
    """

    def __init__(self, model: str | os.PathLike[str], *, device: str = "cpu",
                 batch_size: int = 32, max_length: int | None = None) -> None:
        location = resolve_model(model, what="reranker")
        local_only = hub_offline()
        from sentence_transformers import CrossEncoder

        try:
            self.model = CrossEncoder(location, device=device, max_length=max_length,
                                      local_files_only=local_only)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"reranker {os.fspath(model)!r} cannot be loaded: {exc}") from exc
        self.name = os.fspath(model)
        self.batch_size = batch_size

    def rerank(self, query: str, texts: list[str]) -> list[float]:
        """One cross-encoder score per text."""
        if not texts:
            return []
        raw = self.model.predict([(query, text) for text in texts],
                                 batch_size=self.batch_size, show_progress_bar=False,
                                 convert_to_numpy=True)
        scores = np.asarray(raw, dtype=np.float64)
        if scores.ndim == 2:
            scores = scores[:, -1]
        return _checked(scores, len(texts), f"cross-encoder {self.name!r}")


class EmbedderReranker:
    """Rescoring by cosine similarity under a second embedder (a ``SentenceTransformer``,
    or a name/folder loaded by :func:`~runfleet.rag.embedding.load_embedder`)."""

    def __init__(self, model: SentenceTransformer | str | os.PathLike[str], *,
                 device: str = "cpu", batch_size: int = 32) -> None:
        self.model: Any = load_embedder(model, device=device) \
            if isinstance(model, (str, os.PathLike)) else model
        self.batch_size = batch_size

    def rerank(self, query: str, texts: list[str]) -> list[float]:
        """Cosine of the query's and each text's normalised embeddings."""
        if not texts:
            return []
        vectors = embed(self.model, [query, *texts], batch_size=self.batch_size)
        return [float(score) for score in vectors[1:] @ vectors[0]]


class CallableReranker:
    """Any function ``(query, texts) -> scores`` as a reranker; the scores are checked
    (one finite number per text) so a faulty function fails with a clear error."""

    def __init__(self, fn: Callable[[str, list[str]], Sequence[float]]) -> None:
        if not callable(fn):
            raise TypeError(f"CallableReranker needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = getattr(fn, "__qualname__", None) or type(fn).__name__

    def rerank(self, query: str, texts: list[str]) -> list[float]:
        """The function's scores for ``texts``."""
        if not texts:
            return []
        return _checked(self.fn(query, list(texts)), len(texts), f"reranker {self.name!r}")


def rerank_hits(reranker: Reranker, query: str, hits: Sequence[tuple[int, float]],
                texts: Sequence[str], top_n: int | None = None) -> list[tuple[int, float]]:
    """Reorder a query's hits by a reranker's scores.

    Args:
        reranker: the scorer.
        query: the query text.
        hits: ``(row, score)`` pairs from an index.
        texts: the passages, indexed by row (all of them, not only the hits').
        top_n: keep this many after reranking (None: all).

    Returns:
        ``(row, reranker score)`` pairs, best first; ties keep the retrieval order.
    """
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int)
                              or top_n < 1):
        raise ValueError(f"top_n must be None or an integer >= 1, got {top_n!r}")
    rows = [row for row, _score in hits]
    scores = reranker.rerank(query, [texts[row] for row in rows])
    if len(scores) != len(rows) or not all(math.isfinite(s) for s in scores):
        raise RerankerError(f"{type(reranker).__name__} returned {len(scores)} scores for "
                            f"{len(rows)} passages, or non-finite ones")
    return _reordered(rows, scores, top_n)


def rescore_hits(hits: Sequence[tuple[int, float]], passage_vectors: np.ndarray,
                 query_vector: np.ndarray) -> list[tuple[int, float]]:
    """Reorder a query's hits by the inner product of unit vectors made by a second
    embedder (``passage_vectors`` indexed by row, as :func:`~runfleet.rag.embedding.embed`
    returns them): the scores of :class:`EmbedderReranker`, without embedding again.

    Returns:
        ``(row, cosine)`` pairs, best first; ties keep the retrieval order.
    """
    rows = [row for row, _score in hits]
    if not rows:
        return []
    scores = passage_vectors[rows] @ np.asarray(query_vector, dtype=passage_vectors.dtype)
    return _reordered(rows, [float(s) for s in scores], None)


def _reordered(rows: list[int], scores: Sequence[float], top_n: int | None
               ) -> list[tuple[int, float]]:
    order = sorted(range(len(rows)), key=lambda i: (-scores[i], i))
    kept = order if top_n is None else order[:top_n]
    return [(rows[i], float(scores[i])) for i in kept]
