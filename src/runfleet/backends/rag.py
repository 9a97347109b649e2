"""RAG evaluation, the recipe (``trainer="rag"``, run by ``Experiment.run_evals``).

An eval run is planned like a training run whose examples are the eval queries: the
engine shuffles them once with the experiment seed (the same order for every config) and
cuts them into ``num_shards`` shards; a "step" is one query. So stop, resume, clone,
retries after a lost worker, crash recovery and the progress table work as for
fine-tuning.

- ``open``: build the config's pipeline (:class:`runfleet.rag.pipeline.Pipeline`: its
  passages, embeddings and indexes come from the stage cache, shared with every run that
  needs the same ones) and restore the per-query results of the queries done before;
- ``train_step``: answer one query, score it (retrieval metrics against the judgments,
  answer metrics against the references), keep its result; the step's metrics are that
  query's (``query/ndcg@10`` ...);
- ``evaluate`` (at every shard's end): every metric's mean over the queries done so far,
  with its 95% interval for the whole eval set (``eval/<m>``, ``eval/<m>_ci_low|high``:
  t with finite-population correction, Wilson for 0/1 metrics) and an anytime-valid one
  (``eval/<m>_cs_low|high``), latency per stage, counts, index size and build time; plus
  the shard's rankings and per-query rows as tables (``eval/rankings``, ``eval/queries``);
- ``state``: the per-query results (small), so a resumed run's metrics equal an
  uninterrupted run's and no query is counted twice.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar

from runfleet.engine.backend import Backend, RunPlan
from runfleet.engine.chunking import StepPlan
from runfleet.rag.logged import (
    AGGREGATE,
    ANSWER_METRICS,
    ANSWERED,
    JUDGED,
    PER_QUERY,
    QUERIES,
    RANKINGS,
)

_STAGES = ("embed", "retrieve", "rerank", "generate")


class RagBackend(Backend):
    """Evaluates a :class:`~runfleet.rag.RagConfig` query by query."""

    task: ClassVar[str] = "eval"

    @classmethod
    def plan(cls, config: Any, num_examples: int, num_chunks: int, seed: int) -> RunPlan:
        """Check the config (:func:`runfleet.rag.configs.check_config`); one step per
        query, the queries shuffled with ``seed`` and cut into ``num_chunks`` shards."""
        from runfleet.rag.configs import check_config

        check_config(config)
        steps = StepPlan.build(num_examples=num_examples, batch_size=1, epochs=1.0,
                               max_steps=-1, num_chunks=num_chunks, seed=seed)
        return RunPlan(steps, None)

    @classmethod
    def check_warm_start(cls, parent: Mapping[str, Any], child: Mapping[str, Any]) -> None:
        """An eval run has no weights to start from: clones start cold (the stages they
        share with the parent are reused all the same)."""
        raise ValueError("an eval run has no weights to carry over: clone it cold (every "
                         "stage it shares with its parent is reused anyway)")

    @classmethod
    def summarize(cls, history: Any) -> dict[str, Any] | None:
        """Per metric its mean over the queries done and its interval (``<m>``,
        ``<m>_ci_low``, ``<m>_ci_high``), latencies and counts: the last ``eval/`` values."""
        row: dict[str, Any] = {}
        for column in history.columns:
            name = str(column)
            if not name.startswith(AGGREGATE):
                continue
            values = history[column].dropna()
            if values.empty or not isinstance(values.iloc[-1], numbers.Real) or isinstance(
                    values.iloc[-1], bool):
                continue
            short = name.removeprefix(AGGREGATE)
            if short.endswith(("_cs_low", "_cs_high")):
                continue
            row[short] = float(values.iloc[-1])
        return row

    # -- the recipe ----------------------------------------------------------------------------
    def open(self, state: dict[str, Any] | None) -> None:
        """Build (or take from the worker's caches) the config's pipeline; restore the
        results of the queries done before."""
        from runfleet.rag.pipeline import Pipeline
        from runfleet.rag.stages import StageCache

        inputs = self.resources.train_dataset
        cache = self.resources.cache
        stages = cache.get("rag.stages")
        if stages is None:
            stages = cache["rag.stages"] = StageCache(inputs.cache_dir, inputs.experiment,
                                                     share=getattr(inputs, "share", None))
        models = cache.setdefault("rag.models", {})
        self.inputs = inputs
        self.pipeline = Pipeline(self.spec.config, inputs, stages, models,
                                 self.resources.device, run=self.spec.run_id)
        self.results: dict[int, dict[str, Any]] = dict((state or {}).get("results", {}))
        self.reported: set[int] = set((state or {}).get("reported", ()))

    def train_step(self, step: int, indices: list[int]) -> dict[str, Any]:
        """Answer and score the query of this step; its metrics are the step's."""
        from runfleet.rag.metrics import answer_metrics, default_ks, retrieval_metrics

        values: dict[str, Any] = {}
        for index in indices:
            result = self.pipeline.run(index)
            evalset = self.inputs.evalset
            judgments = evalset.qrels.get(result.query_id) or {}
            metrics: dict[str, float] = {}
            if any(g > 0 for g in judgments.values()):
                metrics.update(retrieval_metrics([d for d, _ in result.ranking], judgments,
                                                 default_ks(self.pipeline.k)))
            references = (evalset.answers or {}).get(result.query_id)
            if references and result.answer is not None:
                metrics.update(answer_metrics(result.answer, references))
            self.results[index] = {
                "query_id": result.query_id, "metrics": metrics,
                "latency": result.latency_ms, "ranking": result.ranking,
                "passages": result.passages, "answer": result.answer,
                "tokens_in": result.tokens_in, "tokens_out": result.tokens_out,
                "cost": result.cost, "judged": bool(judgments)}
            values.update({f"{PER_QUERY}{k}": v for k, v in metrics.items()})
            values.update({f"{PER_QUERY}latency_ms/{k}": v for k, v in result.latency_ms.items()})
        return values

    def evaluate(self) -> dict[str, Any]:
        """Means and intervals over the queries done so far; the new queries' tables."""
        from runfleet.rag.intervals import anytime_interval, mean_interval
        from runfleet.rag.metrics import latency_summary
        from runfleet.tracking.media import Table

        evalset = self.inputs.evalset
        done = [self.results[i] for i in sorted(self.results)]
        judged_total = sum(1 for q in evalset.queries if any(
            g > 0 for g in (evalset.qrels.get(q.id) or {}).values()))
        answered_total = sum(1 for q in evalset.queries if (evalset.answers or {}).get(q.id))
        out: dict[str, Any] = {
            AGGREGATE + "queries_done": len(done),
            AGGREGATE + "queries_unjudged": sum(1 for r in done if not r["judged"]),
            JUDGED: judged_total, ANSWERED: answered_total,
            AGGREGATE + "index_build_s": self.pipeline.index_build_s,
            AGGREGATE + "index_bytes": self.pipeline.index_bytes}
        names = sorted({k for r in done for k in r["metrics"]})
        for name in names:
            values = [r["metrics"][name] for r in done if name in r["metrics"]]
            population = answered_total if name in ANSWER_METRICS else judged_total
            fixed = mean_interval(values, population, bounds=(0.0, 1.0))
            anytime = anytime_interval(values, population, bounds=(0.0, 1.0))
            key = AGGREGATE + name
            out.update({key: fixed.mean, f"{key}_ci_low": fixed.low,
                        f"{key}_ci_high": fixed.high, f"{key}_cs_low": anytime.low,
                        f"{key}_cs_high": anytime.high})
        for stage in _STAGES:
            times = [r["latency"][stage] for r in done if stage in r["latency"]]
            if times:
                out.update({f"{AGGREGATE}latency_ms/{stage}_{k}": v
                            for k, v in latency_summary(times).items()})
        tokens = [(r["tokens_in"], r["tokens_out"], r["cost"]) for r in done]
        for i, what in enumerate(("tokens_in", "tokens_out", "cost")):
            reported = [t[i] for t in tokens if t[i] is not None]
            if reported:
                out[f"{AGGREGATE}{what}"] = float(sum(reported))
        new = [i for i in sorted(self.results) if i not in self.reported]
        if new:
            out[RANKINGS] = Table(
                columns=["query_id", "doc_id", "rank", "score"],
                data=[[self.results[i]["query_id"], doc, rank, float(score)]
                      for i in new for rank, (doc, score) in
                      enumerate(self.results[i]["ranking"], start=1)])
            out[QUERIES] = Table(
                columns=["query_id", "query_index", *names, "passages", "answer"],
                data=[[self.results[i]["query_id"], i,
                       *[_cell(self.results[i]["metrics"].get(n)) for n in names],
                       " | ".join(p[:200] for p in self.results[i]["passages"][:3]),
                       self.results[i]["answer"]] for i in new])
            self.reported.update(new)
        return out

    def state(self) -> dict[str, Any]:
        """The per-query results so far (what the metrics are computed from)."""
        return {"results": dict(self.results), "reported": sorted(self.reported)}

    def close(self) -> None:
        """Drop the pipeline (models and stages stay in the worker's caches)."""
        self.__dict__.pop("pipeline", None)


def _cell(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
