"""A live per-run table in the terminal or notebook (rich): run, key config values,
chunk k/N, step, latest loss, status."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

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
    """Renders the engine's runs; ``update`` is cheap and rate-limited."""

    def __init__(self, title: str, configs: Sequence[dict[str, Any]], enabled: bool = True,
                 console: Console | None = None) -> None:
        self.title = title
        self.keys = varying_keys(configs)
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._live: Live | None = None
        self._last = 0.0

    def table(self, rows: Sequence[dict[str, Any]]) -> Table:
        """The table for ``rows`` (dicts with name, config, chunks_done, num_chunks, step,
        total_steps, loss, status)."""
        table = Table(title=self.title, title_justify="left")
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
        return table

    def start(self, rows: Sequence[dict[str, Any]]) -> None:
        """Begin live display."""
        if self.enabled:
            self._live = Live(self.table(rows), console=self.console, refresh_per_second=4,
                              transient=False)
            self._live.start()

    def update(self, rows: Sequence[dict[str, Any]], force: bool = False) -> None:
        """Redraw (at most 4 times a second unless ``force``)."""
        now = time.monotonic()
        if self._live is not None and (force or now - self._last > 0.25):
            self._last = now
            self._live.update(self.table(rows))

    def stop(self, rows: Sequence[dict[str, Any]]) -> None:
        """Final redraw and end of live display."""
        if self._live is not None:
            self._live.update(self.table(rows))
            self._live.stop()
            self._live = None
