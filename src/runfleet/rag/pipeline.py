"""One RAG pipeline, built from a concrete :class:`~runfleet.rag.configs.RagConfig`, answering
one query at a time: retrieve, rerank, generate.

Building it is where configs share work: the passages of a (corpus, chunker), the
embeddings of (passages, embedder), the indexes and the query embeddings are stage
artefacts (:mod:`runfleet.rag.stages`), computed once and reused by every run (and worker,
and later experiment) that needs the same ones. Models are loaded once per worker.

Latency per query is measured per stage: ``embed`` (the query's share of embedding all
queries at once, as a batch job would), ``retrieve`` (search and fusion), ``rerank`` (for
rescoring by a second embedder, also the query's share of embedding the queries with it)
and ``generate``.
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runfleet.rag.chunking import Chunk, chunk_corpus
from runfleet.rag.configs import RagConfig, Reranker
from runfleet.rag.inputs import RagInputs
from runfleet.rag.metrics import doc_ranking
from runfleet.rag.stages import StageCache, stage_key


@dataclass
class QueryResult:
    """What a pipeline made of one query."""

    query_id: str
    ranking: list[tuple[str, float]]  # documents, best first
    passages: list[str]  # the passages given to the generator (best first)
    answer: str | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost: float | None = None


class Pipeline:
    """A config's pipeline over an eval set, its stages taken from ``stages`` and its
    models from ``models`` (the worker's cache); ``run`` names who uses the stages (for
    the stage log)."""

    def __init__(self, config: RagConfig, inputs: RagInputs, stages: StageCache,
                 models: dict[Any, Any], device: str = "cpu", run: str = "") -> None:
        self.config, self.evalset = config, inputs.evalset
        self.models, self.device = models, device
        chunker, retriever = config.chunker, config.retriever
        tokenizer = chunker.tokenizer or (config.embedder.model if chunker.unit == "tokens"
                                          else None)
        chunks_key = stage_key("chunks", corpus=self.evalset.corpus_fingerprint(),
                               strategy=chunker.strategy, size=chunker.size,
                               overlap=chunker.overlap, unit=chunker.unit,
                               include_title=chunker.include_title, tokenizer=tokenizer)
        self.chunks: list[Chunk] = stages.get(
            "chunks", chunks_key, lambda: chunk_corpus(
                self.evalset.corpus, strategy=chunker.strategy, size=chunker.size,
                overlap=chunker.overlap, unit=chunker.unit, tokenizer=tokenizer,
                include_title=chunker.include_title), run=run, save=_save_chunks,
            load=_load_chunks)
        self.texts = [c.text for c in self.chunks]
        self.doc_of = {c.id: c.doc_id for c in self.chunks}
        self.k = retriever.k
        self.candidates = retriever.candidates or 5 * retriever.k
        self.indexes: dict[str, Any] = {}
        self.query_vectors: np.ndarray | None = None
        self.embed_ms_per_query = 0.0
        if retriever.kind in ("dense", "hybrid"):
            model = config.embedder.model
            emb_key = stage_key("embeddings", chunks=chunks_key, model=model)
            embeddings = stages.get(
                "embeddings", emb_key, lambda: self._embed(
                    self.texts, model, int(config.embedder.batch_size)), run=run,
                save=_save_array, load=_load_array)
            self.indexes["dense"] = stages.get(
                "dense_index", stage_key("dense_index", embeddings=emb_key,
                                         approximate=bool(retriever.approximate)),
                lambda: self._vector_index(embeddings, bool(retriever.approximate)), run=run,
                save=_save_pickle, load=_load_pickle)
            queries_key = stage_key("query_embeddings", queries=_queries_fingerprint(
                self.evalset), model=model)
            started = time.perf_counter()
            self.query_vectors = stages.get(
                "query_embeddings", queries_key,
                lambda: self._embed([q.text for q in self.evalset.queries], model,
                                    int(config.embedder.batch_size)), run=run,
                save=_save_array, load=_load_array)
            self.embed_ms_per_query = 1000 * (time.perf_counter() - started) / max(
                1, len(self.evalset.queries))
        if retriever.kind in ("bm25", "hybrid"):
            from runfleet.rag.retrieval import BM25Index

            self.indexes["bm25"] = stages.get(
                "bm25_index", stage_key("bm25_index", chunks=chunks_key),
                lambda: BM25Index(self.texts), run=run, save=_save_pickle, load=_load_pickle)
        self.rescore: tuple[np.ndarray, np.ndarray] | None = None
        self.rescore_ms_per_query = 0.0
        spec = config.reranker
        if isinstance(spec, Reranker) and spec.kind == "embedder":
            # A second embedder's vectors are stages too: the passages of a chunking are
            # embedded once per model (shared with retrieval when it is the same model),
            # then each query's candidates are rescored by inner product.
            model, batch = spec.model, int(spec.batch_size)
            passages = stages.get(
                "embeddings", stage_key("embeddings", chunks=chunks_key, model=model),
                lambda: self._embed(self.texts, model, batch), run=run, save=_save_array,
                load=_load_array)
            started = time.perf_counter()
            queries = stages.get(
                "query_embeddings", stage_key("query_embeddings", queries=_queries_fingerprint(
                    self.evalset), model=model),
                lambda: self._embed([q.text for q in self.evalset.queries], model, batch),
                run=run, save=_save_array, load=_load_array)
            self.rescore_ms_per_query = 1000 * (time.perf_counter() - started) / max(
                1, len(self.evalset.queries))
            self.rescore = (passages, queries)
            self.reranker = None
        else:
            self.reranker = self._reranker(spec)
        self.generator = self._generator()
        self.index_build_s = sum(float(getattr(i, "build_seconds", 0.0))
                                 for i in self.indexes.values())
        self.index_bytes = sum(int(getattr(i, "nbytes", 0)) for i in self.indexes.values())

    # -- building ---------------------------------------------------------------------------
    def _model(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        if key not in self.models:
            self.models[key] = load()
        return self.models[key]

    def _embed(self, texts: list[str], name: str, batch_size: int) -> np.ndarray:
        from runfleet.rag.embedding import embed, load_embedder

        model = self._model(("embedder", name, self.device),
                            lambda: load_embedder(name, self.device))
        return embed(model, texts, batch_size=batch_size)

    @staticmethod
    def _vector_index(embeddings: np.ndarray, approximate: bool) -> Any:
        from runfleet.rag.retrieval import DenseIndex, FaissIndex

        return FaissIndex(embeddings, approximate=True) if approximate else \
            DenseIndex(embeddings)

    def _reranker(self, spec: Any) -> Any:
        from runfleet.rag import rerank

        if spec is None:
            return None
        if not isinstance(spec, Reranker):
            return rerank.CallableReranker(spec)
        return self._model(("cross-encoder", spec.model, self.device),
                           lambda: rerank.CrossEncoderReranker(
                               spec.model, device=self.device, batch_size=int(spec.batch_size)))

    def _generator(self) -> Any:
        from runfleet.rag import generation

        spec = self.config.generator
        if spec is None:
            return None
        if spec.base_url:
            return generation.OpenAIGenerator(
                spec.base_url, model=spec.model, api_key_env=spec.api_key_env,
                timeout=spec.timeout, max_retries=spec.max_retries, price_in=spec.price_in,
                price_out=spec.price_out, max_new_tokens=spec.max_new_tokens,
                temperature=spec.temperature)
        return self._model(("generator", spec.model, spec.max_new_tokens, self.device),
                           lambda: generation.LocalGenerator(
                               spec.model, int(spec.max_new_tokens), device=self.device))

    # -- answering --------------------------------------------------------------------------
    def run(self, index: int) -> QueryResult:
        """Retrieve (and rerank, and answer) the ``index``-th query of the eval set."""
        from runfleet.rag.generation import format_prompt
        from runfleet.rag.rerank import rerank_hits, rescore_hits
        from runfleet.rag.retrieval import Queries, fuse_rrf, fuse_weighted

        query = self.evalset.queries[index]
        retriever = self.config.retriever
        latency: dict[str, float] = {}
        if self.query_vectors is not None:
            latency["embed"] = self.embed_ms_per_query
        started = time.perf_counter()
        found: dict[str, list[tuple[int, float]]] = {}
        if "dense" in self.indexes:
            vector = self.query_vectors[index:index + 1]  # type: ignore[index]
            found["dense"] = self.indexes["dense"].search(Queries(vectors=vector),
                                                          self.candidates)[0]
        if "bm25" in self.indexes:
            found["bm25"] = self.indexes["bm25"].search([query.text], self.candidates)[0]
        if retriever.kind == "hybrid":
            both = [found["dense"], found["bm25"]]
            hits = fuse_rrf(both, k=retriever.rrf_k) if retriever.fusion == "rrf" else \
                fuse_weighted(both, [retriever.dense_weight, 1 - retriever.dense_weight])
        else:
            hits = found[retriever.kind]
        latency["retrieve"] = 1000 * (time.perf_counter() - started)
        keep = self.k
        if self.reranker is not None or self.rescore is not None:
            started = time.perf_counter()
            top_n = getattr(self.config.reranker, "top_n", None)
            if self.rescore is not None:
                passage_vectors, query_vectors = self.rescore
                hits = rescore_hits(hits[:self.candidates], passage_vectors,
                                    query_vectors[index])
            else:
                assert self.reranker is not None
                hits = rerank_hits(self.reranker, query.text, hits[:self.candidates],
                                   self.texts)
            keep = int(top_n) if top_n else self.k
            latency["rerank"] = 1000 * (time.perf_counter() - started) + \
                self.rescore_ms_per_query
        ranking = doc_ranking([(self.chunks[row].id, score) for row, score in hits],
                              self.doc_of, k=keep)
        passages = [self.texts[row] for row, _ in hits[:keep]]
        result = QueryResult(query.id, ranking, passages, latency_ms=latency)
        if self.generator is not None:
            started = time.perf_counter()
            generated = self.generator.generate(
                format_prompt(self.config.prompt, query.text, passages))
            latency["generate"] = 1000 * (time.perf_counter() - started)
            result.answer = generated.text
            result.tokens_in, result.tokens_out = generated.tokens_in, generated.tokens_out
            result.cost = generated.cost
        return result


def _queries_fingerprint(evalset: Any) -> str:
    import hashlib

    digest = hashlib.sha256(b"runfleet.rag.queries.v1\n")
    for q in evalset.queries:
        for part in (q.id, q.text):
            raw = part.encode("utf-8", "surrogatepass")
            digest.update(len(raw).to_bytes(8, "little") + raw)
    return digest.hexdigest()


def _save_chunks(chunks: list[Chunk], folder: Path) -> None:
    with (folder / "chunks.jsonl").open("w", encoding="utf-8") as f:
        for c in chunks:
            f.write(json.dumps({"id": c.id, "doc_id": c.doc_id, "text": c.text}) + "\n")


def _load_chunks(folder: Path) -> list[Chunk]:
    with (folder / "chunks.jsonl").open(encoding="utf-8") as f:
        return [Chunk(**json.loads(line)) for line in f]


def _save_array(array: np.ndarray, folder: Path) -> None:
    np.save(folder / "array.npy", array, allow_pickle=False)


def _load_array(folder: Path) -> np.ndarray:
    return np.load(folder / "array.npy", allow_pickle=False)


def _save_pickle(value: Any, folder: Path) -> None:
    # the cache lives in the owner-only home: nobody else can plant a pickle there
    (folder / "value.pkl").write_bytes(pickle.dumps(value))


def _load_pickle(folder: Path) -> Any:
    return pickle.loads((folder / "value.pkl").read_bytes())
