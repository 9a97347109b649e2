"""Run filters written as text: ``FIELD<op>VALUE`` strings turned into the filter dict that
:meth:`runfleet.Api.runs` takes.

The CLI's ``--filter`` options and the dashboard's ``filter`` parameters are both read
here; a malformed one raises :class:`FilterError` (the CLI answers it as a usage error, the
dashboard with a 400).

Example:
    >>> parse_filters(["config.lr=0.001", "summary.acc>=0.9"])
    {'config.lr': 0.001, 'summary.acc': {'$gte': 0.9}}
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

_FILTER_RE = re.compile(r"^(?P<field>[^=!<>~]+?)\s*(?P<op>!=|>=|<=|=|>|<|~)(?P<value>.*)$")
_FILTER_OPS = {"=": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte",
               "~": "$regex"}


class FilterError(ValueError):
    """A filter string is not ``FIELD<op>VALUE``; the message quotes it."""


def parse_filters(specs: Sequence[str]) -> dict[str, Any]:
    """Turn ``FIELD<op>VALUE`` strings into an :meth:`runfleet.Api.runs` filter dict.

    ``op`` is one of ``= != > >= < <=`` or ``~`` (regex). Values are read as JSON when they
    parse (``0.001``, ``true``), else kept as text; a regex is always text. Several
    conditions on one field are combined; a single ``=`` stays a plain value (which also
    matches one of a run's tags). Raises :class:`FilterError` for a string without an
    operator.

    Example:
        >>> parse_filters(["config.lr=0.001", "summary.acc>=0.9"])
        {'config.lr': 0.001, 'summary.acc': {'$gte': 0.9}}
    """
    conditions: dict[str, list[tuple[str, Any]]] = {}
    for spec in specs:
        m = _FILTER_RE.match(spec)
        if m is None:
            raise FilterError(f"bad --filter {spec!r}: expected FIELD=VALUE "
                              f"(or != > >= < <= ~)")
        field, op, text = m["field"].strip(), m["op"], m["value"].strip()
        value: Any = text
        if op != "~":
            try:
                value = json.loads(text)
            except ValueError:
                value = text
        conditions.setdefault(field, []).append((_FILTER_OPS[op], value))
    filters: dict[str, Any] = {}
    for field, conds in conditions.items():
        if len(conds) == 1 and conds[0][0] == "$eq":
            filters[field] = conds[0][1]  # plain equality also matches one of a run's tags
        else:
            filters[field] = {}
            for op, value in conds:
                filters[field][op] = value
    return filters
