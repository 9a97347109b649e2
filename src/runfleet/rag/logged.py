"""The keys an eval run logs, in one place: the rag backend writes them, the experiment's
inspection methods, the exports and the dashboard read them.

Per query (at step = the query's position in the experiment's shuffled order):
``query/<metric>`` and ``query/latency_ms/<stage>``. After each shard (at step = queries
done): ``eval/<metric>`` with ``_ci_low``/``_ci_high`` (fixed-n 95%) and ``_cs_low``/
``_cs_high`` (anytime-valid), latencies, counts, and two tables: :data:`RANKINGS` and
:data:`QUERIES`.
"""

PER_QUERY = "query/"
AGGREGATE = "eval/"
RANKINGS = "eval/rankings"  # table: query_id, doc_id, rank, score
QUERIES = "eval/queries"  # table: query_id, query_index, metrics..., passages, answer
JUDGED = "eval/queries_judged"  # how many queries retrieval metrics average over
ANSWERED = "eval/queries_with_answers"  # how many queries answer metrics average over
ANSWER_METRICS = ("exact_match", "f1", "rougeL", "bleu")
