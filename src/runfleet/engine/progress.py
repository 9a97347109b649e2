"""A live per-run table in the terminal or notebook (rich): run, key config values,
chunk k/N, step, latest loss, status.

Where it goes decides how it is drawn: on a terminal it is redrawn in place (rich's
``Live``); in a notebook it is one output refreshed in place (IPython's display handle, no
widget library needed); anywhere else (a pipe, a file, a CI log) it is printed as plain
lines, one per run whenever its chunk or status changes, then once whole at the end, so
that what the user's own code prints in between stays in the output, in order.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from runfleet.printing import foldable, natural_width, print_table

_STATUS_STYLE = {"pending": "dim", "running": "cyan", "completed": "green", "failed": "red",
                 "stopped": "yellow", "deleted": "dim strike"}


def varying_keys(configs: Sequence[dict[str, Any]], limit: int = 4) -> list[str]:
    """Config keys whose values differ between runs (the ones worth showing); a key that
    only varies together with one already chosen (``lora_alpha`` with ``r``) is left out."""
    keys: list[str] = []
    seen: set[tuple[int, ...]] = set()
    for key in dict.fromkeys(k for c in configs for k in c):
        values = [repr(c.get(key)) for c in configs]
        if len(set(values)) < 2:
            continue
        first: dict[str, int] = {}
        pattern = tuple(first.setdefault(v, len(first)) for v in values)
        if pattern in seen:
            continue
        seen.add(pattern)
        keys.append(key)
    return keys[:limit]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


class ProgressTable:
    """Renders the engine's runs; ``update`` is cheap (rate-limited where it redraws).

    ``mode`` is ``"live"`` (redrawn in place on a terminal), ``"notebook"`` (a refreshed
    output in Jupyter) or ``"lines"`` (plain lines, anywhere else); None picks it from the
    console.
    """

    def __init__(self, title: str, configs: Sequence[dict[str, Any]], enabled: bool = True,
                 console: Console | None = None, mode: str | None = None) -> None:
        self.title = title
        self.keys = varying_keys(configs)
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.mode = mode or _mode(self.console)
        if self.mode not in ("live", "notebook", "lines"):
            raise ValueError(f"mode must be live, notebook or lines, got {mode!r}")
        self._live: Live | None = None
        self._handle: Any = None
        self._printed: dict[str, tuple[Any, ...]] = {}  # lines mode: last line's state
        self._started = False
        self._last = 0.0

    def table(self, rows: Sequence[dict[str, Any]], title: bool = True) -> Table:
        """The table for ``rows`` (dicts with name, config, chunks_done, num_chunks, step,
        total_steps, loss, status)."""
        table = Table(title=self.title if title else None, title_justify="left")
        table.add_column("run")
        for key in self.keys:
            table.add_column(key.rsplit(".", 1)[-1], justify="right")
        table.add_column("chunk", justify="right")
        table.add_column("step", justify="right")
        table.add_column("loss", justify="right")
        table.add_column("status")
        for r in rows:
            status = r["status"]
            table.add_row(
                r["name"], *(_fmt(r["config"].get(k, "")) for k in self.keys),
                f"{r['chunks_done']}/{r['num_chunks']}", f"{r['step']}/{r['total_steps']}",
                _fmt(r["loss"]) if r["loss"] is not None else "-",
                f"[{_STATUS_STYLE.get(status, '')}]{status}[/]")
        return foldable(table)  # a narrow terminal folds cells, never cuts them to "…"

    def line(self, row: dict[str, Any]) -> str:
        """One run's state as a plain line (lines mode)."""
        config = " ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(row['config'].get(k, ''))}"
                          for k in self.keys)
        loss = _fmt(row["loss"]) if row["loss"] is not None else "-"
        return "  ".join(part for part in (
            row["name"], config, f"chunk {row['chunks_done']}/{row['num_chunks']}",
            f"step {row['step']}/{row['total_steps']}", f"loss {loss}", str(row["status"]))
            if part)

    def start(self, rows: Sequence[dict[str, Any]]) -> None:
        """Begin the display."""
        if not self.enabled:
            return
        self._started = True
        if self.mode == "live":
            self._live = Live(self.table(rows), console=self.console, refresh_per_second=4,
                              transient=False)
            self._live.start()
        elif self.mode == "notebook":
            from IPython.display import display

            self._handle = display(self._bundle(rows), raw=True, display_id=True)
        else:
            self._say(self.title)
            self._print_changes(rows)

    def update(self, rows: Sequence[dict[str, Any]], force: bool = False) -> None:
        """Redraw (at most 4 times a second unless ``force``); in lines mode, print a line
        for each run whose chunk or status changed."""
        if not self._started:
            return
        if self.mode == "lines":
            self._print_changes(rows)
            return
        now = time.monotonic()
        if force or now - self._last > 0.25:
            self._last = now
            self._redraw(rows)

    def stop(self, rows: Sequence[dict[str, Any]]) -> None:
        """Final redraw and end of the display (lines mode: the last changes, then the whole
        table once)."""
        if not self._started:
            return
        self._started = False
        if self.mode == "lines":
            self._print_changes(rows)
            print_table(self.table(rows, title=False), self.console, title=self.title)
            return
        self._redraw(rows)
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._handle = None

    def _redraw(self, rows: Sequence[dict[str, Any]]) -> None:
        if self._live is not None:
            self._live.update(self.table(rows))
        elif self._handle is not None:
            self._handle.update(self._bundle(rows), raw=True)

    def _print_changes(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            state = (row["chunks_done"], str(row["status"]))
            if self._printed.get(row["name"]) != state:
                self._printed[row["name"]] = state
                self._say(self.line(row))

    def _say(self, text: str) -> None:
        # what the user's code printed before this line goes out before it
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stdout.flush()
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _bundle(self, rows: Sequence[dict[str, Any]]) -> dict[str, str]:
        """The table as a notebook output: text/plain and text/html, at its full width."""
        table = self.table(rows)
        probe = Console(file=io.StringIO(), width=200)
        recorder = Console(file=io.StringIO(), record=True, force_terminal=False,
                           force_jupyter=False, width=natural_width(table, probe))
        recorder.print(table)
        return {"text/plain": recorder.export_text(clear=False),
                "text/html": recorder.export_html(inline_styles=True, code_format=_HTML)}


_HTML = ('<pre style="white-space:pre;overflow-x:auto;line-height:normal;'
         'font-family:Menlo,\'DejaVu Sans Mono\',consolas,\'Courier New\',monospace">'
         "{code}</pre>")


def _mode(console: Console) -> str:
    if console.is_jupyter:
        return "notebook"
    if console.is_terminal and not console.is_dumb_terminal:
        return "live"
    return "lines"
