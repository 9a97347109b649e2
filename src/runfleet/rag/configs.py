"""RAG pipeline configs: one config per stage, any value of which may be a ``List`` or a
``Range`` inside a search space (``GridSearch(RagConfig(...))`` works as for fine-tuning).

A concrete config flattens to dotted keys (``chunker.size``, ``retriever.kind``, ...) like a
fine-tuning config, and every stage records all its settings, defaults included, so two
runs can be compared key by key. :func:`check_config` validates a concrete config before any
work, naming the key.

Example:
    >>> from runfleet import GridSearch, List
    >>> space = GridSearch(RagConfig(
    ...     chunker=Chunker(size=List([128, 256]), overlap=32),
    ...     embedder=Embedder(model="/models/all-MiniLM-L6-v2"),
    ...     retriever=Retriever(kind=List(["dense", "bm25", "hybrid"]), k=10)))
    >>> len(space.expand())
    6
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from runfleet.fit.configs import ConfigError, OpenConfig

STRATEGIES = ("recursive", "fixed", "document")
UNITS = ("tokens", "chars")
RETRIEVERS = ("dense", "bm25", "hybrid")
FUSIONS = ("rrf", "weighted")
RERANKERS = ("cross-encoder", "embedder")


def _text_path(value: Any) -> Any:
    """A model folder given as a ``Path`` (also inside a search-space ``List``) as text, so
    configs compare, hash and store the same whichever way it was written."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    choices = getattr(value, "values", None)
    if type(value).__name__ == "List" and isinstance(choices, list):
        value.values = [_text_path(v) for v in choices]
    return value


class Chunker(OpenConfig):
    """How documents are cut into passages.

    Args:
        strategy: ``"recursive"`` (split at paragraphs, then sentences, then words, to at
            most ``size``), ``"fixed"`` (windows of ``size`` with ``overlap``) or
            ``"document"`` (one passage per document).
        size: passage length in ``unit`` s.
        overlap: how much consecutive passages share, in ``unit`` s.
        unit: ``"tokens"`` (of ``tokenizer``, default the embedder's) or ``"chars"``.
        include_title: put the document's title before its text.
        tokenizer: a tokenizer name or path for token units (None: the embedder's model).
    """

    def __init__(self, strategy: Any = "recursive", size: Any = 256, overlap: Any = 32,
                 unit: Any = "tokens", include_title: Any = True, tokenizer: Any = None
                 ) -> None:
        super().__init__(strategy=strategy, size=size, overlap=overlap, unit=unit,
                         include_title=include_title, tokenizer=_text_path(tokenizer))


class Embedder(OpenConfig):
    """A sentence-transformers model (a hub name or a local folder) that embeds passages and
    queries; ``batch_size`` passages at a time."""

    def __init__(self, model: Any = None, batch_size: Any = 64) -> None:
        super().__init__(model=_text_path(model), batch_size=batch_size)


class Retriever(OpenConfig):
    """How passages are found for a query.

    Args:
        kind: ``"dense"`` (exact inner product of normalised embeddings), ``"bm25"`` or
            ``"hybrid"`` (both, fused).
        k: documents returned (metrics are at 1, 5, 10 up to ``k``).
        fusion: for hybrid, ``"rrf"`` (reciprocal-rank fusion) or ``"weighted"`` (min-max
            normalised scores, ``dense_weight`` for the dense side).
        rrf_k: the RRF constant.
        dense_weight: weight of the dense scores in weighted fusion (BM25 gets the rest).
        candidates: passages each side retrieves before fusion and reranking (None: 5 x k).
        approximate: search with a faiss HNSW index instead of the exact one.
    """

    def __init__(self, kind: Any = "dense", k: Any = 10, fusion: Any = "rrf", rrf_k: Any = 60,
                 dense_weight: Any = 0.5, candidates: Any = None,
                 approximate: Any = False) -> None:
        super().__init__(kind=kind, k=k, fusion=fusion, rrf_k=rrf_k, dense_weight=dense_weight,
                         candidates=candidates, approximate=approximate)


class Reranker(OpenConfig):
    """Reorders the retrieved passages: a cross-encoder (``kind="cross-encoder"``, a
    sentence-transformers ``CrossEncoder`` by name or path) or a second embedder
    (``kind="embedder"``: cosine similarity with ``model``). ``top_n`` keeps that many
    documents after reranking (None: the retriever's ``k``). A plain callable
    ``(query, passages) -> scores`` may stand in the ``reranker`` slot instead."""

    def __init__(self, model: Any = None, kind: Any = "cross-encoder", top_n: Any = None,
                 batch_size: Any = 32) -> None:
        super().__init__(model=_text_path(model), kind=kind, top_n=top_n,
                         batch_size=batch_size)


class Generator(OpenConfig):
    """Writes the answer from the prompt.

    With ``base_url`` (an OpenAI-compatible endpoint: vLLM, OpenAI, ...), ``model`` is the
    endpoint's model name and the key is read from the environment variable named by
    ``api_key_env`` (never put a key in a config). Without it, ``model`` is a local
    transformers causal LM (a name or a folder). ``price_in``/``price_out`` (per 1,000
    tokens) turn reported usage into a cost.
    """

    def __init__(self, model: Any = None, base_url: Any = None,
                 api_key_env: Any = "OPENAI_API_KEY", max_new_tokens: Any = 64,
                 temperature: Any = 0.0, timeout: Any = 30.0, max_retries: Any = 4,
                 price_in: Any = None, price_out: Any = None) -> None:
        super().__init__(model=_text_path(model), base_url=base_url, api_key_env=api_key_env,
                         max_new_tokens=max_new_tokens, temperature=temperature,
                         timeout=timeout, max_retries=max_retries, price_in=price_in,
                         price_out=price_out)


class RagConfig(OpenConfig):
    """One RAG pipeline: ``chunker``, ``embedder``, ``retriever``, optional ``reranker``
    (a :class:`Reranker` or a callable), ``prompt`` (a template with ``{question}`` and
    ``{context}``; None: a default) and ``generator`` (None: retrieval only). Extra named
    values are kept in the run's config. Runs with ``trainer="rag"``
    (:meth:`runfleet.Experiment.run_evals`)."""

    default_trainer: ClassVar[str | None] = "rag"

    def __init__(self, chunker: Any = None, embedder: Any = None, retriever: Any = None,
                 reranker: Any = None, prompt: Any = None, generator: Any = None,
                 **extra: Any) -> None:
        super().__init__(chunker=chunker if chunker is not None else Chunker(),
                         embedder=embedder if embedder is not None else Embedder(),
                         retriever=retriever if retriever is not None else Retriever(),
                         reranker=reranker, prompt=prompt, generator=generator, **extra)


def _need(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_config(config: Any) -> None:
    """Raise :class:`ConfigError` naming the key of the first invalid setting of a concrete
    :class:`RagConfig` (types, choices, bounds, models that cannot be found, secrets put in
    the config)."""
    if not isinstance(config, RagConfig):
        raise ConfigError(f"trainer='rag' needs a RagConfig, got {type(config).__name__}")
    chunker, embedder, retriever = config.chunker, config.embedder, config.retriever
    for key, stage, cls in (("chunker", chunker, Chunker), ("embedder", embedder, Embedder),
                            ("retriever", retriever, Retriever)):
        if not isinstance(stage, cls):
            raise ConfigError(f"{key} must be a runfleet.rag.{cls.__name__}, got "
                              f"{type(stage).__name__}")
    _need(chunker.strategy in STRATEGIES, "chunker.strategy", f"one of {STRATEGIES}",
          chunker.strategy)
    _need(chunker.unit in UNITS, "chunker.unit", f"one of {UNITS}", chunker.unit)
    _need(_is_int(chunker.size) and chunker.size > 0, "chunker.size", "an integer > 0",
          chunker.size)
    _need(_is_int(chunker.overlap) and 0 <= chunker.overlap < chunker.size,
          "chunker.overlap", f"an integer in [0, size={chunker.size})", chunker.overlap)
    _need(retriever.kind in RETRIEVERS, "retriever.kind", f"one of {RETRIEVERS}",
          retriever.kind)
    _need(_is_int(retriever.k) and retriever.k >= 1, "retriever.k", "an integer >= 1",
          retriever.k)
    _need(retriever.fusion in FUSIONS, "retriever.fusion", f"one of {FUSIONS}",
          retriever.fusion)
    _need(isinstance(retriever.dense_weight, (int, float)) and 0 <= retriever.dense_weight <= 1,
          "retriever.dense_weight", "a number in [0, 1]", retriever.dense_weight)
    _need(retriever.candidates is None or (_is_int(retriever.candidates)
                                           and retriever.candidates >= retriever.k),
          "retriever.candidates", f"None or an integer >= k={retriever.k}",
          retriever.candidates)
    if retriever.kind != "bm25" or (chunker.unit == "tokens" and not chunker.tokenizer):
        _need(bool(embedder.model), "embedder.model", "a sentence-transformers model name or "
              "folder (dense and hybrid retrieval, and token chunking, need it)",
              embedder.model)
    _check_model("embedder.model", embedder.model)
    _check_model("chunker.tokenizer", chunker.tokenizer)
    reranker = config.reranker
    if isinstance(reranker, Reranker):
        _need(reranker.kind in RERANKERS, "reranker.kind", f"one of {RERANKERS}", reranker.kind)
        _need(bool(reranker.model), "reranker.model", "a model name or folder", reranker.model)
        _check_model("reranker.model", reranker.model)
        _need(reranker.top_n is None or (_is_int(reranker.top_n) and reranker.top_n >= 1),
              "reranker.top_n", "None or an integer >= 1", reranker.top_n)
    elif reranker is not None and not callable(reranker):
        raise ConfigError(f"reranker must be a runfleet.rag.Reranker, a callable "
                          f"(query, passages) -> scores, or None; got {type(reranker).__name__}")
    prompt = config.prompt
    if prompt is not None and (not isinstance(prompt, str) or "{question}" not in prompt):
        raise ConfigError("prompt must be a template holding {question} (and {context} for the "
                          f"passages), got {prompt!r}")
    generator = config.generator
    if generator is not None:
        if not isinstance(generator, Generator):
            raise ConfigError(f"generator must be a runfleet.rag.Generator or None, got "
                              f"{type(generator).__name__}")
        _need(bool(generator.model), "generator.model", "a model name (endpoint) or a local "
              "model", generator.model)
        if generator.base_url is None:
            _check_model("generator.model", generator.model)


def looks_like_path(model: str) -> bool:
    """Whether a model reference is a folder on this machine rather than a hub name."""
    return model.startswith(("/", "./", "../", "~")) or os.path.exists(
        os.path.expanduser(model))


def _check_model(key: str, model: Any) -> None:
    """A folder must exist; a hub name must be in the local cache when the hub is offline."""
    if model is None or callable(model):
        return
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{key} must be a model name or folder, got {model!r}")
    if looks_like_path(model):
        if not Path(os.path.expanduser(model)).is_dir():
            raise ConfigError(f"{key}: no model folder at {model}")
        return
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise ConfigError(f"{key}: {model!r} is neither a folder nor in the Hugging Face "
                              f"cache, and the hub is offline (HF_HUB_OFFLINE)")

