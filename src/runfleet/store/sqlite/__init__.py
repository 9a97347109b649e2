"""The SQLite store: one WAL database per home, shared by any number of processes.

Modules, one job each:

* ``store``: :class:`SQLiteStore`, the :class:`~runfleet.store.base.Store` interface as a
  thin facade over the modules below.
* ``connection``: opening and validating the file, pragmas, transactions, busy detection,
  the database id.
* ``runs``: the ``projects`` and ``runs`` tables.
* ``series``: the ``metric_keys`` and ``segments`` tables (points, decoding).
* ``summaries``: the ``segment_summaries`` table and the chart reads built on it.
* ``events``: the ``media`` and ``alerts`` tables.
* ``ops``: the ``ops`` table (control ops).
* ``artifacts``: the ``artifact_*`` tables (artefact versions, aliases, lineage).
* ``batch``: the write path (one batch, one transaction) and ``replayed_spills``.
"""

from runfleet.store.sqlite.connection import BUSY_TIMEOUT_S, check_database_file
from runfleet.store.sqlite.series import SEGMENT_POINTS, decode_segments
from runfleet.store.sqlite.store import SQLiteStore

__all__ = [
    "BUSY_TIMEOUT_S",
    "SEGMENT_POINTS",
    "SQLiteStore",
    "check_database_file",
    "decode_segments",
]
