"""What every worker of a RAG experiment gets once: the eval set, where stage artefacts
are cached, and the experiment's name (which tags the stage log)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RagInputs:
    """The data side of :meth:`runfleet.Experiment.run_evals`, as workers receive it.

    ``evalset`` is a :class:`runfleet.rag.data.EvalSet`; its queries are the examples the
    engine shuffles and cuts into shards, so ``len()`` is the number of queries.
    """

    evalset: Any
    cache_dir: Path | None
    experiment: str = ""
    share: Any = None  # how workers away from cache_dir reach it (see rag.stages)

    def shared_through(self, make_share: Callable[[Path], Any]) -> RagInputs:
        """A copy whose workers reach the stage folder through ``make_share(cache_dir)``
        (executors whose workers run on other machines call this)."""
        if self.cache_dir is None:
            return self
        return dataclasses.replace(self, share=make_share(self.cache_dir))

    def __len__(self) -> int:
        return len(self.evalset.queries)
