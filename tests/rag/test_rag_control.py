"""Control of eval runs, exactly as for fine-tuning: stop (mid-shard), resume, clone (any
key, chunker included: shared stages reused, new ones computed), delete, a killed worker
and a killed controller; a resumed run's metrics equal an uninterrupted run's; a policy
stops a config whose anytime interval lies wholly below the best's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import runfleet
from runfleet import Experiment, GridSearch, List
from runfleet.engine.ops import wait_op
from runfleet.engine.stopping import IntervalStopping
from runfleet.home import Home
from runfleet.rag import Chunker, RagConfig, Retriever
from runfleet.store.base import OpStatus, RunStatus
from tests.conftest import ROOT, subprocess_env
from tests.rag.helpers import (
    GateReranker,
    KillingReranker,
    cranfield_slice,
    keep_order,
    reverse_order,
)

GUARD_S = 600.0  # only against a hang: every wait ends on an event
METRICS = ["ndcg@10", "recall@10", "mrr@10", "map@10"]


def wait_for(predicate: Any, what: str, alive: Any = None) -> None:
    deadline = time.monotonic() + GUARD_S
    while not predicate():
        assert alive is None or alive(), f"the experiment ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {GUARD_S:g} s"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def data() -> tuple[Any, Any, Any]:
    return cranfield_slice(documents=120, queries=24)


def config(reranker: Any, size: int = 300) -> RagConfig:
    return RagConfig(chunker=Chunker(unit="chars", size=size, overlap=30),
                     retriever=Retriever(kind="bm25", k=10), reranker=reranker)


def steps(home: Path, project: str, run_id: str) -> list[int]:
    with runfleet.Api(home) as api:
        return api.run(project, run_id).series("query/ndcg@10").steps.tolist()


def metrics(results: pd.DataFrame, name: str) -> list[float]:
    row: dict[Any, Any] = dict(results.set_index("name").loc[name].to_dict())
    return [float(row[m]) for m in METRICS]


def test_stop_mid_shard_resume_clone_and_delete(data: tuple[Any, Any, Any], tmp_path: Path
                                                ) -> None:
    corpus, queries, qrels = data
    gate = tmp_path / "gate"
    space = GridSearch(RagConfig(chunker=Chunker(unit="chars", size=300, overlap=30),
                                 retriever=Retriever(kind="bm25", k=10),
                                 reranker=List([GateReranker(str(gate), after=3), keep_order])))
    exp = Experiment("rag-ctl", dir=tmp_path)
    finished: list[pd.DataFrame] = []
    thread = threading.Thread(target=lambda: finished.append(exp.run_evals(
        space, corpus, queries, qrels=qrels, num_shards=2, seed=1, workers=1,
        progress=False)), daemon=True)
    thread.start()
    wait_for(lambda: exp.controller_alive() and len(exp.runs()) == 2, "runs", thread.is_alive)
    gated, plain = exp.runs()["id"].tolist()
    wait_for(lambda: len(steps(tmp_path, "rag-ctl", gated)) >= 3, "3 queries", thread.is_alive)

    control = Experiment.attach("rag-ctl", dir=tmp_path)
    home = Home.resolve(tmp_path)
    stop = control.stop(gated, wait=False)  # lands after the query on its way
    # the CLI is a front door to eval runs too: a clone with another chunking
    cli = subprocess.run([sys.executable, "-m", "runfleet", "clone", plain, "--set",
                          "chunker.size=200", "--name", "smaller", "--dir", str(tmp_path)],
                         capture_output=True, text=True, env=subprocess_env())
    assert cli.returncode == 0 and "new run" in cli.stdout, cli.stderr
    gate.touch()
    assert wait_op(home, stop.id, while_alive=thread.is_alive).status == OpStatus.APPLIED
    with runfleet.Api(tmp_path) as api:
        assert api.run("rag-ctl", gated).status == RunStatus.STOPPED
    done_before = steps(tmp_path, "rag-ctl", gated)
    assert 4 <= len(done_before) < len(queries)  # stopped inside its first shard
    assert wait_op(home, control.resume(gated, wait=False).id,
                   while_alive=thread.is_alive).status == OpStatus.APPLIED
    thread.join(GUARD_S)
    assert not thread.is_alive() and finished

    results = exp.results()
    statuses = dict(zip(results["name"], results["status"]))
    assert statuses == {"run-1": RunStatus.COMPLETED, "run-2": RunStatus.COMPLETED,
                        "smaller": RunStatus.COMPLETED}
    assert steps(tmp_path, "rag-ctl", gated) == list(range(1, len(queries) + 1))
    assert metrics(results, "run-1") == metrics(results, "run-2")  # stop+resume is invisible
    stats = exp.stage_stats().groupby("stage")["computed"].sum()
    assert stats["chunks"] == 2 and stats["bm25_index"] == 2  # the clone's chunking is new
    assert control.delete(gated, wait=False).status == OpStatus.PENDING  # no controller now
    exp.resume_all(workers=1, progress=False)
    with runfleet.Api(tmp_path) as api:
        assert api.runs("rag-ctl", include_deleted=True,
                        filters={"id": gated})[0].status == RunStatus.DELETED


def test_a_worker_killed_mid_shard_counts_no_query_twice(data: tuple[Any, Any, Any],
                                                         tmp_path: Path) -> None:
    corpus, queries, qrels = data
    marker = tmp_path / "kill-once"
    marker.touch()
    space = GridSearch(RagConfig(chunker=Chunker(unit="chars", size=300, overlap=30),
                                 retriever=Retriever(kind="bm25", k=10),
                                 reranker=List([KillingReranker(str(marker), kill_at=5),
                                                keep_order])))
    exp = Experiment("rag-kill", dir=tmp_path)
    results = exp.run_evals(space, corpus, queries, qrels=qrels, num_shards=2, seed=1,
                            workers=1, progress=False)
    assert not marker.exists()  # the worker was killed
    assert set(results["status"]) == {RunStatus.COMPLETED}
    killed = results["id"].iloc[0]
    assert steps(tmp_path, "rag-kill", killed) == list(range(1, len(queries) + 1))
    assert metrics(results, "run-1") == metrics(results, "run-2")
    assert (results["queries_done"] == len(queries)).all()
    with runfleet.Api(tmp_path) as api:
        alerts = api.run("rag-kill", killed).alerts()
    assert any(a["title"] == "worker died" for a in alerts)


PROGRAM = textwrap.dedent("""
    import sys
    from runfleet import Experiment, GridSearch, List
    from runfleet.rag import Chunker, RagConfig, Retriever
    from tests.rag.helpers import GateReranker, cranfield_slice, keep_order
    corpus, queries, qrels = cranfield_slice(documents=120, queries=24)
    space = GridSearch(RagConfig(chunker=Chunker(unit="chars", size=300, overlap=30),
                                 retriever=Retriever(kind="bm25", k=10),
                                 reranker=List([GateReranker(sys.argv[2], after=5),
                                                keep_order])))
    Experiment("rag-crash", dir=sys.argv[1]).run_evals(
        space, corpus, queries, qrels=qrels, num_shards=3, seed=1, workers=1,
        progress=False)
""")


def test_a_killed_controller_resumes_with_the_same_metrics(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    env = subprocess_env(PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, str(tmp_path), str(gate)],
                            env=env, cwd=ROOT)
    try:
        wait_for(lambda: (tmp_path / "experiments" / "rag-crash" / "engine.pkl").exists(),
                 "the experiment", lambda: proc.poll() is None)
        exp = Experiment.attach("rag-crash", dir=tmp_path)
        wait_for(lambda: len(exp.runs()) == 2, "runs", lambda: proc.poll() is None)
        gated = exp.runs()["id"].iloc[0]
        wait_for(lambda: len(steps(tmp_path, "rag-crash", gated)) >= 5, "5 queries",
                 lambda: proc.poll() is None)
        os.kill(proc.pid, signal.SIGKILL)  # the controller dies in the middle of a shard
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    gate.touch()
    results = Experiment.attach("rag-crash", dir=tmp_path).resume_all(workers=1,
                                                                      progress=False)
    assert set(results["status"]) == {RunStatus.COMPLETED}
    for run_id in results["id"]:
        assert steps(tmp_path, "rag-crash", run_id) == list(range(1, 25))
    assert metrics(results, "run-1") == metrics(results, "run-2")


def test_a_policy_stops_a_config_whose_anytime_interval_is_below_the_best(
        data: tuple[Any, Any, Any], tmp_path: Path) -> None:
    corpus, queries, qrels = data
    space = GridSearch(RagConfig(chunker=Chunker(unit="chars", size=300, overlap=30),
                                 retriever=Retriever(kind="bm25", k=10, candidates=60),
                                 reranker=List([None, reverse_order])))
    exp = Experiment("rag-policy", dir=tmp_path)
    results = exp.run_evals(space, corpus, queries, qrels=qrels, num_shards=6, seed=2,
                            workers=1, progress=False,
                            stopping=IntervalStopping("ndcg@10", mode="max"))
    statuses = dict(zip(results["name"], results["status"]))
    assert statuses == {"run-1": RunStatus.COMPLETED, "run-2": RunStatus.STOPPED}
    stops = [op for op in exp.ops() if op.source == "policy:IntervalStopping"]
    assert len(stops) == 1 and "lies wholly below" in stops[0].args["reason"]
    worse = results.set_index("name").loc["run-2"]
    assert worse["queries_done"] < len(queries)  # stopped before the end
