"""TensorBoard sink: write runfleet runs as TensorBoard event files (``runfleet[tensorboard]``).

Only the ``tensorboard`` package is used (its event file writer and protos; neither torch nor
TensorFlow). Layout: ``<logdir>/<project>/<run name>_<run id>/events.out.tfevents.*``, where
``logdir`` defaults to ``<runfleet home>/tensorboard``. Path parts keep ASCII letters, digits,
``_ . -``; other characters (``/`` included) become ``_``, leading dots become ``_``, parts are
cut to 80 characters, and a project or run id that had to change gets ``-`` and 8 hex digits of
its SHA-1 appended so distinct names never share a folder (:func:`path_part`). The run id in
the folder name keeps runs with the same name apart; a resumed run appends a new event file to
its folder.

What is written, per run:

* every numeric value (numbers, bools as 1.0 / 0.0) as a scalar-plugin summary holding a
  ``DT_DOUBLE`` tensor, at the row's step and wall time, so float64 values (NaN and
  ±infinity included) round-trip exactly and TensorBoard's SCALARS tab shows them;
* every string value as a text-plugin summary under its key. A key keeps the kind it was
  first logged with in this process: values of the other kind (a string for a numeric key or
  a number for a text key), JSON-like values and media are left out and counted
  (:attr:`TensorBoardSink.left_out`, and the text ``runfleet/left_out`` at the end);
* the config plus lineage (``parent``, ``parent_step``) as an hparams-plugin
  ``session_start_info`` (trial id = the run id; values that are not bool/number/string are
  shown as JSON text) so the HPARAMS tab lists the run, and as JSON in the text summary
  ``runfleet/config``, written again on every :meth:`TensorBoardSink.update_config` (TensorBoard
  keeps the first hparams summary of a run folder, so the HPARAMS tab shows the config at the
  first start; ``runfleet/config`` holds every version);
* the run's identity (run id, name, group, tags, parent, parent_step) as JSON in the text
  summary ``runfleet/run``;
* each status as the text summary ``runfleet/status`` at the run's current (last logged)
  step, and at the end an hparams ``session_end_info`` (completed → success, failed →
  failure, other → unknown: the plugin has no "stopped").

Events are flushed every ``flush_secs`` seconds, on each status change, and when the run
finishes (its writer is closed then).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runfleet.errors import RunfleetError
from runfleet.sinks.base import Row, RunInfo, Sink, SinkRun, numeric

__all__ = ["TensorBoardSink", "path_part"]

TAG_CONFIG = "runfleet/config"
TAG_STATUS = "runfleet/status"
TAG_RUN = "runfleet/run"
TAG_LEFT_OUT = "runfleet/left_out"
_RESERVED = (TAG_CONFIG, TAG_STATUS, TAG_RUN, TAG_LEFT_OUT)
_MAX_PART = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_INSTALL_HINT = ("the TensorBoard sink needs the 'tensorboard' package: "
                 "pip install 'runfleet[tensorboard]'")
_SCALAR, _TEXT = "scalar", "text"


def path_part(text: str, unique: bool = True) -> str:
    """``text`` as one safe folder name (the rule is in the module docstring).

    With ``unique`` a name that had to change gets ``-`` and 8 hex digits of its SHA-1.

    Example:
        >>> path_part("my-project")
        'my-project'
        >>> path_part("../etc").startswith("___etc-")
        True
    """
    part = _UNSAFE.sub("_", text)
    stripped = part.lstrip(".")
    part = "_" * (len(part) - len(stripped)) + stripped
    part = part[:_MAX_PART] or "_"
    if unique and part != text:
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        part = f"{part}-{digest}"
    return part


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=False)


@dataclass
class _OpenRun:
    info: RunInfo
    path: Path
    writer: Any
    config: dict[str, Any]
    step: int = 0
    status: str = "running"
    left_out: int = 0
    kinds: dict[str, str] = field(default_factory=dict)
    described: set[str] = field(default_factory=set)  # tags whose metadata this file has


class TensorBoardSink(Sink):
    """Write runs as TensorBoard event files (see the module docstring for the layout).

    Args:
        logdir: Root folder of the event files; default ``<runfleet home>/tensorboard`` of
            each run (``RunInfo.home``, else the home runfleet resolves now).
        flush_secs: How often the event writers flush to disk on their own.

    Raises:
        ImportError: ``tensorboard`` is not installed (``pip install 'runfleet[tensorboard]'``).

    Example:
        >>> run = runfleet.init(project="p", sinks=["tensorboard"])   # doctest: +SKIP
        >>> # then: tensorboard --logdir ~/.runfleet/tensorboard
    """

    name = "tensorboard"

    def __init__(self, logdir: str | os.PathLike[str] | None = None,
                 flush_secs: float = 30.0) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError(_INSTALL_HINT)
        self.logdir = None if logdir is None else Path(logdir)
        self.flush_secs = flush_secs
        #: Values not written per run id (see the module docstring).
        self.left_out: dict[str, int] = {}
        self._open: dict[str, _OpenRun] = {}
        self._last_root: Path | None = None

    def __repr__(self) -> str:
        return f"TensorBoardSink(logdir={None if self.logdir is None else str(self.logdir)!r})"

    def settings(self) -> dict[str, Any]:
        """``{"logdir": ..., "flush_secs": ...}`` (logdir None: under the runfleet home)."""
        return {"logdir": None if self.logdir is None else str(self.logdir),
                "flush_secs": self.flush_secs}

    # -- paths -------------------------------------------------------------------------------------
    def root(self, home: str | None = None) -> Path:
        """The folder holding the project folders for a run of ``home``."""
        if self.logdir is not None:
            return self.logdir
        if home is None:
            from runfleet.home import Home

            home = str(Home.resolve().root)
        return Path(home) / "tensorboard"

    def run_dir(self, run: RunInfo) -> Path:
        """The folder of ``run``'s event files (an existing one when it is resumed)."""
        project = self.root(run.home) / path_part(run.project)
        rid = path_part(run.run_id)
        path = project / f"{path_part(run.name, unique=False)}_{rid}"
        if run.resumed and not path.is_dir() and project.is_dir():
            found = sorted(p for p in project.glob(f"*_{rid}") if p.is_dir())
            if found:
                path = found[0]
        return path

    # -- writing -----------------------------------------------------------------------------------
    def start_run(self, run: RunInfo) -> None:
        """Open a new event file in the run's folder and write its identity and config.

        Raises:
            RunfleetError: the folder cannot be created or written (the message names it).
        """
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        old = self._open.pop(run.run_id, None)
        if old is not None:
            old.writer.close()
        path = self.run_dir(run)
        root = self.root(run.home)
        try:
            path.mkdir(parents=True, exist_ok=True)
            writer = EventFileWriter(str(path), max_queue_size=100,
                                     flush_secs=self.flush_secs)
        except OSError as exc:
            raise RunfleetError(f"the TensorBoard sink cannot write event files to {path}: "
                                f"{exc}") from exc
        self._last_root = root
        config = {**run.config, **run.lineage()}
        state = _OpenRun(run, path, writer, config)
        self._open[run.run_id] = state
        self.left_out.setdefault(run.run_id, 0)
        now = time.time()
        identity = {"run_id": run.run_id, "name": run.name, "group": run.group,
                    "tags": list(run.tags), "parent": run.parent,
                    "parent_step": run.parent_step, "resumed": run.resumed}
        values = [self._session_start(run, config, now),
                  self._text(state, TAG_RUN, _json(identity)),
                  self._text(state, TAG_CONFIG, _json(config)),
                  self._text(state, TAG_STATUS, state.status)]
        self._write(state, 0, now, values)
        writer.flush()

    def log(self, run_id: str, rows: Sequence[Row]) -> None:
        """Write the rows' numbers as scalars and strings as text, each at its step."""
        state = self._state(run_id)
        skipped = 0
        for step, when, row in rows:
            values = []
            for key, value in row.items():
                key = str(key)
                number = numeric(value)
                kind = _SCALAR if number is not None else _TEXT if isinstance(value, str) else None
                if kind is None or key in _RESERVED or state.kinds.setdefault(key, kind) != kind:
                    skipped += 1
                    continue
                if number is not None:
                    values.append(self._scalar(state, key, number))
                else:
                    values.append(self._text(state, key, value))
            state.step = int(step)
            if values:
                self._write(state, int(step), when, values)
        if skipped:
            state.left_out += skipped
            self.left_out[run_id] = state.left_out

    def set_status(self, run_id: str, status: str) -> None:
        """Write ``status`` as the text ``runfleet/status`` at the current step and flush."""
        state = self._state(run_id)
        state.status = status
        self._write(state, state.step, time.time(), [self._text(state, TAG_STATUS, status)])
        state.writer.flush()

    def update_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Write the new config (plus lineage) as ``runfleet/config`` at the current step."""
        state = self._state(run_id)
        state.config = {**config, **state.info.lineage()}
        self._write(state, state.step, time.time(),
                    [self._text(state, TAG_CONFIG, _json(state.config))])

    def finish_run(self, run_id: str, status: str) -> None:
        """Write the final status (and the count of values left out), then close the file."""
        state = self._state(run_id)
        state.status = status
        now = time.time()
        values = [self._text(state, TAG_STATUS, status), self._session_end(status, now)]
        if state.left_out:
            values.append(self._text(state, TAG_LEFT_OUT, str(state.left_out)))
        try:
            self._write(state, state.step, now, values)
        finally:
            del self._open[run_id]
            state.writer.close()

    def close(self) -> None:
        """Close the writers of runs still open (their last status is already written)."""
        first: Exception | None = None
        for run_id in list(self._open):
            state = self._open.pop(run_id)
            try:
                state.writer.close()
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    def _state(self, run_id: str) -> _OpenRun:
        state = self._open.get(run_id)
        if state is None:
            raise RunfleetError(f"run {run_id!r} is not open in the TensorBoard sink "
                                f"(start_run failed or the run already finished)")
        return state

    def _write(self, state: _OpenRun, step: int, when: float, values: list[Any]) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        event = event_pb2.Event(wall_time=when, step=step,
                                summary=summary_pb2.Summary(value=values))
        state.writer.add_event(event)

    def _metadata(self, state: _OpenRun, tag: str, plugin: str) -> Any:
        if tag in state.described:
            return None
        state.described.add(tag)
        if plugin == _SCALAR:
            from tensorboard.plugins.scalar import metadata as scalar_metadata

            return scalar_metadata.create_summary_metadata(display_name="", description="")
        from tensorboard.plugins.text import metadata as text_metadata

        return text_metadata.create_summary_metadata(display_name="", description="")

    def _scalar(self, state: _OpenRun, tag: str, value: float) -> Any:
        from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, double_val=[value],
                                        tensor_shape=tensor_shape_pb2.TensorShapeProto())
        return summary_pb2.Summary.Value(tag=tag, tensor=tensor,
                                         metadata=self._metadata(state, tag, _SCALAR))

    def _text(self, state: _OpenRun, tag: str, text: str) -> Any:
        from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING,
                                        string_val=[text.encode("utf-8", "surrogatepass")],
                                        tensor_shape=tensor_shape_pb2.TensorShapeProto())
        return summary_pb2.Summary.Value(tag=tag, tensor=tensor,
                                         metadata=self._metadata(state, tag, _TEXT))

    @staticmethod
    def _session_start(run: RunInfo, config: Mapping[str, Any], when: float) -> Any:
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import metadata, plugin_data_pb2

        info = plugin_data_pb2.SessionStartInfo(group_name=run.run_id, start_time_secs=when)
        for key in sorted(config, key=str):
            value = config[key]
            slot = info.hparams[str(key)]
            if isinstance(value, bool):
                slot.bool_value = value
            elif isinstance(value, (int, float)):
                slot.number_value = numeric(value) or 0.0
            elif isinstance(value, str):
                slot.string_value = value
            else:
                slot.string_value = _json(value)
        data = plugin_data_pb2.HParamsPluginData(session_start_info=info)
        return summary_pb2.Summary.Value(tag=metadata.SESSION_START_INFO_TAG,
                                         metadata=metadata.create_summary_metadata(data),
                                         tensor=metadata.NULL_TENSOR)

    @staticmethod
    def _session_end(status: str, when: float) -> Any:
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        code = {"completed": api_pb2.STATUS_SUCCESS,
                "failed": api_pb2.STATUS_FAILURE}.get(status, api_pb2.STATUS_UNKNOWN)
        info = plugin_data_pb2.SessionEndInfo(status=code, end_time_secs=when)
        data = plugin_data_pb2.HParamsPluginData(session_end_info=info)
        return summary_pb2.Summary.Value(tag=metadata.SESSION_END_INFO_TAG,
                                         metadata=metadata.create_summary_metadata(data),
                                         tensor=metadata.NULL_TENSOR)

    # -- reading back ------------------------------------------------------------------------------
    def read_project(self, project: str) -> list[SinkRun]:
        """Read every run folder of ``project`` back with TensorBoard's ``EventAccumulator``.

        The folder is looked up under ``logdir`` (or the default folder of the home of the last
        run this sink started, else of the home runfleet resolves now). Scalars come back as
        floats, text values as ``str``; points are in step order (values logged at the same
        step keep their logging order); config and status are the last ``runfleet/config``
        and ``runfleet/status`` written.
        """
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        from tensorboard.util import tensor_util

        folder = (self.logdir or self._last_root or self.root()) / path_part(project)
        if not folder.is_dir():
            return []
        out = []
        for path in sorted(p for p in folder.iterdir() if p.is_dir()):
            acc = EventAccumulator(str(path), size_guidance={"tensors": 0, "scalars": 0},
                                   purge_orphaned_data=False)
            acc.Reload()
            identity: dict[str, Any] = {}
            config: dict[str, Any] = {}
            status: str | None = None
            points: dict[str, list[tuple[int, Any]]] = {}
            for tag in acc.Tags()["tensors"]:
                if tag.startswith("_hparams_/"):
                    continue
                events = list(acc.Tensors(tag))
                values = [(e.step, e.wall_time, _value(tensor_util.make_ndarray(e.tensor_proto)))
                          for e in events]
                if tag in _RESERVED:
                    if not values:
                        continue
                    last = max(enumerate(values), key=lambda iv: (iv[1][1], iv[0]))[1][2]
                    if tag == TAG_RUN:
                        identity = json.loads(values[0][2])
                    elif tag == TAG_CONFIG:
                        config = json.loads(last)
                    elif tag == TAG_STATUS:
                        status = last
                    continue
                ordered = sorted(values, key=lambda v: v[0])
                points[tag] = [(int(step), value) for step, _, value in ordered]
            if not identity and not points:
                continue
            out.append(SinkRun(run_id=identity.get("run_id"),
                               name=identity.get("name") or path.name,
                               group=identity.get("group"), config=config, status=status,
                               points=points))
        return out


def _value(array: Any) -> Any:
    item = array.item() if getattr(array, "size", 0) == 1 else array.tolist()
    if isinstance(item, bytes):
        return item.decode("utf-8", "surrogatepass")
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        return float(item)
    return item
