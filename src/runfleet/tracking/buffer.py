"""Per-run buffers of logged points, kept as columns until the writer takes them.

``Run.log`` appends each value to the column of its key inside a block keyed by the
payload's key tuple (a training loop logs the same keys every step, so there is usually one
block). Nothing it keeps per call is a garbage-collected container (floats, ints and strings
are not tracked), so logging a million points triggers no collection of the user's heap,
and the writer turns each column into a numpy array in one call.
"""

from __future__ import annotations

import threading
from typing import Any


class Block:
    """Columns of the points logged with one key tuple: sequence numbers, steps, times and
    one value list per key, all of equal length."""

    __slots__ = ("cols", "seq", "steps", "times")

    def __init__(self, width: int) -> None:
        self.seq: list[int] = []
        self.steps: list[int] = []
        self.times: list[float] = []
        self.cols: list[list[Any]] = [[] for _ in range(width)]


class PointBuffer:
    """The points one run logged since the writer last took them.

    ``seq`` numbers every ``log()`` call, so the writer can restore logging order across
    blocks. ``lock`` guards ``blocks``; :meth:`take` swaps in an empty dict.
    """

    __slots__ = ("blocks", "lock", "seq", "taken_seq")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.blocks: dict[tuple[str, ...], Block] = {}
        self.seq = 0
        self.taken_seq = 0

    def add(self, keys: tuple[str, ...], step: int, when: float, values: Any) -> int:
        """Append one payload (``values`` in the order of ``keys``); return points pending."""
        with self.lock:
            block = self.blocks.get(keys)
            if block is None:
                block = self.blocks[keys] = Block(len(keys))
            block.seq.append(self.seq)
            self.seq += 1
            block.steps.append(step)
            block.times.append(when)
            for col, value in zip(block.cols, values):
                col.append(value)
            return self.seq - self.taken_seq

    def take(self) -> dict[tuple[str, ...], Block]:
        """Remove and return everything buffered so far."""
        with self.lock:
            blocks, self.blocks = self.blocks, {}
            self.taken_seq = self.seq
        return blocks
