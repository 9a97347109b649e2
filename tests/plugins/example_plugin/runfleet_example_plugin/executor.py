"""An executor from outside runfleet: local worker processes under its own name."""

from __future__ import annotations

from runfleet.engine.local import LocalExecutor


class ExampleExecutor(LocalExecutor):
    """:class:`~runfleet.engine.local.LocalExecutor` that says it is the example's."""

    def describe(self) -> str:
        return f"{self.size} example worker(s)"
