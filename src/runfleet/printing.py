"""Tables a person reads, printed whole at any width and wherever the output goes.

rich fits a table to the console's width, cutting cells to ``ru…`` when they do not fit.
That width is a guess when the output is not a terminal (a pipe, a file, a CI log, a
notebook), and nothing is gained by cutting there: :func:`print_table` prints such output at
the table's natural width instead. On a terminal, cells fold onto more lines to fit (never an
ellipsis), and a terminal too narrow for even that gets one ``column: value`` block per row.

Example:
    >>> from rich.table import Table
    >>> table = Table("run", "loss")
    >>> table.add_row("brisk-river-1", "0.25")
    >>> print_table(table, title="results")  # doctest: +SKIP
"""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

# wide enough for any table a person would read; rich needs some upper bound to measure
_MEASURE_LIMIT = 10_000


def foldable(table: Table) -> Table:
    """``table`` with every column allowed to wrap, long words folded (never cut to ``…``);
    returned for chaining."""
    for column in table.columns:
        column.no_wrap = False
        column.overflow = "fold"
    return table


def natural_width(table: Table, console: Console) -> int:
    """The width ``table`` takes when nothing in it has to wrap."""
    options = console.options.update_width(_MEASURE_LIMIT)
    return Measurement.get(console, options, table).maximum


def unbroken_width(table: Table, console: Console) -> int:
    """The narrowest width at which no word of ``table`` (header or cell) has to be broken:
    each column as wide as its longest word, plus padding and borders."""
    options = console.options.update_width(_MEASURE_LIMIT)
    left, right = table.padding[3], table.padding[1]
    total = 0
    for column in table.columns:
        cells = [column.header, *column.cells]
        total += max(Measurement.get(console, options, cell).minimum for cell in cells)
        total += left + right
    if table.box is not None:
        total += len(table.columns) + 1 if table.show_edge else len(table.columns) - 1
    return total


def print_table(table: Table, console: Console | None = None, title: str | None = None) -> None:
    """Print ``table`` whole on ``console`` (default: a new stdout console), ``title`` (if
    any) on a line of its own above it after a blank line.

    On a terminal the cells fold to fit its width, or each row becomes a block of
    ``column: value`` lines when even folded cells would not fit; anywhere else the table is
    printed at its natural width, whatever the console's width says.
    """
    console = console or Console()
    foldable(table)
    if title:
        console.print()
        console.print(Text(title, style="bold"), soft_wrap=not console.is_terminal)
    if console.is_terminal:
        if unbroken_width(table, console) > console.width:
            print_records(table, console)
        else:
            console.print(table)
        return
    width = console.width
    console.width = max(width, natural_width(table, console))
    try:
        console.print(table)
    finally:
        console.width = width


def print_records(table: Table, console: Console) -> None:
    """Print ``table``'s rows as blocks of ``column: value`` lines (for very narrow
    terminals), soft-wrapped so that nothing is cut."""
    headers = [Text.from_markup(c.header) if isinstance(c.header, str) else Text(str(c.header))
               for c in table.columns]
    for index in range(table.row_count):
        if index:
            console.print()
        for header, column in zip(headers, table.columns):
            cells = list(column.cells)
            cell = cells[index] if index < len(cells) else ""
            value = Text.from_markup(cell) if isinstance(cell, str) else Text(str(cell))
            console.print(Text.assemble((header.plain, "bold"), ": ", value), soft_wrap=True)
