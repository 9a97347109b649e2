"""The eval side of an experiment (:meth:`runfleet.Experiment.run_evals`): rankings,
per-query tables, paired comparisons and stage statistics, read back from the tracked runs
and the stage log, so they work from the controller's process, another one, or later.

An eval run logs, per query (in the experiment's shuffled order), ``query/<metric>`` at the
query's position; after each shard ``eval/<metric>`` with its intervals, and two tables:
``eval/rankings`` (``query_id, doc_id, rank, score``) and ``eval/queries`` (the shard's
per-query metrics, passages and answers).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from runfleet.rag.logged import ANSWER_METRICS, ANSWERED, JUDGED, PER_QUERY, QUERIES, RANKINGS


def _tables(home_root: Path, project: str, run_id: str, key: str) -> pd.DataFrame:
    import pandas as pd

    from runfleet.api import Api

    with Api(home_root) as api:
        items = sorted(api.run(project, run_id).media(key), key=lambda m: m["step"])
        frames = [m["value"] for m in items if m["value"] is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def rankings(home_root: Path, project: str, run_id: str) -> pd.DataFrame:
    """``query_id, doc_id, rank, score`` of every query the run has done."""
    frame = _tables(home_root, project, run_id, RANKINGS)
    if frame.empty:
        import pandas as pd

        return pd.DataFrame(columns=["query_id", "doc_id", "rank", "score"])
    return frame.drop_duplicates(["query_id", "rank"], keep="last").reset_index(drop=True)


def per_query(home_root: Path, project: str, run_id: str) -> pd.DataFrame:
    """The run's per-query rows (metrics, passages, answer), one per query done."""
    frame = _tables(home_root, project, run_id, QUERIES)
    if frame.empty or "query_id" not in frame:
        return frame
    return frame.drop_duplicates("query_id", keep="last").reset_index(drop=True)


def compare(home_root: Path, project: str, run_a: str, run_b: str, metric: str
            ) -> dict[str, Any]:
    """Mean of per-query differences ``a - b`` of ``metric`` over the queries both runs
    have done, with its 95% interval for the whole eval set (see
    :func:`runfleet.rag.intervals.compare`)."""
    import numpy as np

    from runfleet.api import Api
    from runfleet.rag.intervals import compare as paired

    key = PER_QUERY + metric
    with Api(home_root) as api:
        a, b = api.run(project, run_a), api.run(project, run_b)
        series = [run.series(key) for run in (a, b)]
        population = [run.summary.get(ANSWERED if metric in ANSWER_METRICS else JUDGED)
                      for run in (a, b)]
    if not len(series[0].steps) or not len(series[1].steps):
        raise ValueError(f"no per-query {metric!r} values in both runs yet (key {key!r}); "
                         f"metrics: ndcg@10, recall@10, ... as logged under 'query/'")
    common, ia, ib = np.intersect1d(series[0].steps, series[1].steps, return_indices=True)
    total = int(max(p for p in population if p is not None) if any(population) else len(common))
    result = paired(np.asarray(series[0].values, float)[ia].tolist(),
                    np.asarray(series[1].values, float)[ib].tolist(), total)
    return {"mean": result.mean, "ci_low": result.low, "ci_high": result.high,
            "n": len(common), "population": total}



def stage_stats(cache_root: Path, experiment: str) -> pd.DataFrame:
    """``stage, key, computed, reused, seconds`` per stage artefact the experiment used
    (seconds: the time spent computing it)."""
    import pandas as pd

    from runfleet.rag.stages import read_stats

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for event in read_stats(cache_root, experiment):
        row = rows.setdefault((event["stage"], event["key"]), {
            "stage": event["stage"], "key": event["key"], "computed": 0, "reused": 0,
            "seconds": 0.0})
        if event["event"] == "computed":
            row["computed"] += 1
            row["seconds"] += float(event["seconds"])
        else:
            row["reused"] += 1
    return pd.DataFrame(list(rows.values()),
                        columns=["stage", "key", "computed", "reused", "seconds"])
