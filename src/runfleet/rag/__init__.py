"""RAG configuration comparison: chunking, embedders, retrievers, rerankers and prompts
evaluated hyper-parallel with live confidence intervals (``Experiment.run_evals``).

Example:
    >>> from runfleet import Experiment, GridSearch, List                 # doctest: +SKIP
    >>> from runfleet.rag import RagConfig, Chunker, Embedder, Retriever, load_beir
    >>> corpus, queries, qrels = load_beir("path/to/beir-folder")          # doctest: +SKIP
    >>> space = GridSearch(RagConfig(chunker=Chunker(size=List([128, 256])),
    ...                              embedder=Embedder(model="all-MiniLM-L6-v2"),
    ...                              retriever=Retriever(kind=List(["dense", "bm25"]))))
    >>> Experiment("rag").run_evals(space, corpus, queries, qrels=qrels)    # doctest: +SKIP

Modules: ``configs`` (the stage configs), ``data`` (loading and checking eval data),
``chunking``, ``embedding``, ``retrieval``, ``rerank``, ``generation`` (the stages),
``stages`` (artefacts shared across runs), ``pipeline`` (one config's pipeline),
``metrics`` (trec_eval definitions, answer metrics), ``intervals`` (live confidence
intervals), ``inputs`` (what workers get).
"""

from runfleet.rag.configs import Chunker, Embedder, Generator, RagConfig, Reranker, Retriever
from runfleet.rag.data import load_beir

__all__ = ["Chunker", "Embedder", "Generator", "RagConfig", "Reranker", "Retriever",
           "load_beir"]
