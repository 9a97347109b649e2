"""runfleet.rag.data: BEIR folders (plain and gzip), eval sets from every accepted form, and
every bad input failing before any work with a message naming the problem."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runfleet.rag.data import Document, EvalDataError, EvalSet, Query, eval_set, load_beir
from tests.conftest import PYTHON, subprocess_env

CRANFIELD = Path("/work/shared/data/cranfield")
if not CRANFIELD.is_dir():  # a checkout elsewhere: the copy next to it
    CRANFIELD = Path(__file__).resolve().parents[3] / "shared" / "data" / "cranfield"
needs_cranfield = pytest.mark.skipif(not CRANFIELD.is_dir(), reason="no Cranfield copy")


def write_beir(folder: Path, corpus: list[str], queries: list[str], qrels: list[str],
               gz: bool = False) -> Path:
    """A BEIR folder from raw lines (so tests can plant malformed ones)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    files = {"corpus.jsonl": corpus, "queries.jsonl": queries,
             "qrels/test.tsv": ["query-id\tcorpus-id\tscore", *qrels]}
    for name, lines in files.items():
        text = "".join(line + "\n" for line in lines)
        if gz:
            with gzip.open(folder / f"{name}.gz", "wt", encoding="utf-8") as handle:
                handle.write(text)
        else:
            (folder / name).write_text(text, encoding="utf-8")
    return folder


def doc(i: str, text: str = "some text", title: str = "") -> str:
    return json.dumps({"_id": i, "title": title, "text": text})


def qry(i: str, text: str = "a question") -> str:
    return json.dumps({"_id": i, "text": text})


# --------------------------------------------------------------------------- load_beir


@needs_cranfield
def test_load_real_cranfield() -> None:
    corpus, queries, qrels = load_beir(CRANFIELD)
    assert len(corpus) == 1400 and len(queries) == 225
    assert sum(len(judged) for judged in qrels.values()) == 1612
    assert corpus[0]["_id"] == "1" and corpus[0]["title"].startswith("experimental")
    assert set(corpus[0]) == {"_id", "text", "title"} and set(queries[0]) == {"_id", "text"}
    assert queries[0] == {"_id": "1", "text": "what similarity laws must be obeyed when "
                          "constructing aeroelastic models of heated high speed aircraft ."}
    assert qrels["1"]["12"] == 2 and qrels["1"]["13"] == 1
    assert all(grade in (1, 2, 3, 4) for judged in qrels.values() for grade in judged.values())
    checked = eval_set(corpus, queries, qrels)
    assert len(checked.corpus) == 1400 and checked.query_ids()[:3] == ["1", "2", "3"]


@needs_cranfield
def test_gzip_copy_loads_the_same(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        with (CRANFIELD / name).open("rb") as src, gzip.open(tmp_path / f"{name}.gz",
                                                             "wb") as dst:
            shutil.copyfileobj(src, dst)
    assert load_beir(tmp_path) == load_beir(CRANFIELD)


def test_split_and_only_judged(tmp_path: Path) -> None:
    folder = write_beir(tmp_path, [doc("d1"), doc("d2")], [qry("q1"), qry("q2"), qry("q3")],
                        ["q1\td1\t1", "q3\td2\t0"])
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td2\t2\n")
    _, queries, qrels = load_beir(folder)
    assert [q["_id"] for q in queries] == ["q1", "q3"] and qrels == {"q1": {"d1": 1},
                                                                     "q3": {"d2": 0}}
    _, queries, qrels = load_beir(folder, split="dev")
    assert [q["_id"] for q in queries] == ["q2"] and qrels == {"q2": {"d2": 2}}
    _, queries, _ = load_beir(folder, only_judged=False)
    assert len(queries) == 3


def test_integer_ids_and_missing_title(tmp_path: Path) -> None:
    folder = write_beir(tmp_path, ['{"_id": 7, "text": "x"}'], ['{"_id": 1, "text": "q"}'],
                        ["1\t7\t1"])
    corpus, queries, _ = load_beir(folder)
    assert corpus == [{"_id": "7", "text": "x", "title": ""}]
    assert queries == [{"_id": "1", "text": "q"}]


@pytest.mark.parametrize("gz", [False, True])
def test_malformed_jsonl_names_file_and_line(tmp_path: Path, gz: bool) -> None:
    folder = write_beir(tmp_path, [doc("d1"), "", doc("d2")[:-3], doc("d3")], [qry("q1")],
                        ["q1\td1\t1"], gz=gz)
    with pytest.raises(EvalDataError, match=r"corpus\.jsonl(\.gz)?:3: malformed JSON"):
        load_beir(folder)


@pytest.mark.parametrize(("line", "message"), [
    ('["not", "an", "object"]', r"queries\.jsonl:2: expected a JSON object"),
    ('{"text": "no id"}', r"queries\.jsonl:2: the object has no '_id'"),
    ('{"_id": "q2"}', r"queries\.jsonl:2: 'text' must be a string"),
    ('{"_id": [1], "text": "x"}', r"queries\.jsonl:2: '_id' must be"),
])
def test_bad_records_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    folder = write_beir(tmp_path, [doc("d1")], [qry("q1"), line], ["q1\td1\t1"])
    with pytest.raises(EvalDataError, match=message):
        load_beir(folder)


def test_bad_qrels_lines(tmp_path: Path) -> None:
    folder = write_beir(tmp_path, [doc("d1")], [qry("q1")], ["q1\td1\t1", "q1\td1"])
    with pytest.raises(EvalDataError, match=r"test\.tsv:3: expected 3 tab-separated columns"):
        load_beir(folder)
    folder = write_beir(tmp_path / "b", [doc("d1")], [qry("q1")], ["q1\td1\thigh"])
    with pytest.raises(EvalDataError, match=r"test\.tsv:2: relevance grade must be an integer"):
        load_beir(folder)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="does not exist or is not a folder"):
        load_beir(tmp_path / "nowhere")
    folder = write_beir(tmp_path, [doc("d1")], [qry("q1")], ["q1\td1\t1"])
    (folder / "queries.jsonl").unlink()
    with pytest.raises(EvalDataError, match=r"queries: neither .*queries\.jsonl nor "
                                            r".*queries\.jsonl\.gz exists"):
        load_beir(folder)
    write_beir(folder, [doc("d1")], [qry("q1")], ["q1\td1\t1"])
    with pytest.raises(EvalDataError, match=r"qrels of split 'train'.*train\.tsv"):
        load_beir(folder, split="train")


def test_not_utf8_names_the_file(tmp_path: Path) -> None:
    folder = write_beir(tmp_path, [doc("d1")], [qry("q1")], ["q1\td1\t1"])
    (folder / "corpus.jsonl").write_bytes(b'{"_id": "d1", "text": "caf\xe9"}\n')
    with pytest.raises(EvalDataError, match=r"corpus\.jsonl: not UTF-8"):
        load_beir(folder)


# --------------------------------------------------------------------------- eval_set

CORPUS: list[dict[str, Any]] = [{"_id": "d1", "text": "alpha", "title": "A"},
                                {"_id": "d2", "text": "beta"},
                                {"_id": "d3", "text": "gamma", "title": None}]
QUERIES = [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"}]
QRELS = {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}


def test_eval_set_from_dicts() -> None:
    es = eval_set(CORPUS, QUERIES, QRELS)
    assert es.corpus == [Document("d1", "alpha", "A"), Document("d2", "beta"),
                         Document("d3", "gamma")]
    assert es.queries == [Query("q1", "first"), Query("q2", "second")]
    assert es.qrels == QRELS and es.answers is None
    assert es.query_ids() == ["q1", "q2"] and es.judged_query_ids() == ["q1", "q2"]


def test_eval_set_from_dataframes_and_qrels_table() -> None:
    corpus = pd.DataFrame({"id": [1, 2, 3], "text": ["alpha", "beta", "gamma"],
                           "title": ["A", None, "C"]})
    queries = pd.DataFrame({"_id": ["q1", "q2"], "text": ["first", "second"]})
    qrels = pd.DataFrame({"query-id": ["q1", "q1", "q2"], "corpus-id": [1, 2, 3],
                          "score": [1, 0, 2]})
    es = eval_set(corpus, queries, qrels)
    assert [d.id for d in es.corpus] == ["1", "2", "3"] and es.corpus[1].title == ""
    assert es.qrels == {"q1": {"1": 1, "2": 0}, "q2": {"3": 2}}
    # a DataFrame keyed by its index, and other column spellings
    indexed = corpus.rename(columns={"id": "_id"}).set_index("_id")
    table = qrels.rename(columns={"query-id": "query_id", "corpus-id": "doc_id",
                                  "score": "relevance"})
    assert eval_set(indexed, queries, table).qrels == es.qrels


def test_eval_set_from_datasets() -> None:
    datasets = pytest.importorskip("datasets")
    corpus = datasets.Dataset.from_list([*CORPUS[:2], {"_id": "d3", "text": "gamma", "title": ""}])
    queries = datasets.Dataset.from_dict({"id": ["q1", "q2"], "text": ["first", "second"]})
    qrels = datasets.Dataset.from_dict({"query-id": ["q1", "q2"], "corpus-id": ["d1", "d3"],
                                        "score": [1, 2]})
    es = eval_set(corpus, queries, qrels, answers={"q1": "alpha"})
    assert [d.id for d in es.corpus] == ["d1", "d2", "d3"] and es.queries[0].id == "q1"
    assert es.qrels == {"q1": {"d1": 1}, "q2": {"d3": 2}}
    assert es.answers == {"q1": ["alpha"]}


def test_beir_loader_shapes_and_answers_only() -> None:
    corpus = {"d1": {"title": "A", "text": "alpha"}, "d2": {"text": "beta"}}
    queries = {"q1": "first"}
    es = eval_set(corpus, queries, answers={"q1": ["alpha", "Alpha!"]})
    assert es.corpus[0] == Document("d1", "alpha", "A") and es.qrels == {}
    assert es.answers == {"q1": ["alpha", "Alpha!"]}


def test_qrels_for_other_queries_are_dropped() -> None:
    es = eval_set(CORPUS, QUERIES[:1], QRELS)
    assert es.qrels == {"q1": QRELS["q1"]}


def test_fingerprint_is_stable_and_content_sensitive() -> None:
    es = eval_set(CORPUS, QUERIES, QRELS)
    again = eval_set([dict(d) for d in CORPUS], QUERIES, QRELS)
    assert es.corpus_fingerprint() == again.corpus_fingerprint()
    assert len(es.corpus_fingerprint()) == 64
    changed = [dict(CORPUS[0], text="alpha "), *CORPUS[1:]]
    retitled = [dict(CORPUS[0], title="B"), *CORPUS[1:]]
    # moving text between fields changes it too (length-prefixed parts)
    shifted = [{"_id": "d1", "text": "Aalpha", "title": ""}, *CORPUS[1:]]
    prints = {eval_set(c, QUERIES, QRELS).corpus_fingerprint()
              for c in (CORPUS, changed, retitled, shifted)}
    assert len(prints) == 4
    code = ("from runfleet.rag.data import eval_set;"
            f"print(eval_set({CORPUS!r}, {QUERIES!r}, {QRELS!r}).corpus_fingerprint())")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True,
                         env=subprocess_env(PYTHONHASHSEED="123"))
    assert out.stdout.strip() == es.corpus_fingerprint()


def test_eval_set_is_frozen() -> None:
    es = eval_set(CORPUS, QUERIES, QRELS)
    assert isinstance(es, EvalSet)
    with pytest.raises(AttributeError):
        es.corpus = []  # type: ignore[misc]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"corpus": []}, "the corpus is empty"),
    ({"queries": []}, "the query set is empty"),
    ({"corpus": [*CORPUS, {"_id": "d2", "text": "again"}]},
     "corpus has duplicate ids: 'd2'"),
    ({"queries": [*QUERIES, {"_id": "q1", "text": "again"}]},
     "queries has duplicate ids: 'q1'"),
    ({"qrels": None}, "give qrels .*, answers .* or both"),
    ({"qrels": {"x1": {"d1": 1}}}, "no query of the 2 has a judgment .*'x1'"),
    ({"qrels": {}}, "no query of the 2 has a judgment"),
    ({"qrels": {"q1": {"d1": 1, "nope": 1, "nada": 2}}},
     r"qrels name 2 document id\(s\) not in the corpus: 'nada', 'nope'"),
    ({"qrels": {"q1": {f"x{i}": 1 for i in range(9)}}},
     r"9 document id\(s\) .*'x0', 'x1', 'x2', 'x3', 'x4' and 4 more"),
    ({"answers": {"q1": ["a"], "q9": ["b"]}},
     r"answers given for 1 query id\(s\) not in the queries: 'q9'"),
    ({"answers": {"q1": []}}, r"answers\['q1'\] is empty"),
    ({"answers": {"q1": [3]}}, r"answers\['q1'\] must be a string or a list of strings"),
    ({"corpus": [{"text": "no id"}]}, r"corpus\[0\] has no '_id'"),
    ({"corpus": [{"_id": "d1", "text": None}]}, r"corpus\[0\] \(id 'd1'\): 'text' must be"),
    ({"corpus": "not a list"}, "corpus must be a list of dicts"),
    ({"qrels": {"q1": {"d1": 1.5}}}, "relevance grade must be an integer"),
    ({"qrels": pd.DataFrame({"q": ["q1"], "corpus-id": ["d1"], "score": [1]})},
     "qrels table has no query id column"),
])
def test_bad_input_fails_with_its_message(kwargs: dict, message: str) -> None:
    args = {"corpus": CORPUS, "queries": QUERIES, "qrels": QRELS, "answers": None}
    args.update(kwargs)
    with pytest.raises(EvalDataError, match=message):
        eval_set(**args)


def test_imports_stay_light() -> None:
    """Importing the RAG modules loads none of the heavy libraries they use."""
    code = ("import sys\n"
            "import runfleet.rag.data, runfleet.rag.chunking, runfleet.rag.embedding\n"
            "import runfleet.rag.retrieval, runfleet.rag.rerank, runfleet.rag.generation\n"
            "heavy = {'torch', 'sentence_transformers', 'faiss', 'bm25s', 'openai', "
            "'transformers', 'langchain_text_splitters', 'datasets', 'nltk'}\n"
            "print(','.join(sorted(heavy & set(sys.modules))))")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True,
                         env=subprocess_env())
    assert out.stdout.strip() == ""
