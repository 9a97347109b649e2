"""runfleet.rag.metrics against the reference implementations: pytrec_eval and ranx on the real
Cranfield judgments, SQuAD's definitions by hand, rouge-score and sacrebleu called directly."""

from __future__ import annotations

import csv
import functools
import math
import random
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runfleet.rag.metrics import (
    answer_metrics,
    default_ks,
    doc_ranking,
    judged,
    latency_summary,
    metric_names,
    normalize_answer,
    retrieval_metrics,
)

pytrec_eval = pytest.importorskip("pytrec_eval")
ranx = pytest.importorskip("ranx")

QRELS_PATH = Path("/work/shared/data/cranfield/qrels/test.tsv")
if not QRELS_PATH.exists():  # a checkout next to ../shared
    QRELS_PATH = Path(__file__).resolve().parents[3] / "shared/data/cranfield/qrels/test.tsv"
KS = (1, 3, 5, 10, 20)
TOL = 1e-9
CORPUS = [str(i) for i in range(1, 1401)]
# our family -> (pytrec_eval measure, ranx metric); mrr@k is recip_rank of the run cut at k
NAMES = {"ndcg": ("ndcg_cut_{k}", "ndcg@{k}"), "recall": ("recall_{k}", "recall@{k}"),
         "precision": ("P_{k}", "precision@{k}"), "map": ("map_cut_{k}", "map@{k}"),
         "mrr": (None, "mrr@{k}"), "hit": ("success_{k}", "hit_rate@{k}")}


@functools.cache
def load_qrels() -> dict[str, dict[str, int]]:
    if not QRELS_PATH.exists():
        pytest.skip(f"Cranfield qrels not found at {QRELS_PATH}")
    qrels: dict[str, dict[str, int]] = {}
    with QRELS_PATH.open(newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        assert next(reader) == ["query-id", "corpus-id", "score"]
        for qid, doc, grade in reader:
            qrels.setdefault(qid, {})[doc] = int(grade)
    return qrels


@pytest.fixture(scope="module")
def qrels() -> dict[str, dict[str, int]]:
    return load_qrels()


def as_run(rankings: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Explicit strictly decreasing scores, so trec_eval and ranx see exactly our order."""
    return {q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in rankings.items()}


def pytrec_values(qrels: dict, rankings: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Per query and metric name (ours), as pytrec_eval computes it."""
    cut = ",".join(map(str, KS))
    evaluator = pytrec_eval.RelevanceEvaluator(
        qrels, {f"{m}.{cut}" for m in ("ndcg_cut", "P", "recall", "map_cut", "success")})
    raw = evaluator.evaluate(as_run(rankings))
    out = {q: {f"{fam}@{k}": raw[q][tmpl.format(k=k)] for fam, (tmpl, _) in NAMES.items()
               if tmpl for k in KS} for q in raw}
    rr_eval = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    for k in KS:
        rr = rr_eval.evaluate(as_run({q: r[:k] for q, r in rankings.items()}))
        for q in raw:
            out[q][f"mrr@{k}"] = rr[q]["recip_rank"]
    return out


def ranx_values(qrels: dict, rankings: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Per query and metric name (ours), as ranx computes it (judged, non-empty queries)."""
    qids = sorted(rankings)
    run = ranx.Run.from_dict({q: as_run(rankings)[q] for q in qids})
    metrics = {tmpl.format(k=k): f"{fam}@{k}" for fam, (_, tmpl) in NAMES.items() for k in KS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's type-safety warnings
        ranx.evaluate(ranx.Qrels.from_dict({q: qrels[q] for q in qids}), run, list(metrics),
                      return_mean=False)
    return {q: {ours: float(run.scores[theirs][q]) for theirs, ours in metrics.items()}
            for q in qids}


def assert_all_equal(qrels: dict, rankings: dict[str, list[str]]) -> int:
    """Every metric of every judged non-empty query equals pytrec_eval and ranx to 1e-9."""
    ours = {q: retrieval_metrics(r, qrels.get(q, {}), KS) for q, r in rankings.items()}
    comparable = {q: r for q, r in rankings.items() if r and q in judged(qrels)}
    references = ([pytrec_values(qrels, comparable), ranx_values(qrels, comparable)]
                  if comparable else [])
    for ref in references:
        assert set(ref) == set(comparable)
        for q, values in ref.items():
            assert set(values) == set(ours[q])
            for name, value in values.items():
                assert ours[q][name] == pytest.approx(value, abs=TOL), (q, name, rankings[q])
    for q, r in rankings.items():
        assert all(0.0 <= v <= 1.0 for v in ours[q].values())
        if not r or q not in judged(qrels):
            assert all(v == 0.0 for v in ours[q].values()), q
    return len(comparable)


def random_rankings(qrels: dict, rng: random.Random) -> dict[str, list[str]]:
    """One ranking per query, of many kinds (relevant mixed in, absent, ideal, reversed...)."""
    out: dict[str, list[str]] = {}
    for i, (q, docs) in enumerate(sorted(qrels.items())):
        rel = [d for d, g in docs.items() if g > 0]
        length = rng.choice([1, 2, 3, 7, 10, 15, 25, 40])  # often fewer than k
        pool = rng.sample(CORPUS, length)
        kind = i % 6
        if kind == 0:  # relevant documents mixed in at random places
            pool = list(dict.fromkeys(rng.sample(rel, min(len(rel), length // 2 + 1)) + pool))
            rng.shuffle(pool)
        elif kind == 1:  # ideal order first
            pool = sorted(rel, key=lambda d: -docs[d]) + pool
        elif kind == 2:  # worst grade first, relevant ones late
            pool = pool + sorted(rel, key=lambda d: docs[d])
        elif kind == 3:  # no relevant document at all
            pool = [d for d in pool if d not in docs] or ["no-such-doc"]
        elif kind == 4:  # one relevant document exactly at the cutoff boundary
            pool = [d for d in pool if d not in docs]
            pool.insert(min(len(pool), rng.choice(KS) - 1), rng.choice(rel))
        out[q] = list(dict.fromkeys(pool))[: rng.choice([3, 10, 30])]
    return out


def test_cranfield_qrels_shape(qrels):
    assert len(qrels) == 225
    assert sum(len(d) for d in qrels.values()) == 1612
    assert {g for d in qrels.values() for g in d.values()} == {1, 2, 3, 4}
    assert judged(qrels) == set(qrels)


def test_seeded_random_rankings_equal_pytrec_eval_and_ranx(qrels):
    rng = random.Random(12)
    compared = 0
    for _ in range(3):
        compared += assert_all_equal(qrels, random_rankings(qrels, rng))
    assert compared == 3 * 225


def test_chunk_rankings_with_ties_and_duplicates(qrels):
    """Chunk hits with tied scores and several chunks per document, through doc_ranking."""
    rng = random.Random(7)
    rankings = {}
    for q, docs in sorted(qrels.items()):
        candidates = list(docs)[:5] + rng.sample(CORPUS, 10)
        hits = [(f"{rng.choice(candidates)}#{c}", float(rng.choice([0.9, 0.5, 0.5, 0.1])))
                for c in range(rng.randint(1, 40))]
        hits.sort(key=lambda h: -h[1])  # stable: ties keep their order
        ranked = doc_ranking(hits, lambda chunk: chunk.split("#")[0], k=max(KS))
        doc_ids = [d for d, _ in ranked]
        assert len(doc_ids) == len(set(doc_ids)) <= max(KS)
        rankings[q] = doc_ids
    assert assert_all_equal(qrels, rankings) == 225


def test_unjudged_and_empty_queries(qrels):
    local = {**qrels, "zero-only": {"1": 0, "2": 0}, "negative": {"3": -1}}
    rankings = {"zero-only": ["1", "2"], "negative": ["3"], "not-in-qrels": ["1"], "1": []}
    assert "zero-only" not in judged(local) and "negative" not in judged(local)
    assert_all_equal(local, rankings)
    # pytrec_eval evaluates a judged query with no relevant document as all zeros
    raw = pytrec_eval.RelevanceEvaluator(local, {"ndcg_cut.5", "recall.5", "map_cut.5"})
    assert all(v == 0.0 for v in raw.evaluate(as_run({"zero-only": ["1"]}))["zero-only"].values())


@st.composite
def query_and_ranking(draw: st.DrawFn) -> tuple[str, list[str]]:
    q = draw(st.sampled_from(sorted(load_qrels())))
    qrel = load_qrels()[q]
    pool = sorted(qrel) + draw(st.lists(st.sampled_from(CORPUS), max_size=15))
    ranking = draw(st.lists(st.sampled_from(pool), max_size=30))
    return q, list(dict.fromkeys(ranking))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query_and_ranking())
def test_hypothesis_rankings_equal_pytrec_eval_and_ranx(case):
    q, ranking = case
    qrel = load_qrels()[q]
    assert_all_equal({q: qrel}, {q: ranking})


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdefgh"), st.integers(-1, 3), max_size=8),
       st.lists(st.sampled_from("abcdefghxyz"), unique=True, max_size=12))
def test_hypothesis_synthetic_grades_equal_pytrec_eval(judgments, ranking):
    """Grades 0 and -1 (judged non-relevant) included; pytrec_eval only (ranx needs >= 1)."""
    ours = retrieval_metrics(ranking, judgments, KS)
    if not ranking or not judgments:  # pytrec_eval leaves such a query out
        assert all(v == 0.0 for v in ours.values())
        return
    ref = pytrec_values({"q": judgments}, {"q": ranking})["q"]
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, abs=TOL), name


def test_hand_computed_example():
    judgments = {"a": 3, "b": 1, "c": 2, "z": 0}
    m = retrieval_metrics(["x", "c", "a", "b", "c"], judgments, [1, 2, 4])
    assert m["precision@1"] == 0.0 and m["hit@1"] == 0.0 and m["mrr@1"] == 0.0
    assert m["mrr@2"] == 0.5 and m["hit@2"] == 1.0
    assert m["precision@4"] == 0.75  # duplicate "c" counted once
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["map@4"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    dcg = 2 / math.log2(3) + 3 / math.log2(4) + 1 / math.log2(5)
    idcg = 3 + 2 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@4"] == pytest.approx(dcg / idcg)
    assert list(m) == metric_names([1, 2, 4])


def test_doc_ranking():
    hits = [("d1#0", 0.9), ("d2#0", 0.8), ("d1#1", 0.85), ("d3#2", 0.8), ("d2#1", 0.1)]
    doc_of = {"d1#0": "d1", "d1#1": "d1", "d2#0": "d2", "d2#1": "d2", "d3#2": "d3"}
    assert doc_ranking(hits, doc_of) == [("d1", 0.9), ("d2", 0.8), ("d3", 0.8)]
    assert doc_ranking(hits, lambda c: c[:2], k=2) == [("d1", 0.9), ("d2", 0.8)]
    assert doc_ranking(hits, doc_of, k=0) == [] and doc_ranking([], doc_of) == []
    with pytest.raises(ValueError):
        doc_ranking(hits, doc_of, k=-1)


def test_names_and_cutoffs():
    assert default_ks(1) == (1,) and default_ks(3) == (1, 3) and default_ks(5) == (1, 5)
    assert default_ks(10) == (1, 5, 10) and default_ks(20) == (1, 5, 10, 20)
    with pytest.raises(ValueError):
        default_ks(0)
    assert metric_names([5, 1, 5]) == [
        "ndcg@1", "ndcg@5", "recall@1", "recall@5", "precision@1", "precision@5",
        "mrr@1", "mrr@5", "map@1", "map@5", "hit@1", "hit@5"]
    with pytest.raises(ValueError):
        retrieval_metrics(["a"], {"a": 1}, [0])


# ------------------------------------------------------------------------------- answers

def test_squad_normalisation_by_hand():
    assert normalize_answer("The Cat sat.") == "cat sat"
    assert normalize_answer("  An apple, a PEAR;   the end!") == "apple pear end"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words
    m = answer_metrics("The Cat sat.", ["cat sat"])
    assert m["exact_match"] == 1.0 and m["f1"] == 1.0
    # pred tokens [cat, sat, on, mat], ref [cat, is, on, mat]: 3 shared
    m = answer_metrics("the cat sat on the mat", ["a cat is on a mat", "dog"])
    assert m["exact_match"] == 0.0 and m["f1"] == pytest.approx(0.75)
    # repeated tokens count by multiplicity: pred [to, to, be], ref [to, be]: 2 shared
    assert answer_metrics("to to be", ["to be"])["f1"] == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))
    assert answer_metrics("Paris", ["London", "paris!"])["exact_match"] == 1.0


def test_answer_metrics_equal_rouge_score_and_sacrebleu():
    from rouge_score import rouge_scorer
    from sacrebleu import sentence_bleu

    scorer = rouge_scorer.RougeScorer(["rougeL"])  # library defaults
    rng = random.Random(3)
    words = ["the", "cat", "sat", "on", "a", "mat", "dogs", "running", "ran", "quickly",
             "slow", "red", "blue", "42"]
    for _ in range(100):
        pred = " ".join(rng.choices(words, k=rng.randint(0, 12)))
        refs = [" ".join(rng.choices(words, k=rng.randint(0, 12)))
                for _ in range(rng.randint(1, 3))]
        m = answer_metrics(pred, refs)
        rouge = max(scorer.score(r, pred)["rougeL"].fmeasure for r in refs)
        bleu = min(1.0, sentence_bleu(pred, refs).score / 100)
        assert m["rougeL"] == pytest.approx(rouge, abs=1e-12)
        assert m["bleu"] == pytest.approx(bleu, abs=1e-12)
        assert all(0.0 <= v <= 1.0 for v in m.values())


@pytest.mark.parametrize(("pred", "refs"), [
    ("", ["a cat"]), ("a cat", [""]), ("", [""]), ("the", ["a"]), ("...", ["!"]),
    ("x", []), ("ünïcödé 東京", ["東京"]), ("same words here", ["same words here"])])
def test_answer_edge_cases_do_not_crash(pred, refs):
    m = answer_metrics(pred, refs)
    assert set(m) == {"exact_match", "f1", "rougeL", "bleu"}
    assert all(0.0 <= v <= 1.0 for v in m.values())
    if not refs:
        assert all(v == 0.0 for v in m.values())
    if (pred == "" and refs == [""]) or (pred == "the" and refs == ["a"]):
        assert m["exact_match"] == 1.0 and m["f1"] == 1.0  # both normalise to nothing
    if pred == "same words here":
        assert m["bleu"] == 1.0 and m["rougeL"] == 1.0  # sacrebleu says 100.00000000000004


# ------------------------------------------------------------------------------- latency

def test_latency_summary():
    s = latency_summary([10.0, 20.0, 30.0, 40.0])
    assert s == {"mean": 25.0, "p50": 25.0, "p95": pytest.approx(38.5)}
    assert latency_summary([7.0]) == {"mean": 7.0, "p50": 7.0, "p95": 7.0}
    for bad in ([], [1.0, float("nan")]):
        with pytest.raises(ValueError):
            latency_summary(bad)
