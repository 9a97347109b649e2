"""The dashboard's RAG views in a real browser (Playwright driving Debian's Chromium).

A real eval experiment is made once for the module: four BM25 configs (chunk sizes) on a
Cranfield slice, in four shards, with successive halving on nDCG@10 stopping the weaker
configs after one or two shards, so the project holds completed runs (closed intervals)
and stopped ones (open intervals). The Compare tab must show exactly what
``Experiment.results()`` holds, marks included; a chart of ``eval/ndcg@10`` draws each
run's logged interval as a band; the run detail lists every query done and its ranking as
``Experiment.per_query`` and ``Experiment.rankings`` give them. A second experiment, held
by a gate after its first shards, checks that Compare follows shards live. Screenshots go
to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import runfleet
from runfleet import Experiment, GridSearch, List
from runfleet.engine.stopping import SuccessiveHalving
from runfleet.rag import Chunker, RagConfig, Retriever
from runfleet.store.base import RunStatus
from tests.conftest import PYTHON, ROOT, subprocess_env
from tests.dashboard.conftest import ARTIFACTS
from tests.rag.helpers import cranfield_slice

PROJECT = "rag-views"
QUERIES = 12
SHOWN = ["ndcg@10", "recall@10", "precision@10", "mrr@10", "map@10", "hit@10"]
INTERVAL = re.compile(r"^(-?\d+\.\d{3}) \[(-?\d+\.\d{3}), (-?\d+\.\d{3})\]$")

# Every row of the Compare table: its metric cells (text and mark), config, queries, status.
COMPARE_CELLS = """() => Object.fromEntries(
  [...document.querySelectorAll('#compare-table tbody tr')].map(tr => [tr.dataset.run, {
    name: tr.dataset.name,
    metrics: Object.fromEntries([...tr.querySelectorAll('td[data-metric]')].map(td =>
      [td.dataset.metric, {text: td.querySelector('.iv').textContent,
                           mark: td.dataset.mark || null}])),
    config: Object.fromEntries([...tr.querySelectorAll('td[data-config]')].map(td =>
      [td.dataset.config, td.textContent])),
    latency: Object.fromEntries([...tr.querySelectorAll('td[data-latency]')].map(td =>
      [td.dataset.latency, td.textContent])),
    queries: tr.querySelector('td[data-queries]').textContent,
    status: tr.querySelector('.status').textContent}]))"""


@dataclass
class RagHome:
    """The module's eval experiment: its home and what the Python API reads back."""

    home: Path
    results: pd.DataFrame
    per_query: dict[str, pd.DataFrame]
    rankings: dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> RagHome:
    corpus, queries, qrels = cranfield_slice(documents=60, queries=QUERIES)
    home = tmp_path_factory.mktemp("rag-views")
    space = GridSearch(RagConfig(
        chunker=Chunker(unit="chars", size=List([100, 200, 400, 800]), overlap=20),
        retriever=Retriever(kind="bm25", k=10)))
    exp = Experiment(PROJECT, dir=home)
    results = exp.run_evals(space, corpus, queries, qrels=qrels, num_shards=4, seed=1,
                            workers=1, progress=False,
                            stopping=SuccessiveHalving("eval/ndcg@10", mode="max", eta=2))
    ids = results["id"].tolist()
    return RagHome(home, results, {r: exp.per_query(r) for r in ids},
                   {r: exp.rankings(r) for r in ids})


def expected_marks(values: list[tuple[float, float, float]]) -> list[str]:
    """The marks the page must give (higher is better): the best mean; an interval that
    overlaps the best's: not distinguishable; one wholly below it: worse."""
    top = max(mean for mean, _, _ in values)
    best = [(low, high) for mean, low, high in values if mean == top]
    return ["best" if mean == top
            else "tie" if any(high >= b_low and low <= b_high for b_low, b_high in best)
            else "worse" for mean, low, high in values]


def check_interval(text: str, mean: float, low: float, high: float) -> None:
    """``text`` prints mean [low, high] to 3 decimals (a tie in the last digit may round
    either way)."""
    m = INTERVAL.match(text)
    assert m, text
    for shown, value in zip(m.groups(), (mean, low, high)):
        assert abs(float(shown) - value) <= 0.0005 + 1e-12, (text, mean, low, high)


def check_compare_table(page: Any, results: pd.DataFrame) -> dict[str, Any]:
    """Every run of ``results`` is a row of the Compare table with its intervals, marks,
    config, queries done and status; return the rows read from the page."""
    rows = page.evaluate(COMPARE_CELLS)
    assert set(rows) == set(results["id"])
    for metric in SHOWN:
        values = [(r[metric], r[f"{metric}_ci_low"], r[f"{metric}_ci_high"])
                  for _, r in results.iterrows()]
        for (_, run), value, mark in zip(results.iterrows(), values,
                                         expected_marks(values)):
            cell = rows[run["id"]]["metrics"][metric]
            check_interval(cell["text"], *value)
            assert cell["mark"] == mark, (run["name"], metric, cell, value)
    for _, run in results.iterrows():
        row = rows[run["id"]]
        assert row["name"] == run["name"] and row["status"] == run["status"]
        assert row["queries"] == f"{int(run['queries_done'])} / {QUERIES}"
        assert float(row["latency"]["retrieve"]) == pytest.approx(
            run["latency_ms/retrieve_p50"], rel=1e-2)
    return rows


def open_compare(page: Any, url: str, runs: int) -> None:
    page.goto(url)
    page.wait_for_selector("#tab-compare:not([hidden])", timeout=20_000)
    page.click("#tab-compare")
    page.wait_for_function("n => document.querySelectorAll('#compare-table tbody tr')"
                           ".length === n", arg=runs, timeout=10_000)


def test_compare_lists_every_run_with_its_intervals_and_marks_the_best(
        serve: Any, page: Any, rag: RagHome) -> None:
    results = rag.results
    # the policy stopped the weaker configs: open intervals next to closed ones
    assert RunStatus.COMPLETED in set(results["status"])
    stopped = results[results["status"] == RunStatus.STOPPED]
    assert len(stopped) >= 2
    assert (stopped["ndcg@10_ci_low"] < stopped["ndcg@10_ci_high"]).all()
    open_compare(page, serve(rag.home).page_url(PROJECT), len(results))
    headers = page.eval_on_selector_all("#compare-table th button[data-sort^='metric:']",
                                        "bs => bs.map(b => b.dataset.sort.slice(7))")
    assert headers == SHOWN  # the largest cut-off by default
    rows = check_compare_table(page, results)
    marks = {c["mark"] for r in rows.values() for c in r["metrics"].values()}
    assert marks == {"best", "tie", "worse"}  # this data has all three
    best = results.iloc[int(results["ndcg@10"].to_numpy().argmax())]
    assert rows[best["id"]]["metrics"]["ndcg@10"]["mark"] == "best"
    # only the key that differs between the configs is a column
    assert {k for r in rows.values() for k in r["config"]} == {"chunker.size"}
    for _, run in results.iterrows():
        assert rows[run["id"]]["config"]["chunker.size"] == str(run["chunker.size"])

    page.click("#compare-table button[data-sort='metric:ndcg@10']")  # best first
    page.wait_for_selector("#compare-table th[aria-sort='descending']")
    order = page.eval_on_selector_all("#compare-table tbody tr",
                                      "rs => rs.map(r => r.dataset.name)")
    assert order == results.sort_values("ndcg@10", ascending=False)["name"].tolist()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-rag.png"))

    page.select_option("#compare-k", "5")  # other cut-offs, and the anytime interval
    page.select_option("#compare-interval", "cs")
    page.wait_for_selector("#compare-table td[data-metric='ndcg@5']")
    with runfleet.Api(rag.home) as api:
        summaries = {r.id: r.summary for r in api.runs(PROJECT)}
    rows = page.evaluate(COMPARE_CELLS)
    for run_id, summary in summaries.items():
        check_interval(rows[run_id]["metrics"]["ndcg@5"]["text"], summary["eval/ndcg@5"],
                       summary["eval/ndcg@5_cs_low"], summary["eval/ndcg@5_cs_high"])


def test_an_eval_metric_chart_draws_each_runs_interval_as_a_band(
        serve: Any, page: Any, rag: RagHome) -> None:
    page.goto(serve(rag.home).page_url(PROJECT))
    page.wait_for_selector(".chart[data-key='eval/ndcg@10']", timeout=20_000)
    charted = page.eval_on_selector_all(".chart", "cs => cs.map(c => c.dataset.key)")
    assert "eval/ndcg@10" in charted and "query/ndcg@10" in charted
    assert not [k for k in charted if re.search(r"_(ci|cs)_(low|high)$", k)]
    # the bounds stay keys of the project (table columns, CSV), just not charts
    assert page.evaluate("['eval/ndcg@10_ci_low', 'eval/ndcg@10_cs_high'].every(k => "
                         "window.__rf.state.keys.some(i => i.key === k) "
                         "&& window.__rf.state.summaryKeys.includes(k))")
    page.fill("#key-filter", "^eval/ndcg@10$")
    chart = ".chart[data-key='eval/ndcg@10']"
    runs = len(rag.results)
    page.wait_for_selector(f"{chart}[data-drawn='1'][data-bands='{runs}']", timeout=10_000)
    assert page.evaluate("window.__rf.charts.get('eval/ndcg@10').bandCount()") == runs
    drawn = page.evaluate("""() => {
      const b = window.__rf.charts.get('eval/ndcg@10').bounds;
      const get = (d) => Object.fromEntries([...d.lines].map(([r, l]) => [r, [l.x, l.y]]));
      return {keys: b.keys, lo: get(b.lo), hi: get(b.hi)};
    }""")
    assert drawn["keys"] == {"lo": "eval/ndcg@10_ci_low", "hi": "eval/ndcg@10_ci_high"}
    with runfleet.Api(rag.home) as api:
        for run in api.runs(PROJECT):
            for edge, key in (("lo", "eval/ndcg@10_ci_low"), ("hi", "eval/ndcg@10_ci_high")):
                logged = run.series(key)
                assert drawn[edge][run.id] == [logged.steps.tolist(), logged.values.tolist()]
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(chart).screenshot(path=str(ARTIFACTS / "dashboard-rag-chart.png"))

    page.select_option("#interval", "cs")  # the anytime-valid interval instead
    page.wait_for_function("() => window.__rf.charts.get('eval/ndcg@10').bounds?.keys.lo"
                           " === 'eval/ndcg@10_cs_low'")
    page.wait_for_selector(f"{chart}[data-bands='{runs}']")
    page.select_option("#interval", "none")
    page.wait_for_selector(f"{chart}[data-bands='0'][data-runs='{runs}']")


def test_the_per_query_drill_down_lists_every_query_and_its_ranking(
        serve: Any, page: Any, rag: RagHome) -> None:
    results = rag.results
    done = results[results["status"] == RunStatus.COMPLETED].iloc[0]
    other = results[results["status"] == RunStatus.STOPPED].iloc[-1]
    per_query = rag.per_query[done["id"]]
    assert len(per_query) == QUERIES
    page.goto(serve(rag.home).page_url(PROJECT))
    page.click(f"#run-list .run-name >> text={done['name']}")
    table = "#queries-table tbody tr"
    page.wait_for_function("n => document.querySelectorAll('#queries-table tbody tr')"
                           ".length === n", arg=QUERIES, timeout=10_000)
    shown = page.evaluate("""() => [...document.querySelectorAll('#queries-table tbody tr')]
      .map(tr => [tr.dataset.query, Object.fromEntries([...tr.querySelectorAll(
        'td[data-metric]')].map(td => [td.dataset.metric, td.textContent]))])""")
    expected = per_query.set_index("query_id")
    assert sorted(q for q, _ in shown) == sorted(expected.index.astype(str))
    for query, cells in shown:
        assert set(cells) == set(SHOWN)
        for metric, text in cells.items():
            assert float(text) == pytest.approx(expected.loc[query, metric], abs=5e-4 + 1e-12)

    page.click("#queries-table button[data-sort='metric:ndcg@10']")  # highest first
    page.wait_for_selector("#queries-table th[aria-sort='descending']")
    first = page.locator(table).first
    top = first.get_attribute("data-query")
    assert expected.loc[top, "ndcg@10"] == expected["ndcg@10"].max()
    first.locator(".query-link").click()
    page.wait_for_selector(f"#query-docs[data-query='{top}'] table[data-run='{done['id']}']")
    docs = page.eval_on_selector_all(f"#query-docs table[data-run='{done['id']}'] tbody tr",
                                     "rs => rs.map(r => r.dataset.doc)")
    ranked = rag.rankings[done["id"]]
    ranked = ranked[ranked["query_id"].astype(str) == top].sort_values("rank")
    assert docs == ranked["doc_id"].astype(str).tolist() and len(docs) > 0

    # against a stopped run: one difference per query both did, and their mean
    page.select_option("#queries-compare", other["id"])
    page.wait_for_selector("#queries-delta-mean")
    deltas = page.eval_on_selector_all("#queries-table td.delta",
                                       "ts => ts.map(t => t.dataset.delta)")
    theirs = rag.per_query[other["id"]].set_index("query_id")["ndcg@10"]
    mine = expected["ndcg@10"]
    common = [q for q in mine.index if q in theirs.index]
    assert len([d for d in deltas if d]) == len(common) == int(other["queries_done"])
    said = re.search(r": ([-+]?[\d.e-]+)$", page.inner_text("#queries-delta-mean"))
    assert said, page.inner_text("#queries-delta-mean")
    mean = float(said.group(1))
    assert mean == pytest.approx(float((mine[common] - theirs[common]).mean()), rel=1e-5,
                                 abs=1e-9)
    page.wait_for_selector(f"#query-docs table[data-run='{other['id']}']")  # side by side
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-rag-queries.png"))


LIVE = textwrap.dedent("""
    import sys
    from runfleet import Experiment, GridSearch, List
    from runfleet.rag import Chunker, RagConfig, Retriever
    from tests.dashboard.helpers import ShardGate
    from tests.rag.helpers import cranfield_slice
    home, gate, counter = sys.argv[1:4]
    corpus, queries, qrels = cranfield_slice(documents=60, queries=12)
    space = GridSearch(RagConfig(
        chunker=Chunker(unit="chars", size=List([200, 400]), overlap=20),
        retriever=Retriever(kind="bm25", k=10), reranker=ShardGate(gate, counter, after=8)))
    Experiment("rag-live", dir=home).run_evals(space, corpus, queries, qrels=qrels,
                                               num_shards=3, seed=2, workers=1,
                                               progress=False)
""")


def test_compare_follows_the_shards_live(serve: Any, page: Any, tmp_path: Path) -> None:
    gate, counter = tmp_path / "gate", tmp_path / "calls"
    env = subprocess_env(PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    proc = subprocess.Popen([PYTHON, "-c", LIVE, str(tmp_path), str(gate), str(counter)],
                            env=env, cwd=ROOT)
    try:
        # both configs finish their first shard (4 queries each), then wait at the gate
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "the experiment ended before the gate"
            assert time.monotonic() < deadline, "no first shards within 120 s"
            if (tmp_path / "runfleet.db").exists():
                with runfleet.Api(tmp_path) as api:
                    runs = api.runs("rag-live") if any(
                        p.name == "rag-live" for p in api.projects()) else []
                    if len(runs) == 2 and all(r.summary.get("eval/queries_done") == 4
                                              for r in runs):
                        break
            time.sleep(0.1)
        open_compare(page, serve(tmp_path).page_url("rag-live"), 2)
        page.evaluate("window.__notReloaded = true")
        rows = page.evaluate(COMPARE_CELLS)
        assert [r["queries"] for r in rows.values()] == ["4 / 12", "4 / 12"]
        for row in rows.values():
            shown = INTERVAL.match(row["metrics"]["ndcg@10"]["text"])
            assert shown, row
            low, high = shown.groups()[1:]
            assert float(low) < float(high)  # a third of the queries: an open interval
            assert set(row["latency"]) == {"retrieve", "rerank"}
        gate.touch()
        page.wait_for_function("""() => {
          const rows = [...document.querySelectorAll('#compare-table tbody tr')];
          return rows.length === 2 && rows.every(r =>
            r.querySelector('td[data-queries]').textContent === '12 / 12'
            && r.querySelector('.status').textContent === 'completed');
        }""", timeout=60_000)
        assert proc.wait(timeout=60) == 0
        assert page.evaluate("window.__notReloaded") is True
        page.wait_for_timeout(500)  # the last redraw (debounced) is in
        check_compare_table(page, Experiment.attach("rag-live", dir=tmp_path).results())
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
