"""The run returned by ``init(mode="disabled")``: same surface, does nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from runfleet.artifacts.artifact import as_artifact
from runfleet.errors import ArtifactNotFoundError
from runfleet.tracking.config import Config
from runfleet.tracking.summary import Summary


class DisabledRun:
    """A no-op stand-in for :class:`Run`; ``config`` and ``summary`` still hold values."""

    def __init__(self, project: str, name: str | None, config: Any,
                 on_finish: Callable[[DisabledRun], None] | None = None) -> None:
        self.id = "disabled"
        self.name = name or "disabled"
        self.project = project
        self.group: str | None = None
        self.tags: tuple[str, ...] = ()
        self.notes: str | None = None
        self.config = Config(config) if config is not None else Config()
        self.summary = Summary()
        self.step = 0
        self.dir = ""
        self.url = None
        self.path = f"{project}/disabled"
        self.finished = False
        self._on_finish = on_finish

    def log(self, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None) -> None:
        """Does nothing."""

    def define_metric(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Does nothing."""

    def alert(self, title: str, text: str, level: Any = "info", wait_duration: Any = None
              ) -> None:
        """Does nothing."""

    def finish(self, exit_code: int | None = None, quiet: bool | None = None,
               status: str | None = None) -> None:
        """Marks the stand-in finished; nothing is written."""
        self.finished = True
        if self._on_finish is not None:
            self._on_finish(self)

    def log_artifact(self, artifact_or_path: Any, name: str | None = None,
                     type: str | None = None, aliases: list[str] | None = None) -> Any:
        """Stores nothing; returns the artefact (built from the path if one is given)."""
        return as_artifact(artifact_or_path, name, type)

    def use_artifact(self, artifact_or_name: Any, type: str | None = None,
                     aliases: list[str] | None = None) -> Any:
        """Raises: a disabled run reads no store, so it has no artefacts to use."""
        raise ArtifactNotFoundError(
            f"run is disabled (mode='disabled'), so artefact {artifact_or_name!r} cannot be "
            f"read; use a run in offline or online mode to use artefacts")

    def watch(self, *args: Any, **kwargs: Any) -> None:
        """Does nothing."""

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Does nothing."""

    def _label(self, *args: Any, **kwargs: Any) -> None:
        """Does nothing (wandb integrations label their runs)."""

    def __enter__(self) -> DisabledRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish()
