"""The Run: what ``runfleet.init()`` returns and ``runfleet.log()`` writes to."""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from runfleet.artifacts import Artifact, save_artifact, use_artifact
from runfleet.artifacts.artifact import as_artifact
from runfleet.home import Home
from runfleet.sinks.fanout import RunSinks, sink_timeout
from runfleet.store.base import AlertRow, RunStatus
from runfleet.tracking.buffer import Block
from runfleet.tracking.config import Config
from runfleet.tracking.summary import MetricDefinition, Summary, parse_summary_modes
from runfleet.tracking.text import check_text, escape_surrogates
from runfleet.tracking.urls import run_url
from runfleet.tracking.values import NUMERIC_TYPES, check_keys, normalize_dict, normalize_value
from runfleet.tracking.writer import WAKE_AT_RECORDS, RunTarget, Writer

logger = logging.getLogger("runfleet")
_now = time.time

ALERT_LEVELS = ("info", "warn", "error")


class Run:
    """A tracked run. Create it with :func:`runfleet.init`; log with :meth:`log`.

    Attributes: ``id``, ``name``, ``project``, ``group``, ``tags``, ``notes``, ``config``
    (:class:`Config`), ``summary`` (:class:`Summary`), ``step`` (next auto step), ``dir``.

    Example:
        >>> import runfleet
        >>> with runfleet.init(project="doc", dir="/tmp/rf-doc", config={"lr": 0.1}) as run:
        ...     run.log({"loss": 1.0})
    """

    def __init__(self, *, home: Home, writer: Writer, rid: int, id: str, name: str,
                 project: str, group: str | None, tags: list[str], notes: str | None,
                 config: Config, summary: Summary, metadata: dict[str, Any], step: int,
                 on_finish: Any = None, sinks: RunSinks | None = None,
                 wait_sinks: bool = True) -> None:
        self._home = home
        self._writer = writer
        self._rid = rid
        self.id = id
        self._name = name
        self.project = project
        self.group = group
        self._tags = list(tags)
        self._notes = notes
        self.config = config
        self.summary = summary
        self._step = step
        self._finished = False
        self._on_finish = on_finish
        self._sinks = sinks
        self._wait_sinks = wait_sinks
        self._target = RunTarget(rid=rid, project=project, run_id=id, summary=summary,
                                 metadata=metadata)
        self._monitor: Any = None
        self.start_time = time.time()
        self._buffer = self._target.buffer
        writer.add_target(self._target)

    # -- properties ------------------------------------------------------------------------
    @property
    def dir(self) -> str:
        """The home directory this run is stored in."""
        return str(self._home.root)

    @property
    def step(self) -> int:
        """The step the next ``log()`` without ``step=`` will use."""
        return self._step

    @property
    def name(self) -> str:
        """The run's display name (settable)."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = check_text("run name", str(value))
        self._writer.update_run(self._rid, name=self._name)

    @property
    def tags(self) -> tuple[str, ...]:
        """The run's tags (settable with a list)."""
        return tuple(self._tags)

    @tags.setter
    def tags(self, value: Any) -> None:
        self._tags = [check_text(f"tag {t!r}", str(t)) for t in value]
        self._writer.update_run(self._rid, tags=self._tags)

    @property
    def notes(self) -> str | None:
        """Free-text notes (settable)."""
        return self._notes

    @notes.setter
    def notes(self, value: str | None) -> None:
        if value is not None:
            check_text("notes", str(value))
        self._notes = value
        self._writer.update_run(self._rid, notes=value)

    @property
    def finished(self) -> bool:
        """True once :meth:`finish` ran."""
        return self._finished

    @property
    def url(self) -> str:
        """The run's page in the dashboard ``runfleet show`` serves
        (``http://127.0.0.1:7760/?project=<project>&run=<id>`` by default;
        ``RUNFLEET_DASHBOARD_URL`` names another address)."""
        return run_url(self.project, self.id)

    @property
    def path(self) -> str:
        """``project/id``, the address ``Api().run()`` accepts."""
        return f"{self.project}/{self.id}"

    # -- logging -----------------------------------------------------------------------------
    def log(self, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None) -> None:
        """Log a dict of metrics at ``step`` (default: the next step).

        Values: int, float (NaN and infinities included), bool, str, numpy/torch scalars,
        :class:`Image`, :class:`Table`, :class:`Histogram`; nested dicts (at most 100
        levels) flatten to ``outer.inner``. Without ``step`` the values go to the current
        step, which then advances (``commit=False`` keeps it open for the next call). With
        ``step=s`` (as in wandb) the values go to step ``s`` and ``s`` stays open: a later
        call without ``step`` lands there too, until a higher step or ``commit=True``. Never
        blocks on disk; raises ``TypeError`` naming the key for a value it cannot store
        (text, keys included, holding a lone surrogate such as ``"\\ud800"`` is refused
        too).
        """
        if self._finished:
            raise RuntimeError(f"run {self.id} is finished; start a new one with runfleet.init()")
        if type(data) is not dict and not isinstance(data, Mapping):
            raise TypeError(
                f"log() takes a dict of metrics, got {type(data).__name__}: {data!r:.60}")
        clean: Mapping[str, Any] = data
        for k, v in data.items():  # hot path: plain str keys and plain numeric values
            if type(k) is not str or type(v) not in NUMERIC_TYPES:
                clean = normalize_dict(data)  # text is checked there (lone surrogates)
                break
        if step is None:
            at = self._step
            next_step = at + 1 if commit is not False else at
        else:
            # wandb semantics: an explicit step stays open for later calls without a step
            # until a higher step or commit=True; an earlier step is kept (never dropped).
            at = _as_step(step)
            next_step = max(self._step, at + 1) if commit else max(self._step, at)
        if not clean:
            self._step = next_step
            return
        # PointBuffer.add, inlined: this is the hot path of every training loop.
        buf = self._buffer
        keys = tuple(clean)
        now = _now()
        with buf.lock:
            block = buf.blocks.get(keys)
            if block is None:  # a key tuple new since the last flush: check its keys once
                check_keys(keys)  # raises before anything (the step included) changed
                block = buf.blocks[keys] = Block(len(keys))
            self._step = next_step
            block.seq.append(buf.seq)
            buf.seq += 1
            block.steps.append(at)
            block.times.append(now)
            for col, value in zip(block.cols, clean.values()):
                col.append(value)
            pending = buf.seq - buf.taken_seq
        if self._sinks is not None:
            self._sinks.log(at, now, clean)
        if pending >= WAKE_AT_RECORDS:
            self._writer.wake()

    def _log_system(self, index: int, data: dict[str, Any]) -> None:
        """System-metric samples use their own step (sample index) under ``system/``."""
        if not self._finished:
            self._buffer.add(tuple(data), index, time.time(), data.values())

    def define_metric(self, name: str, step_metric: str | None = None,
                      summary: str | None = None, goal: str | None = None,
                      hidden: bool = False, step_sync: bool | None = None,
                      overwrite: bool | None = None) -> MetricDefinition:
        """Declare how a metric (or glob pattern such as ``"eval/*"``) is summarised and plotted.

        ``step_metric`` names the metric used as its x-axis; ``summary`` is ``min``,
        ``max``, ``mean``, ``last``, ``first`` or ``none`` (comma-separated for several);
        ``goal`` is ``minimize`` or ``maximize``. ``step_sync`` and ``overwrite`` are
        accepted for wandb compatibility.
        """
        if not isinstance(name, str) or not name:
            raise TypeError("define_metric() needs a metric name or glob pattern (str)")
        if goal is not None and goal not in ("minimize", "maximize"):
            raise ValueError(f"goal must be 'minimize' or 'maximize', got {goal!r}")
        definition = MetricDefinition(pattern=name, step_metric=step_metric,
                                      summary=parse_summary_modes(summary), goal=goal,
                                      hidden=hidden)
        self.summary.define(definition)
        with self._target.lock:
            defs = self._target.metadata.setdefault("metrics", [])
            defs.append(definition.to_json())
            self._target.metadata_dirty = True
        return definition

    def alert(self, title: str, text: str, level: Any = "info",
              wait_duration: Any = None) -> None:
        """Record an alert on the run (also printed through the ``runfleet`` logger).

        ``level`` is ``info``, ``warn`` or ``error`` (wandb's ``AlertLevel`` works too).
        A title or text holding a lone surrogate raises ``TypeError``.
        """
        lvl = str(getattr(level, "value", level)).lower()
        lvl = {"warning": "warn", "critical": "error"}.get(lvl, lvl)
        if lvl not in ALERT_LEVELS:
            raise ValueError(f"alert level must be one of {ALERT_LEVELS}, got {level!r}")
        title = check_text("alert title", str(title))
        text = check_text("alert text", str(text))
        self._record_alert(title, text, lvl)
        py_level = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}[lvl]
        logger.log(py_level, "alert on run %s: %s: %s", self.name, title, text)

    def _record_alert(self, title: str, text: str, lvl: str) -> None:
        self._writer.alert(AlertRow(self._rid, title, text, lvl, self._step, time.time()))

    def finish(self, exit_code: int | None = None, quiet: bool | None = None,
               status: str | None = None) -> None:
        """Flush everything and mark the run completed (or failed with a non-zero code)."""
        if self._finished:
            return
        self._finished = True
        if self._monitor is not None:
            self._monitor.stop()
        final = status or (RunStatus.FAILED if exit_code not in (None, 0) else RunStatus.COMPLETED)
        self._writer.update_run(self._rid, status=final, finished=time.time(),
                                heartbeat=time.time())
        self._writer.flush()
        self._writer.remove_target(self._rid)
        if self._sinks is not None:
            self._sinks.finish(final)
            if self._wait_sinks:
                if not self._sinks.flush(sink_timeout()):
                    logger.warning("run %s: a tracking sink did not take everything within "
                                   "%s s; runfleet's store has it all", self.name,
                                   sink_timeout())
                self._writer.flush()  # sink failures noted meanwhile are alerts on the run
        if self._on_finish is not None:
            self._on_finish(self)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything logged or changed before this call is in the store (or,
        if the store cannot be written, in a spill file); False if ``timeout`` passed first.

        ``log()`` returns at once and a background thread writes every 0.5 s; call this
        when another process must see the data now (the engine does before it marks an op
        applied).
        """
        return self._writer.flush(timeout)

    def set_status(self, status: str) -> None:
        """Record a status change without finishing (used by the engine: pending, running,
        stopped ...)."""
        self._writer.update_run(self._rid, status=status)
        if self._sinks is not None:
            if self._finished:  # e.g. a finished run deleted: the sinks end it again
                self._sinks.finish_again(status)
            else:
                self._sinks.set_status(status)

    @property
    def sinks(self) -> tuple[Any, ...]:
        """The tracking sinks this run is forwarded to (besides runfleet's store)."""
        return tuple(ch.sink for ch in self._sinks.channels) if self._sinks else ()

    def end_sinks(self, status: str) -> None:
        """End the run in its sinks with ``status`` without finishing it here (the engine
        uses this for runs left stopped, which can be resumed later)."""
        if self._sinks is not None and not self._finished:
            self._sinks.finish(status)

    def set_metadata(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` in the run's metadata (persisted at the next flush)."""
        with self._target.lock:
            self._target.metadata[key] = value
            self._target.metadata_dirty = True

    def fail(self, message: str) -> None:
        """Record a failure (as an error alert with ``message``) and finish as failed."""
        if self._finished:
            return
        # the whole message (a traceback) is stored; the log gets its last line only, since
        # Python prints the traceback of an uncaught exception itself (once is enough)
        text = escape_surrogates(message)
        self._record_alert("run failed", text, "error")
        last = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "")
        logger.error("run %s failed: %s (the traceback is stored as the run's alert)",
                     self.name, last.strip())
        self.finish(status=RunStatus.FAILED)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            self.fail("".join(traceback.format_exception(exc_type, exc, tb)))
        else:
            self.finish()

    def __repr__(self) -> str:
        return f"<Run {self.project}/{self.id} name={self._name!r}>"

    # -- artefacts --------------------------------------------------------------------------------
    def log_artifact(self, artifact_or_path: Artifact | str | os.PathLike[str],
                     name: str | None = None, type: str | None = None,
                     aliases: list[str] | None = None) -> Artifact:
        """Store an :class:`Artifact` (or the file or folder at a path, named ``name`` or
        after the path, of ``type`` or ``"unspecified"``) as logged by this run.

        Files are stored once each by content under the home. The artefact gets the next
        version (``v0``, ``v1`` ...) of its name in this project and the ``latest`` alias,
        unless a version with exactly the same files exists: that one is returned (and
        linked to this run). Each of ``aliases`` moves to the returned version. Returns
        the logged artefact (``.version``, ``.aliases``, ``.download()``).
        """
        if self._finished:
            raise RuntimeError(f"run {self.id} is finished; log artefacts before finish()")
        art = as_artifact(artifact_or_path, name, type)
        return save_artifact(self._writer.store, self._home, self.project, art,
                             run=self._rid, aliases=aliases or ())

    def use_artifact(self, artifact_or_name: Artifact | str, type: str | None = None,
                     aliases: list[str] | None = None) -> Artifact:
        """The stored artefact version ``"name"``/``"name:latest"``, ``"name:v1"``,
        ``"name:<alias>"`` or ``"other-project/name:v0"``, recorded as used by this run
        (lineage). Its :meth:`Artifact.download` and :meth:`Artifact.file` give local
        paths. Raises :class:`runfleet.errors.ArtifactNotFoundError` naming the versions
        there are, and ``ValueError`` if ``type`` is given and differs. ``aliases`` is
        accepted for wandb compatibility and ignored.
        """
        return use_artifact(self._writer.store, self._home, self.project, artifact_or_name,
                            type=type, run=self._rid)

    # -- wandb niceties --------------------------------------------------------------------------
    def watch(self, *args: Any, **kwargs: Any) -> None:
        """Accepted for wandb compatibility; gradients are not tracked (no-op)."""

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Accepted for wandb compatibility; files are not uploaded anywhere (no-op)."""

    def mark_preempting(self) -> None:
        """Accepted for wandb compatibility (no-op)."""

    def _label(self, code: str | None = None, repo: str | None = None,
               code_version: str | None = None, **kwargs: Any) -> None:
        """What wandb's integrations call to say which library drives the run (e.g.
        transformers' ``code="transformers_trainer"``): kept in the run's metadata under
        ``labels``."""
        labels = {k: str(v) for k, v in {"code": code, "repo": repo,
                                          "code_version": code_version, **kwargs}.items()
                  if v is not None}
        if labels:
            with self._target.lock:
                merged = {**self._target.metadata.get("labels", {}), **labels}
            self.set_metadata("labels", merged)


def _as_step(step: Any) -> int:
    if isinstance(step, bool):
        raise TypeError("step must be an int, got bool")
    value: Any
    if isinstance(step, int):
        value = int(step)
    else:
        try:
            value = normalize_value("step", step)
        except TypeError:
            raise TypeError(f"step must be an int, got {type(step).__name__}") from None
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            value = int(value)
        if type(value) is not int:
            raise TypeError(f"step must be an int, got {step!r}")
    if not 0 <= value < 2**63:
        raise ValueError(f"step must be between 0 and 2**63 - 1, got {value}")
    return value
