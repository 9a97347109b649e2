"""``wandb.plot`` under :func:`runfleet.patch_wandb`: charts as tables with a chart spec.

Each function returns a :class:`runfleet.Table` holding the data to draw and, in its
``chart`` attribute, what to draw (``{"type": "line", "x": ..., "y": ..., "title": ...}``).
Logged with ``log({"my chart": wandb.plot.line(...)})`` it is stored as a table; the spec is
kept in the table's file and in its media metadata. The dashboard's run page draws the
chart from the spec, above the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runfleet.tracking.media import Table


def _chart(table: Table, kind: str, title: str, **fields: Any) -> Table:
    if not isinstance(table, Table):
        raise TypeError(f"wandb.plot.{kind}() needs a runfleet.Table (wandb.Table), got "
                        f"{type(table).__name__}")
    for role, column in fields.items():
        if column is not None and column not in table.columns:
            raise ValueError(f"wandb.plot.{kind}(): {role}={column!r} is not a column of the "
                             f"table (columns: {table.columns})")
    chart = Table(columns=list(table.columns), data=[list(r) for r in table.data])
    chart.chart = {"type": kind, "title": title,
                   **{k: v for k, v in fields.items() if v is not None}}
    return chart


def line(table: Table, x: str, y: str, stroke: str | None = None, title: str = "",
         split_table: bool = False) -> Table:
    """A line chart of column ``y`` against column ``x`` (``stroke``: a column whose values
    split the points into one line each)."""
    return _chart(table, "line", title, x=x, y=y, stroke=stroke)


def scatter(table: Table, x: str, y: str, title: str = "", split_table: bool = False
            ) -> Table:
    """A scatter plot of column ``y`` against column ``x``."""
    return _chart(table, "scatter", title, x=x, y=y)


def bar(table: Table, label: str, value: str, title: str = "", split_table: bool = False
        ) -> Table:
    """A bar chart: one bar per row, named by column ``label``, as tall as column ``value``."""
    return _chart(table, "bar", title, label=label, value=value)


def histogram(table: Table, value: str, title: str = "", split_table: bool = False) -> Table:
    """A histogram of column ``value``."""
    return _chart(table, "histogram", title, value=value)


def line_series(xs: Sequence[Any] | Sequence[Sequence[Any]], ys: Sequence[Sequence[Any]],
                keys: Sequence[str] | None = None, title: str = "", xname: str = "x",
                split_table: bool = False) -> Table:
    """Several lines in one chart: ``ys[i]`` against ``xs`` (or ``xs[i]``), named
    ``keys[i]``; stored in long form (columns ``lineKey``, ``x``... named by ``xname``,
    ``y``)."""
    names = list(keys) if keys is not None else [f"line_{i}" for i in range(len(ys))]
    if len(names) != len(ys):
        raise ValueError(f"line_series(): {len(names)} keys for {len(ys)} lines")
    shared = len(xs) > 0 and not isinstance(xs[0], (list, tuple)) and \
        getattr(xs[0], "ndim", 0) == 0
    rows: list[list[Any]] = []
    for i, (key, line_ys) in enumerate(zip(names, ys, strict=True)):
        line_xs = xs if shared else xs[i]
        if len(line_xs) != len(line_ys):
            raise ValueError(f"line_series(): line {key!r} has {len(line_ys)} y values for "
                             f"{len(line_xs)} x values")
        rows.extend([key, x, y] for x, y in zip(line_xs, line_ys, strict=True))
    table = Table(columns=["lineKey", xname, "y"], data=rows)
    return _chart(table, "line", title, x=xname, y="y", stroke="lineKey")


__all__ = ["bar", "histogram", "line", "line_series", "scatter"]
