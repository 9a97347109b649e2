"""Loading and checking the data a RAG evaluation runs on.

Two entry points:

- :func:`load_beir` reads a folder in the BEIR layout (``corpus.jsonl``, ``queries.jsonl``,
  ``qrels/<split>.tsv``, each optionally gzip-compressed as ``.jsonl.gz``/``.tsv.gz``) into
  plain Python structures.
- :func:`eval_set` turns a corpus, queries, relevance judgments (qrels) and reference
  answers, given as lists of dicts, pandas DataFrames or ``datasets.Dataset``s, into one
  checked, immutable :class:`EvalSet`. Every problem it can see (empty corpus, duplicate
  ids, judgments naming unknown documents, ...) is raised as :class:`EvalDataError` before
  any chunking, embedding or retrieval starts.

This module imports only the standard library: pandas and datasets objects are recognised
without importing those packages.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runfleet.errors import RunfleetError

__all__ = [
    "Document",
    "EvalDataError",
    "EvalSet",
    "Query",
    "eval_set",
    "load_beir",
]

#: How many offending ids an error message lists before saying "and N more".
_NAMED = 5

_QUERY_ID_COLUMNS = ("query-id", "query_id", "qid", "queryid")
_DOC_ID_COLUMNS = ("corpus-id", "corpus_id", "doc-id", "doc_id", "docid", "doc")
_SCORE_COLUMNS = ("score", "relevance", "grade", "label", "rel")


class EvalDataError(RunfleetError, ValueError):
    """Eval data that cannot be used: a malformed or missing file, an empty corpus or query
    set, duplicate ids, judgments or answers naming unknown ids. The message names the file
    and line, or the offending ids."""


@dataclass(frozen=True)
class Document:
    """One corpus document: its ``id``, ``text`` and optional ``title``."""

    id: str
    text: str
    title: str = ""


@dataclass(frozen=True)
class Query:
    """One query (question): its ``id`` and ``text``."""

    id: str
    text: str


@dataclass(frozen=True)
class EvalSet:
    """A checked evaluation set, built by :func:`eval_set`.

    Attributes:
        corpus: the documents, in the order given.
        queries: the queries, in the order given.
        qrels: relevance judgments ``{query_id: {doc_id: grade}}``, only for queries of
            ``queries`` (empty when only answers were given).
        answers: reference answers ``{query_id: [answer, ...]}`` or None.
    """

    corpus: list[Document]
    queries: list[Query]
    qrels: dict[str, dict[str, int]]
    answers: dict[str, list[str]] | None = None
    _cache: dict[str, str] = field(default_factory=dict, init=False, repr=False,
                                   compare=False)

    def corpus_fingerprint(self) -> str:
        """A sha256 hex digest over the documents' ids, titles and texts, in order.

        Equal corpora give equal fingerprints in any process on any machine (no use of
        Python's salted ``hash``), so it can key on-disk caches of chunks and indexes.
        """
        cached = self._cache.get("corpus")
        if cached is None:
            digest = hashlib.sha256(b"runfleet.rag.corpus.v1\n")
            for doc in self.corpus:
                for part in (doc.id, doc.title, doc.text):
                    raw = part.encode("utf-8", "surrogatepass")
                    # length-prefixed, so no choice of separator characters can collide
                    digest.update(len(raw).to_bytes(8, "little"))
                    digest.update(raw)
            cached = self._cache["corpus"] = digest.hexdigest()
        return cached

    def query_ids(self) -> list[str]:
        """The query ids, in the order of :attr:`queries`."""
        return [query.id for query in self.queries]

    def judged_query_ids(self) -> list[str]:
        """The ids of the queries that have at least one judgment, in query order."""
        return [query.id for query in self.queries if self.qrels.get(query.id)]


# --------------------------------------------------------------------------- BEIR files


def _find(folder: Path, stem: str, what: str) -> Path:
    """``folder/stem`` or its ``.gz`` copy; an error naming both when neither exists."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise EvalDataError(f"{what}: neither {folder / stem} nor {folder / stem}.gz exists")


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file, gzip or not; decoding errors name the file."""
    try:
        with _open_text(path) as handle:
            lineno = 0
            for lineno, line in enumerate(handle, start=1):
                yield lineno, line
    except UnicodeDecodeError as exc:
        raise EvalDataError(f"{path}: not UTF-8 text ({exc.reason}, after line "
                            f"{lineno})") from exc
    except (OSError, EOFError) as exc:  # a damaged gzip stream
        raise EvalDataError(f"{path}: cannot be read ({exc})") from exc


def _id_text(value: Any, where: str, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise EvalDataError(f"{where}: {key!r} must be a string or an integer, got {value!r}")
    return str(value)


def _read_jsonl(path: Path, *, with_title: bool) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    for lineno, line in _read_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{where}: malformed JSON line ({exc.msg} at column "
                                f"{exc.colno})") from exc
        if not isinstance(obj, dict):
            raise EvalDataError(f"{where}: expected a JSON object, got "
                                f"{type(obj).__name__}")
        if "_id" not in obj:
            raise EvalDataError(f"{where}: the object has no '_id'")
        text = obj.get("text")
        if not isinstance(text, str):
            raise EvalDataError(f"{where}: 'text' must be a string, got {text!r}")
        item = {"_id": _id_text(obj["_id"], where, "_id"), "text": text}
        if with_title:
            title = obj.get("title")
            item["title"] = title if isinstance(title, str) else ""
        items.append(item)
    return items


def _read_qrels_tsv(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in _read_lines(path):
        if not line.strip():
            continue
        cells = line.rstrip("\r\n").split("\t")
        if lineno == 1 and cells[0].strip().lower() in _QUERY_ID_COLUMNS:
            continue  # the header line
        where = f"{path}:{lineno}"
        if len(cells) != 3:
            raise EvalDataError(f"{where}: expected 3 tab-separated columns (query-id, "
                                f"corpus-id, score), got {len(cells)}")
        query_id, doc_id, score = (cell.strip() for cell in cells)
        qrels.setdefault(query_id, {})[doc_id] = _grade(score, where)
    return qrels


def _grade(value: Any, where: str) -> int:
    """An integer relevance grade from an int, an integral float or such a string."""
    if isinstance(value, bool):
        raise EvalDataError(f"{where}: relevance grade must be an integer, got {value!r}")
    try:
        number = float(value) if isinstance(value, str) else value
        if not isinstance(number, (int, float)) and hasattr(number, "item"):
            number = number.item()  # numpy scalars
        if isinstance(number, float):
            if not (math.isfinite(number) and number.is_integer()):
                raise ValueError
            return int(number)
        if isinstance(number, int):
            return number
    except (TypeError, ValueError):
        pass
    raise EvalDataError(f"{where}: relevance grade must be an integer, got {value!r}")


def load_beir(path: str | Path, split: str = "test", *, only_judged: bool = True
              ) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, dict[str, int]]]:
    """Read a BEIR-layout folder: ``(corpus, queries, qrels)``.

    Files (each may instead be gzip-compressed with a ``.gz`` suffix):
    ``corpus.jsonl`` (``{"_id", "title", "text"}`` a line), ``queries.jsonl``
    (``{"_id", "text"}``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``
    with a header line).

    Args:
        path: the folder.
        split: which ``qrels/<split>.tsv`` to read.
        only_judged: keep only the queries with a judgment in this split, as BEIR's own
            loader does (a ``queries.jsonl`` often holds the queries of every split).

    Returns:
        corpus items ``{"_id", "text", "title"}``, query items ``{"_id", "text"}`` (both in
        file order, ids as strings) and qrels ``{query_id: {doc_id: grade}}``.

    Raises:
        EvalDataError: a missing folder or file (named), a malformed line (file and line
            number), a grade that is not an integer.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise EvalDataError(f"BEIR folder {folder} does not exist or is not a folder")
    corpus_path = _find(folder, "corpus.jsonl", "corpus")
    queries_path = _find(folder, "queries.jsonl", "queries")
    qrels_path = _find(folder / "qrels", f"{split}.tsv", f"qrels of split {split!r}")
    corpus = _read_jsonl(corpus_path, with_title=True)
    queries = _read_jsonl(queries_path, with_title=False)
    qrels = _read_qrels_tsv(qrels_path)
    if only_judged:
        queries = [query for query in queries if query["_id"] in qrels]
    return corpus, queries, qrels


# --------------------------------------------------------------------------- eval sets


def _loaded(module: str, cls: str, obj: Any) -> bool:
    """Whether ``obj`` is a ``module.cls`` without importing ``module``."""
    mod = sys.modules.get(module)
    kind = getattr(mod, cls, None) if mod is not None else None
    return isinstance(kind, type) and isinstance(obj, kind)


def _rows(data: Any, what: str) -> list[Mapping[str, Any]]:
    """Records of a list of dicts, a DataFrame or a datasets.Dataset."""
    if _loaded("pandas", "DataFrame", data):
        frame = data
        if not {"_id", "id"} & set(frame.columns) and frame.index.name in ("_id", "id"):
            frame = frame.reset_index()  # ids kept as the index
        records: list[Mapping[str, Any]] = frame.to_dict(orient="records")
        return records
    if _loaded("datasets", "Dataset", data):
        return list(data)
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise EvalDataError(f"{what} must be a list of dicts, a pandas DataFrame or a "
                            f"datasets.Dataset, got {type(data).__name__}")
    if isinstance(data, Mapping):
        # BEIR's GenericDataLoader shape: {id: {"text", "title"}} or {id: text}
        out: list[Mapping[str, Any]] = []
        for key, value in data.items():
            if isinstance(value, Mapping):
                out.append({"_id": key, **value})
            else:
                out.append({"_id": key, "text": value})
        return out
    rows: list[Mapping[str, Any]] = []
    for index, item in enumerate(data):
        if isinstance(item, (Document, Query)):
            rows.append({"_id": item.id, "text": item.text,
                         "title": getattr(item, "title", "")})
        elif isinstance(item, Mapping):
            rows.append(item)
        else:
            raise EvalDataError(f"{what}[{index}] must be a dict with '_id' and 'text', got "
                                f"{type(item).__name__}")
    return rows


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_id(value: Any, where: str) -> str:
    """An id as a string: strings as they are, integers (also numpy's, also integral floats
    from a DataFrame column with gaps) in decimal."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise EvalDataError(f"{where}: id must be a non-empty string or an integer, got "
                            f"{value!r}")
    return str(value)


def _records(data: Any, what: str, with_title: bool) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for index, row in enumerate(_rows(data, what)):
        where = f"{what}[{index}]"
        key = "_id" if "_id" in row else "id" if "id" in row else None
        if key is None:
            raise EvalDataError(f"{where} has no '_id' (or 'id'); columns: {sorted(row)}")
        item_id = _as_id(row[key], where)
        text = row.get("text")
        if not isinstance(text, str):
            raise EvalDataError(f"{where} (id {item_id!r}): 'text' must be a string, got "
                                f"{text!r}")
        title = row.get("title") if with_title else ""
        if _missing(title):
            title = ""
        if not isinstance(title, str):
            raise EvalDataError(f"{where} (id {item_id!r}): 'title' must be a string, got "
                                f"{title!r}")
        out.append((item_id, text, title))
    return out


def _named(ids: Iterable[str]) -> str:
    """'a', 'b', 'c' and 4 more."""
    ids = list(ids)
    shown = ", ".join(repr(i) for i in ids[:_NAMED])
    return shown if len(ids) <= _NAMED else f"{shown} and {len(ids) - _NAMED} more"


def _duplicates(ids: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    dup: dict[str, None] = {}
    for item_id in ids:
        if item_id in seen:
            dup[item_id] = None
        seen.add(item_id)
    return list(dup)


def _pick(columns: Iterable[str], names: Sequence[str], what: str) -> str:
    cols = list(columns)
    for name in names:
        if name in cols:
            return name
    raise EvalDataError(f"qrels table has no {what} column (one of {list(names)}); columns: "
                        f"{cols}")


def _qrels_dict(qrels: Any) -> dict[str, dict[str, int]]:
    """``{query_id: {doc_id: grade}}`` from that shape or a table of judgments."""
    if isinstance(qrels, Mapping):
        out: dict[str, dict[str, int]] = {}
        for query_id, judged in qrels.items():
            qid = _as_id(query_id, "qrels")
            if not isinstance(judged, Mapping):
                raise EvalDataError(f"qrels[{qid!r}] must be a dict {{doc_id: grade}}, got "
                                    f"{type(judged).__name__}")
            docs = out.setdefault(qid, {})
            for doc_id, grade in judged.items():
                docs[_as_id(doc_id, f"qrels[{qid!r}]")] = _grade(
                    grade, f"qrels[{qid!r}][{doc_id!r}]")
        return out
    rows = _rows(qrels, "qrels")
    if not rows:
        return {}
    columns = list(rows[0])
    qcol = _pick(columns, _QUERY_ID_COLUMNS, "query id")
    dcol = _pick(columns, _DOC_ID_COLUMNS, "document id")
    scol = _pick(columns, _SCORE_COLUMNS, "score")
    table: dict[str, dict[str, int]] = {}
    for index, row in enumerate(rows):
        where = f"qrels row {index}"
        qid = _as_id(row.get(qcol), where)
        table.setdefault(qid, {})[_as_id(row.get(dcol), where)] = _grade(row.get(scol), where)
    return table


def _answers_dict(answers: Any) -> dict[str, list[str]]:
    if not isinstance(answers, Mapping):
        rows = _rows(answers, "answers")
        mapping: dict[Any, Any] = {}
        for index, row in enumerate(rows):
            key = next((k for k in ("query-id", "query_id", "_id", "id") if k in row), None)
            value_key = next((k for k in ("answers", "answer") if k in row), None)
            if key is None or value_key is None:
                raise EvalDataError(f"answers[{index}] needs a query id ('query_id' or '_id') "
                                    f"and 'answers'; columns: {sorted(row)}")
            mapping[row[key]] = row[value_key]
        answers = mapping
    out: dict[str, list[str]] = {}
    for query_id, refs in answers.items():
        qid = _as_id(query_id, "answers")
        if isinstance(refs, str):
            refs = [refs]
        elif hasattr(refs, "tolist"):
            refs = refs.tolist()
        if not isinstance(refs, (list, tuple)) or not all(isinstance(r, str) for r in refs):
            raise EvalDataError(f"answers[{qid!r}] must be a string or a list of strings, got "
                                f"{refs!r}")
        if not refs:
            raise EvalDataError(f"answers[{qid!r}] is empty: give at least one reference or "
                                f"leave the query out")
        out[qid] = list(refs)
    return out


def eval_set(corpus: Any, queries: Any, qrels: Any = None, answers: Any = None) -> EvalSet:
    """Check and freeze the data of a RAG evaluation.

    Args:
        corpus: documents with ``_id`` (or ``id``), ``text`` and optional ``title``: a list
            of dicts (or :class:`Document`), a pandas DataFrame, a ``datasets.Dataset``, or
            BEIR's ``{doc_id: {"title", "text"}}``.
        queries: queries with ``_id`` (or ``id``) and ``text``, in the same forms (or
            ``{query_id: text}``).
        qrels: ``{query_id: {doc_id: grade}}``, or a table (DataFrame, Dataset, list of
            dicts) with query-id, corpus-id and score columns (``query-id``/``query_id``/
            ``qid``, ``corpus-id``/``corpus_id``/``doc_id``/``docid``,
            ``score``/``relevance``/``grade``). Judgments for queries not in ``queries`` are
            dropped (so a subset of the queries can be evaluated with the full qrels).
        answers: reference answers ``{query_id: [answer, ...]}`` (a single string is one
            answer), or a table with a query id column and ``answers``.

    Ids are compared as strings; integer ids become their decimal form.

    Raises:
        EvalDataError: naming the problem, before any work is done: an empty corpus or
            query set, duplicate ids, neither qrels nor answers, qrels where no query has a
            judgment, qrels naming documents not in the corpus, answers for unknown
            queries, malformed records.
    """
    docs = _records(corpus, "corpus", with_title=True)
    if not docs:
        raise EvalDataError("the corpus is empty: there is nothing to retrieve")
    qs = _records(queries, "queries", with_title=False)
    if not qs:
        raise EvalDataError("the query set is empty: there is nothing to evaluate")
    for what, items in (("corpus", docs), ("queries", qs)):
        dup = _duplicates([item[0] for item in items])
        if dup:
            raise EvalDataError(f"{what} has duplicate ids: {_named(dup)}")
    if qrels is None and answers is None:
        raise EvalDataError("give qrels (relevance judgments), answers (reference answers) "
                            "or both: there is nothing to score the runs against")
    query_ids = [item[0] for item in qs]
    known_queries = set(query_ids)
    judged: dict[str, dict[str, int]] = {}
    if qrels is not None:
        table = _qrels_dict(qrels)
        judged = {qid: docs_ for qid, docs_ in table.items()
                  if qid in known_queries and docs_}
        if not judged:
            sample = _named(list(table)) if table else "none"
            raise EvalDataError(f"qrels were given but no query of the {len(qs)} has a "
                                f"judgment (query ids in the qrels: {sample}; in the "
                                f"queries: {_named(query_ids)})")
        doc_ids = {item[0] for item in docs}
        unknown = sorted({doc_id for docs_ in judged.values() for doc_id in docs_
                          if doc_id not in doc_ids})
        if unknown:
            raise EvalDataError(f"qrels name {len(unknown)} document id(s) not in the corpus: "
                                f"{_named(unknown)}")
    refs: dict[str, list[str]] | None = None
    if answers is not None:
        refs = _answers_dict(answers)
        stray = [qid for qid in refs if qid not in known_queries]
        if stray:
            raise EvalDataError(f"answers given for {len(stray)} query id(s) not in the "
                                f"queries: {_named(stray)}")
    return EvalSet(
        corpus=[Document(id=i, text=text, title=title) for i, text, title in docs],
        queries=[Query(id=i, text=text) for i, text, _ in qs],
        qrels={qid: judged[qid] for qid in query_ids if qid in judged},
        answers=refs,
    )
