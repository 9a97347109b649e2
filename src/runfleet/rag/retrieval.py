"""Finding the passages of a query: indexes behind one interface, and rank fusion.

Every index implements :class:`Index`: ``search(queries, k)`` returns, for each query, up
to ``k`` ``(row, score)`` pairs, best first, where ``row`` indexes the list of passages
the index was built from. Ties in score are broken by the smaller row, so results are
deterministic (for :class:`FaissIndex`, among the rows faiss returns). Each index also
knows the seconds its build took (``build_seconds``) and its size in bytes (``nbytes``).

- :class:`DenseIndex`: exact inner-product search over L2-normalised embeddings (cosine),
  in numpy: one matrix product per batch of queries and ``argpartition`` for the top k.
- :class:`FaissIndex`: the same through faiss, ``IndexFlatIP`` (exact) or
  ``IndexHNSWFlat`` (approximate, ``approximate=True``).
- :class:`BM25Index`: BM25 through ``bm25s``.
- :class:`HybridIndex`: several indexes fused by :func:`fuse_rrf` or
  :func:`fuse_weighted`.

Queries are texts (``list[str]``), vectors (a 2-D array, one row per query) or both
(:class:`Queries`); dense indexes embed texts with their ``embedder`` when given no
vectors, BM25 needs texts.

faiss, bm25s and sentence-transformers are imported only by the classes that use them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from runfleet.rag.embedding import embed, normalize_rows

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "BM25Index",
    "DenseIndex",
    "FaissIndex",
    "Hits",
    "HybridIndex",
    "Index",
    "Queries",
    "QueryInput",
    "fuse_rrf",
    "fuse_weighted",
]

#: One query's results: ``(row, score)`` pairs, best first.
Hits = list[tuple[int, float]]


@dataclass(frozen=True)
class Queries:
    """A batch of queries as texts, vectors (one row per query), or both (same order)."""

    texts: Sequence[str] | None = None
    vectors: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.texts is None and self.vectors is None:
            raise ValueError("Queries needs texts, vectors or both")
        if self.vectors is not None:
            vectors = np.asarray(self.vectors)
            if vectors.ndim != 2:
                raise ValueError(f"query vectors must be a 2-D array (one row per query), "
                                 f"got shape {vectors.shape}")
            if self.texts is not None and len(self.texts) != vectors.shape[0]:
                raise ValueError(f"{len(self.texts)} query texts but {vectors.shape[0]} "
                                 f"query vectors")

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else int(
            np.asarray(self.vectors).shape[0])


#: What ``search`` accepts: texts, a 2-D array of query vectors, or :class:`Queries`.
QueryInput = Sequence[str] | np.ndarray | Queries


def _as_queries(queries: QueryInput) -> Queries:
    if isinstance(queries, Queries):
        return queries
    if isinstance(queries, np.ndarray):
        return Queries(vectors=queries)
    if isinstance(queries, str):
        raise TypeError("search takes a list of query texts, not a single string")
    texts = list(queries)
    if not all(isinstance(text, str) for text in texts):
        raise TypeError("query texts must be strings (give vectors as a 2-D numpy array)")
    return Queries(texts=texts)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


@runtime_checkable
class Index(Protocol):
    """A search index over a fixed list of passages (rows)."""

    #: Seconds the index took to build (embedding excluded).
    build_seconds: float
    #: Size of the index's data in bytes.
    nbytes: int

    def __len__(self) -> int:
        """The number of rows (passages) indexed."""
        ...

    def search(self, queries: QueryInput, k: int) -> list[Hits]:
        """For each query, up to ``k`` ``(row, score)`` pairs, best first."""
        ...


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top ``k`` of a score matrix: (ids, scores), best first, ties by id."""
    n = scores.shape[1]
    if k < n:
        ids = np.argpartition(scores, n - k, axis=1)[:, n - k:]
        top = np.take_along_axis(scores, ids, axis=1)
        # argpartition picks arbitrarily among rows tied with the k-th score: where more
        # rows reach that score than fit, take the smallest rows among the tied ones
        kth = top.min(axis=1)
        crowded = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
        if crowded.size:
            ids = ids.copy()
            for q in crowded:
                rows = np.flatnonzero(scores[q] >= kth[q])
                ids[q] = rows[np.lexsort((rows, -scores[q, rows]))[:k]]
            top = np.take_along_axis(scores, ids, axis=1)
    else:
        ids = np.broadcast_to(np.arange(n), scores.shape)
        top = np.take_along_axis(scores, ids, axis=1)
    order = np.lexsort((ids, -top), axis=1)
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(top, order, axis=1)


def _hits(ids: np.ndarray, scores: np.ndarray) -> list[Hits]:
    return [list(zip(row_ids, row_scores))
            for row_ids, row_scores in zip(ids.tolist(), scores.tolist())]


class _VectorIndex:
    """Shared by the dense indexes: normalised float32 rows and query vectors."""

    def __init__(self, embeddings: np.ndarray, embedder: SentenceTransformer | str | None,
                 batch_size: int) -> None:
        matrix = np.asarray(embeddings)
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            raise ValueError(f"embeddings must be a non-empty 2-D array (one row per "
                             f"passage), got shape {matrix.shape}")
        if not np.isfinite(matrix).all():
            raise ValueError("embeddings hold NaN or infinite values")
        self.embedder = embedder
        self.batch_size = batch_size
        self.dim = int(matrix.shape[1])

    def _vectors(self, queries: QueryInput) -> np.ndarray:
        batch = _as_queries(queries)
        if batch.vectors is not None:
            vectors = normalize_rows(batch.vectors)
        elif self.embedder is None:
            raise TypeError(f"{type(self).__name__} got query texts but has no embedder: "
                            f"give query vectors, or build it with embedder=...")
        else:
            assert batch.texts is not None
            vectors = embed(self.embedder, batch.texts)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"query vectors have {vectors.shape[1]} dimensions, the index "
                             f"{self.dim}")
        return vectors


class DenseIndex(_VectorIndex):
    """Exact nearest passages by inner product of L2-normalised embeddings (cosine), in
    numpy.

    Args:
        embeddings: ``(passages, dim)``; rows are normalised (again) on build.
        embedder: a ``SentenceTransformer`` (or name/folder) to embed query texts with;
            None when queries always come as vectors.
        batch_size: queries scored per matrix product, which bounds the ``batch x
            passages`` float32 score matrix in memory (None: up to 1,024 queries and
            256 MiB of scores).
    """

    def __init__(self, embeddings: np.ndarray, *,
                 embedder: SentenceTransformer | str | None = None,
                 batch_size: int | None = None) -> None:
        start = time.perf_counter()
        rows = int(np.asarray(embeddings).shape[0]) if np.ndim(embeddings) == 2 else 1
        if batch_size is None:
            batch_size = max(1, min(1024, (256 << 20) // (4 * max(rows, 1))))
        elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")
        super().__init__(embeddings, embedder, batch_size)
        self.matrix = normalize_rows(embeddings)
        self.build_seconds = time.perf_counter() - start
        self.nbytes = int(self.matrix.nbytes)

    def __len__(self) -> int:
        """The number of passages indexed."""
        return int(self.matrix.shape[0])

    def search_arrays(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw top ``k`` for query vectors: ``(rows, scores)`` arrays of shape
        ``(queries, min(k, passages))``, best first."""
        k = min(_check_k(k), len(self))
        queries = normalize_rows(vectors)
        ids = np.empty((queries.shape[0], k), dtype=np.int64)
        scores = np.empty((queries.shape[0], k), dtype=np.float32)
        for start in range(0, queries.shape[0], self.batch_size):
            stop = start + self.batch_size
            ids[start:stop], scores[start:stop] = _top_k(queries[start:stop] @ self.matrix.T,
                                                         k)
        return ids, scores

    def search(self, queries: QueryInput, k: int) -> list[Hits]:
        """For each query, the ``k`` passages of highest cosine, best first."""
        return _hits(*self.search_arrays(self._vectors(queries), k))


class FaissIndex(_VectorIndex):
    """Nearest passages by inner product through faiss: ``IndexFlatIP`` (exact) or, with
    ``approximate=True``, ``IndexHNSWFlat`` (graph search; fast on large corpora, may miss
    some true neighbours, and its build may differ between runs as faiss adds in parallel).

    Args:
        embeddings: ``(passages, dim)``; rows are normalised on build.
        approximate: use HNSW instead of the exact flat index.
        hnsw_m: HNSW neighbours per node.
        ef_construction: HNSW build-time candidate list size.
        ef_search: HNSW search-time candidate list size (raised to ``k`` when smaller).
        embedder: embeds query texts (see :class:`DenseIndex`).
    """

    def __init__(self, embeddings: np.ndarray, *, approximate: bool = False, hnsw_m: int = 32,
                 ef_construction: int = 200, ef_search: int = 128,
                 embedder: SentenceTransformer | str | None = None) -> None:
        import faiss

        start = time.perf_counter()
        super().__init__(embeddings, embedder, batch_size=0)
        matrix = normalize_rows(embeddings)
        self.approximate = approximate
        self.ef_search = ef_search
        index: Any
        if approximate:
            index = faiss.IndexHNSWFlat(self.dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
        else:
            index = faiss.IndexFlatIP(self.dim)
        index.add(matrix)
        self.index = index
        self.build_seconds = time.perf_counter() - start
        self.nbytes = int(faiss.serialize_index(index).nbytes)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable: the faiss index as its serialised bytes (so a built index, HNSW
        included, is shared as it is instead of being built again)."""
        import faiss

        state = dict(self.__dict__)
        state["index"] = faiss.serialize_index(self.index)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import faiss

        self.__dict__.update(state)
        self.index = faiss.deserialize_index(state["index"])

    def __len__(self) -> int:
        """The number of passages indexed."""
        return int(self.index.ntotal)

    def search(self, queries: QueryInput, k: int) -> list[Hits]:
        """For each query, up to ``k`` passages of highest inner product, best first."""
        k = min(_check_k(k), len(self))
        vectors = self._vectors(queries)
        if self.approximate:
            self.index.hnsw.efSearch = max(self.ef_search, k)
        scores, ids = self.index.search(vectors, k)
        out: list[Hits] = []
        for row_ids, row_scores in zip(ids.tolist(), scores.tolist()):
            hits = [(i, s) for i, s in zip(row_ids, row_scores) if i >= 0]
            hits.sort(key=lambda hit: (-hit[1], hit[0]))
            out.append(hits)
        return out


def _stemmer(stemmer: str | Callable[[str], str] | None) -> Callable[[str], str] | None:
    if stemmer is None or callable(stemmer):
        return stemmer
    if stemmer in ("porter", "snowball"):
        try:
            from nltk.stem import (  # type: ignore[import-untyped]
                PorterStemmer,
                SnowballStemmer,
            )
        except ImportError as exc:
            raise ValueError(f"stemmer={stemmer!r} needs the nltk package (its stemmers are "
                             f"pure Python and need no download)") from exc
        stem = PorterStemmer() if stemmer == "porter" else SnowballStemmer("english")
        stem_word: Callable[[str], str] = stem.stem
        return stem_word
    raise ValueError(f"stemmer must be None, 'porter', 'snowball' or a callable, got "
                     f"{stemmer!r}")


class BM25Index:
    """Lexical search with BM25 (``bm25s``).

    Tokenisation is bm25s's own: lower-cased, words of two or more word characters
    (``\\b\\w\\w+\\b``), English stopwords removed (bm25s's bundled list). No stemming by
    default: bm25s bundles no stemmer (it suggests PyStemmer, a compiled extra), and a
    default that depends on what happens to be installed would change results between
    machines. ``stemmer="porter"`` or ``"snowball"`` uses nltk's pure-Python English
    stemmers (offline, no data download), or pass any ``word -> stem`` callable.

    Passages sharing no term with a query score 0 and are left out of its results, so a
    query may get fewer than ``k`` hits (none at all when no term matches).

    Args:
        texts: the passages.
        stopwords: ``"english"``, a list of words, or None for none.
        stemmer: None, ``"porter"``, ``"snowball"`` or a callable.
        k1, b: BM25 parameters.
        method: bm25s's variant (``"lucene"``, ``"robertson"``, ``"atire"``, ``"bm25l"``,
            ``"bm25+"``).
    """

    def __init__(self, texts: Sequence[str], *, stopwords: str | Sequence[str] | None = "english",
                 stemmer: str | Callable[[str], str] | None = None, k1: float = 1.5,
                 b: float = 0.75, method: str = "lucene") -> None:
        import bm25s  # type: ignore[import-untyped]
        from bm25s.tokenization import Tokenizer  # type: ignore[import-untyped]

        passages = list(texts)
        if not passages:
            raise ValueError("BM25Index needs at least one passage")
        start = time.perf_counter()
        self.tokenizer = Tokenizer(lower=True, stopwords=stopwords if stopwords is not None
                                   else [], stemmer=_stemmer(stemmer))
        tokens = self.tokenizer.tokenize(passages, update_vocab=True, return_as="tuple",
                                         show_progress=False)
        self.bm25 = bm25s.BM25(k1=k1, b=b, method=method)
        self.bm25.index(tokens, show_progress=False)
        self._count = len(passages)
        self.build_seconds = time.perf_counter() - start
        arrays = sum(int(np.asarray(self.bm25.scores[key]).nbytes)
                     for key in ("data", "indices", "indptr"))
        vocab = sum(len(word.encode("utf-8")) + 8
                    for word in self.tokenizer.get_vocab_dict())
        #: the sparse score matrix's arrays plus the vocabulary (its words and 8-byte ids)
        self.nbytes = arrays + vocab

    def __len__(self) -> int:
        """The number of passages indexed."""
        return self._count

    def search(self, queries: QueryInput, k: int) -> list[Hits]:
        """For each query text, up to ``k`` passages of highest BM25 score (> 0), best
        first."""
        k = min(_check_k(k), len(self))
        batch = _as_queries(queries)
        if batch.texts is None:
            raise TypeError("BM25Index searches query texts, not vectors")
        query_ids = self.tokenizer.tokenize(list(batch.texts), update_vocab=False,
                                            return_as="ids", show_progress=False,
                                            allow_empty=False)
        out: list[Hits] = []
        for ids in query_ids:
            if not ids:
                out.append([])
                continue
            scores = np.asarray(self.bm25.get_scores_from_ids(ids), dtype=np.float32)
            top_ids, top_scores = _top_k(scores[None, :], k)
            out.append([(i, s) for i, s in zip(top_ids[0].tolist(), top_scores[0].tolist())
                        if s > 0])
        return out


class HybridIndex:
    """Several indexes searched with the same queries and their rankings fused.

    Args:
        indexes: the indexes (for example a :class:`DenseIndex` and a :class:`BM25Index`
            over the same passages, in the same order).
        fusion: ``"rrf"`` (:func:`fuse_rrf`) or ``"weighted"`` (:func:`fuse_weighted`).
        weights: one per index, for weighted fusion (default equal).
        rrf_k: the RRF constant.
        candidates: hits each index returns before fusion (None: ``5 * k``).
    """

    def __init__(self, indexes: Sequence[Index], *, fusion: Literal["rrf", "weighted"] = "rrf",
                 weights: Sequence[float] | None = None, rrf_k: float = 60,
                 candidates: int | None = None) -> None:
        if not indexes:
            raise ValueError("HybridIndex needs at least one index")
        sizes = {len(index) for index in indexes}
        if len(sizes) != 1:
            raise ValueError(f"the indexes cover different numbers of passages: {sorted(sizes)}")
        if fusion not in ("rrf", "weighted"):
            raise ValueError(f"fusion must be 'rrf' or 'weighted', got {fusion!r}")
        self.indexes = list(indexes)
        self.fusion = fusion
        self.weights = list(weights) if weights is not None else [1.0] * len(self.indexes)
        if fusion == "weighted":
            _check_weights(self.weights, len(self.indexes))
        self.rrf_k = rrf_k
        self.candidates = candidates
        self.build_seconds = sum(index.build_seconds for index in self.indexes)
        self.nbytes = sum(index.nbytes for index in self.indexes)

    def __len__(self) -> int:
        """The number of passages indexed."""
        return len(self.indexes[0])

    def search(self, queries: QueryInput, k: int) -> list[Hits]:
        """For each query, the ``k`` best passages of the fused rankings."""
        k = _check_k(k)
        batch = _as_queries(queries)
        depth = max(k, self.candidates if self.candidates is not None else 5 * k)
        per_index = [index.search(batch, depth) for index in self.indexes]
        out: list[Hits] = []
        for rankings in zip(*per_index):
            fused = (fuse_rrf(rankings, k=self.rrf_k) if self.fusion == "rrf"
                     else fuse_weighted(rankings, self.weights))
            out.append(fused[:k])
        return out


def _sorted(scores: dict[int, float]) -> Hits:
    return sorted(scores.items(), key=lambda hit: (-hit[1], hit[0]))


def fuse_rrf(rankings: Sequence[Sequence[tuple[int, float]]], k: float = 60) -> Hits:
    """Reciprocal-rank fusion of one query's rankings (Cormack et al., 2009).

    A passage scores ``sum over rankings of 1 / (k + rank)``, its rank counting from 1 in
    each ranking that holds it (the given scores are ignored; only order counts).

    Returns:
        every passage of any ranking, best first (ties by row).
    """
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k < 0:
        raise ValueError(f"the RRF constant k must be a number >= 0, got {k!r}")
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (row, _score) in enumerate(ranking, start=1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (k + rank)
    return _sorted(fused)


def _check_weights(weights: Sequence[float], count: int) -> None:
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weights for {count} rankings")
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weights must be finite numbers >= 0, got {list(weights)}")


def fuse_weighted(rankings: Sequence[Sequence[tuple[int, float]]],
                  weights: Sequence[float]) -> Hits:
    """Weighted-score fusion of one query's rankings.

    Each ranking's scores are min-max normalised to [0, 1] (a ranking whose scores are all
    equal gives each of its passages 1), multiplied by its weight and summed per passage; a
    passage missing from a ranking gets 0 from it.

    Returns:
        every passage of any ranking, best first (ties by row).
    """
    _check_weights(weights, len(rankings))
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        if not ranking:
            continue
        values = [float(score) for _row, score in ranking]
        if not all(math.isfinite(value) for value in values):
            raise ValueError("fuse_weighted got a NaN or infinite score")
        low, high = min(values), max(values)
        span = high - low
        for (row, _score), value in zip(ranking, values):
            norm = (value - low) / span if span > 0 else 1.0
            fused[row] = fused.get(row, 0.0) + weight * norm
    return _sorted(fused)
