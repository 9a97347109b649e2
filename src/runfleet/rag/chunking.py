"""Cutting documents into passages (chunks) for retrieval.

Three strategies, all from ``langchain-text-splitters`` (imported when first used):

- ``"recursive"``: ``RecursiveCharacterTextSplitter`` splits at paragraph, line, word and
  then character boundaries, and merges the pieces back up to ``size`` (with up to
  ``overlap`` shared between neighbours). In ``unit="tokens"`` it measures length with a
  Hugging Face tokenizer (``from_huggingface_tokenizer``).
- ``"fixed"``: windows of exactly ``size`` units that start every ``size - overlap``
  units: ``CharacterTextSplitter(separator="")`` for characters, the library's token
  window splitter (``split_text_on_tokens``) for tokens. Token windows are cut out of the
  original text by the tokenizer's character offsets, so a chunk is verbatim text (not a
  lower-cased re-decoding) whenever the tokenizer is a fast one.
- ``"document"``: one chunk per document.

With ``include_title`` a document's title is put before its text (``title\\n\\ntext``; a
blank title or text is left out) before splitting, so the first chunk carries it.
Documents whose text (and title) is blank give no chunk. Chunk ids are
``"<doc_id>#<i>"`` with ``i`` counting from 0 in each document. Output depends only on the
inputs: the same call gives the same chunks.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from runfleet.errors import RunfleetError
from runfleet.rag.data import Document

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["STRATEGIES", "UNITS", "Chunk", "ChunkingError", "chunk_corpus", "load_tokenizer"]

#: The chunking strategies :func:`chunk_corpus` knows.
STRATEGIES = ("recursive", "fixed", "document")
#: The units chunk sizes and overlaps are counted in.
UNITS = ("tokens", "chars")


class ChunkingError(RunfleetError, ValueError):
    """Chunking settings that cannot work (size, overlap, strategy, unit, tokenizer)."""


@dataclass(frozen=True)
class Chunk:
    """One passage: ``id`` (``"<doc_id>#<i>"``), the ``doc_id`` it comes from and its
    ``text``."""

    id: str
    doc_id: str
    text: str


@functools.lru_cache(maxsize=8)
def _load_tokenizer(model: str) -> PreTrainedTokenizerBase:
    from runfleet.rag.embedding import hub_offline, resolve_model

    location = resolve_model(model, what="tokenizer")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(location, local_files_only=hub_offline())


def load_tokenizer(tokenizer: Any) -> PreTrainedTokenizerBase:
    """A Hugging Face tokenizer from a name or a local folder (loaded once per process,
    never from the network unless ``HF_HUB_OFFLINE=0``), a tokenizer object (returned as
    it is), or a ``SentenceTransformer`` (its tokenizer).

    Raises:
        ChunkingError: ``tokenizer`` is None or of another type.
        runfleet.rag.embedding.ModelNotFoundError: a folder that does not exist.
    """
    if tokenizer is None:
        raise ChunkingError("unit='tokens' needs a tokenizer: a Hugging Face name or folder "
                            "(for example the embedder's model) or a tokenizer object")
    if isinstance(tokenizer, Path):
        tokenizer = str(tokenizer)
    if isinstance(tokenizer, str):
        return _load_tokenizer(tokenizer)
    transformers = sys.modules.get("transformers")
    if transformers is not None and isinstance(tokenizer, transformers.PreTrainedTokenizerBase):
        return tokenizer
    inner = getattr(tokenizer, "tokenizer", None)  # a SentenceTransformer's tokenizer
    if transformers is not None and isinstance(inner, transformers.PreTrainedTokenizerBase):
        return inner
    raise ChunkingError(f"tokenizer must be a name, a folder or a Hugging Face tokenizer, got "
                        f"{type(tokenizer).__name__}")


def _documents(docs: Sequence[Any]) -> list[Document]:
    out: list[Document] = []
    for index, doc in enumerate(docs):
        if isinstance(doc, Document):
            out.append(doc)
        elif isinstance(doc, Mapping):
            key = "_id" if "_id" in doc else "id"
            if key not in doc or not isinstance(doc.get("text"), str):
                raise ChunkingError(f"docs[{index}] needs '_id' (or 'id') and a string "
                                    f"'text'; keys: {sorted(doc)}")
            out.append(Document(id=str(doc[key]), text=doc["text"],
                                title=doc.get("title") or ""))
        else:
            raise ChunkingError(f"docs[{index}] must be a Document or a dict, got "
                                f"{type(doc).__name__}")
    return out


def _check(strategy: str, size: Any, overlap: Any, unit: str) -> None:
    if strategy not in STRATEGIES:
        raise ChunkingError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if unit not in UNITS:
        raise ChunkingError(f"unit must be one of {UNITS}, got {unit!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ChunkingError(f"size must be an integer > 0, got {size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < size:
        raise ChunkingError(f"overlap must be an integer with 0 <= overlap < size={size}, "
                            f"got {overlap!r}")


def _token_window_splitter(tokenizer: PreTrainedTokenizerBase, size: int, overlap: int
                           ) -> Callable[[str], list[str]]:
    """Fixed windows of ``size`` tokens by langchain's ``split_text_on_tokens``.

    With a fast tokenizer the "token ids" handed to the library are token positions, and a
    window decodes to the original text between its first token's start and its last
    token's end offsets. A slow tokenizer decodes the ids.
    """
    from langchain_text_splitters import Tokenizer, split_text_on_tokens

    if not getattr(tokenizer, "is_fast", False):
        def encode_ids(text: str) -> list[int]:
            return list(tokenizer.encode(text, add_special_tokens=False, verbose=False))

        def decode_ids(ids: list[int]) -> str:
            return str(tokenizer.decode(ids, skip_special_tokens=True))

        spec = Tokenizer(chunk_overlap=overlap, tokens_per_chunk=size, decode=decode_ids,
                         encode=encode_ids)
        return lambda text: split_text_on_tokens(text=text, tokenizer=spec)

    def split(text: str) -> list[str]:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                            verbose=False)
        offsets: list[tuple[int, int]] = list(encoded["offset_mapping"])

        def positions(_: str) -> list[int]:
            return list(range(len(offsets)))

        def cut(ids: list[int]) -> str:
            return text[offsets[ids[0]][0]:offsets[ids[-1]][1]]

        spec = Tokenizer(chunk_overlap=overlap, tokens_per_chunk=size, decode=cut,
                         encode=positions)
        return split_text_on_tokens(text=text, tokenizer=spec)

    return split


def _plain_backend(tokenizer: Any) -> Any:
    """A copy of a fast tokenizer's Rust backend without the padding and truncation a
    model's ``tokenizer.json`` may switch on (the wrapper overrides them per call; a bare
    ``encode`` would not), or None for a slow tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None) \
        if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        return None
    from tokenizers import Tokenizer as RustTokenizer

    plain = RustTokenizer.from_str(backend.to_str())
    plain.no_padding()
    plain.no_truncation()
    return plain


def _splitter(strategy: str, size: int, overlap: int, unit: str, tokenizer: Any
              ) -> Callable[[str], list[str]]:
    if strategy == "document":
        return lambda text: [text]
    if unit == "tokens":
        tok = load_tokenizer(tokenizer)
        if strategy == "fixed":
            return _token_window_splitter(tok, size, overlap)
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        backend = _plain_backend(tok)
        if backend is None:
            recursive = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
                tok, chunk_size=size, chunk_overlap=overlap)
            return recursive.split_text

        # What from_huggingface_tokenizer counts (len(tokenizer.tokenize(text))), by the
        # fast tokenizer's Rust backend and memoised: the splitter measures the same words
        # and pieces many times over, and this makes Cranfield's chunking ~4x faster.
        @functools.lru_cache(maxsize=1 << 16)
        def token_count(text: str) -> int:
            return len(backend.encode(text, add_special_tokens=False).ids)

        recursive = RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap,
                                                   length_function=token_count)
        return recursive.split_text
    if strategy == "fixed":
        from langchain_text_splitters import CharacterTextSplitter

        return CharacterTextSplitter(separator="", chunk_size=size, chunk_overlap=overlap,
                                     strip_whitespace=False).split_text
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap).split_text


def chunk_corpus(docs: Sequence[Any], *,
                 strategy: Literal["recursive", "fixed", "document"] = "recursive",
                 size: int = 256, overlap: int = 32,
                 unit: Literal["tokens", "chars"] = "tokens", tokenizer: Any = None,
                 include_title: bool = True) -> list[Chunk]:
    """Cut documents into chunks, in document order.

    Args:
        docs: :class:`~runfleet.rag.data.Document` s or dicts with ``_id`` (or ``id``),
            ``text`` and optional ``title``.
        strategy: ``"recursive"``, ``"fixed"`` or ``"document"`` (see the module doc).
        size: the most units a chunk holds (exactly that many for ``"fixed"``, except a
            document's last chunk).
        overlap: units shared by consecutive chunks of a document (exactly that many for
            ``"fixed"``, at most that many for ``"recursive"``); ``0 <= overlap < size``.
        unit: ``"tokens"`` (of ``tokenizer``) or ``"chars"``.
        tokenizer: for ``unit="tokens"``: a Hugging Face tokenizer name or folder (use the
            embedder's model, so chunk sizes match what it sees), a tokenizer object or a
            ``SentenceTransformer``. Unused for characters and ``"document"``.
        include_title: put each document's title before its text.

    Returns:
        the chunks; ids ``"<doc_id>#<i>"``.

    Raises:
        ChunkingError: an unknown strategy or unit, ``size <= 0``, an overlap outside
            ``[0, size)``, token units without a tokenizer, malformed documents.
    """
    _check(strategy, size, overlap, unit)
    documents = _documents(docs)
    split = _splitter(strategy, size, overlap, unit, tokenizer)
    chunks: list[Chunk] = []
    for doc in documents:
        parts = (doc.title, doc.text) if include_title else (doc.text,)
        text = "\n\n".join(part for part in parts if part.strip())
        if not text.strip():
            continue
        pieces = [piece for piece in split(text) if piece.strip()]
        chunks.extend(Chunk(id=f"{doc.id}#{i}", doc_id=doc.id, text=piece)
                      for i, piece in enumerate(pieces))
    return chunks
