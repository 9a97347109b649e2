"""Import a TensorBoard log directory into a runfleet store.

Every folder under the log directory that holds event files (``events.out.tfevents.*``)
becomes one run, named by its path relative to the log directory (``lr_0.1/train``; the log
directory's own name when the files lie directly in it), exactly the runs TensorBoard shows.
The files are read with TensorBoard's own ``EventAccumulator``, keeping every event (no
sampling, and no purging of the steps a restarted job logged again: all are imported).

* Scalars: legacy ``simple_value`` summaries (float32, so read back as the float32 value
  widened to a Python float) and new-style scalar tensors written by the scalar plugin
  (``DT_FLOAT`` or ``DT_DOUBLE``, decoded with ``tensor_util.make_ndarray``), each with its
  step and wall time exactly as written.
* Text summaries: kept as string metrics (a text tensor of several strings as a JSON list).
* Hparams: the hparams plugin's ``session_start_info`` becomes the run's config (numbers
  are floats, as the plugin stores them; strings and bools as such); its group name and
  start time go to the run's metadata under ``imported_from``.
* Images, audio, histograms, graphs and other plugins' tensors are not imported (a note
  counts them).

Run ids are derived from the log directory's path and the run's relative path, so
importing the same log directory again skips the runs it already holds. Needs the
``tensorboard`` package: ``pip install 'runfleet[tensorboard]'``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from runfleet.importers import (
    ImportArgumentError,
    ImportResult,
    MissingDependencyError,
    RunData,
    SourceNotFoundError,
    stable_id,
    write_run,
)
from runfleet.store.base import RunStatus, Store

EVENT_FILE_MARK = "tfevents"  # TensorBoard's own test for an event file name
_PROFILE_SUFFIX = ".profile-empty"  # profiler placeholders hold no summaries
_HPARAMS_PLUGIN = "hparams"
_NOT_IMPORTED = ("images", "audio", "histograms")


def is_event_file(name: str) -> bool:
    """True when the file name ``name`` is a TensorBoard summary event file (TensorBoard's
    rule: the name contains ``tfevents`` and is not a profiler placeholder)."""
    return EVENT_FILE_MARK in name and not name.endswith(_PROFILE_SUFFIX)


def find_runs(logdir: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """(run name, folder) of every folder under ``logdir`` that holds event files, sorted by
    name. The name is the folder's path relative to ``logdir`` with ``/`` separators, or
    ``logdir``'s own name for the files directly in it."""
    root = Path(logdir)
    runs = []
    for folder, _dirs, files in os.walk(root):
        if any(is_event_file(f) and os.path.isfile(os.path.join(folder, f)) for f in files):
            rel = Path(folder).relative_to(root).as_posix()
            runs.append((root.name if rel == "." else rel, Path(folder)))
    return sorted(runs)


def import_tensorboard(store: Store, logdir: str | os.PathLike[str],
                       project: str | None = None) -> ImportResult:
    """Import every run of the TensorBoard log directory ``logdir`` into ``project``
    (default: the log directory's folder name); see the module docstring.

    Runs already imported into that project are skipped. A run folder whose event files
    hold no readable event does not stop the others: it is listed in the result's
    ``errors``. Raises :class:`~runfleet.importers.SourceNotFoundError` when ``logdir`` does
    not exist or holds no event file, :class:`~runfleet.importers.ImportArgumentError` when
    it is a file, and :class:`~runfleet.importers.MissingDependencyError` when the
    ``tensorboard`` package is not installed.
    """
    root = Path(logdir).expanduser().resolve()
    if not root.exists():
        raise SourceNotFoundError(f"no TensorBoard log directory at {root}")
    if not root.is_dir():
        raise ImportArgumentError(f"{root} is a file; pass the log directory that holds "
                                  f"the event files")
    runs = find_runs(root)
    if not runs:
        raise SourceNotFoundError(f"no TensorBoard event files (events.out.tfevents.*) "
                                  f"under {root}")
    tb = _TensorBoard()
    result = ImportResult(project=project or root.name)
    skipped_tags: Counter[str] = Counter()
    for name, folder in runs:
        run_id = stable_id("tensorboard", str(root), name)
        existing = store.find_run(result.project, id=run_id)
        if existing is not None and existing.status != RunStatus.PENDING:
            result.skipped.append(f"{existing.id} ({existing.name})")
            continue
        try:
            run = tb.read_run(folder, RunData(id=run_id, name=name), skipped_tags)
        except _UnreadableRun as exc:
            result.errors.append(str(exc))
            continue
        run.metadata["imported_from"].update({"logdir": str(root), "run": name})
        if write_run(store, result.project, run):
            result.imported.append(f"{run.id} ({run.name})")
            result.points += run.point_count
        else:
            result.skipped.append(f"{run.id} ({run.name})")
    if +skipped_tags:  # unary plus drops the zero counts
        what = ", ".join(f"{n} {kind}" for kind, n in sorted((+skipped_tags).items()))
        result.notes.append(f"tags not imported (only scalars, text and hparams are): {what}")
    return result


class _UnreadableRun(Exception):
    """A run folder whose event files could not be read."""


class _TensorBoard:
    """The parts of the ``tensorboard`` package the importer uses, imported on creation."""

    def __init__(self) -> None:
        try:
            from tensorboard.backend.event_processing import (  # type: ignore[import-untyped, unused-ignore]
                event_accumulator,
            )
            from tensorboard.plugins.hparams import (  # type: ignore[import-untyped, unused-ignore]
                metadata as hparams_metadata,
            )
            from tensorboard.util import tensor_util  # type: ignore[import-untyped, unused-ignore]
        except ImportError as exc:
            raise MissingDependencyError(
                f"importing TensorBoard logs needs the tensorboard package ({exc}): "
                f"pip install 'runfleet[tensorboard]'") from None
        self.ea = event_accumulator
        self.hparams = hparams_metadata
        self.tensor_util = tensor_util

    def read_run(self, folder: Path, run: RunData, skipped: Counter[str]) -> RunData:
        """Fill ``run`` with the scalars, text and hparams of the event files in ``folder``;
        count the tags not imported, by kind, in ``skipped``."""
        ea = self.ea
        acc = ea.EventAccumulator(
            str(folder), purge_orphaned_data=False,
            size_guidance={ea.SCALARS: 0, ea.TENSORS: 0, ea.IMAGES: 1, ea.AUDIO: 1,
                           ea.HISTOGRAMS: 1, ea.COMPRESSED_HISTOGRAMS: 1})
        try:
            acc.Reload()
            start = acc.FirstEventTimestamp()
        except ValueError:  # FirstEventTimestamp: no event at all
            raise _UnreadableRun(f"{folder}: no readable TensorBoard event in its event files "
                                 f"(empty or corrupt)") from None
        except Exception as exc:  # a malformed file: protobuf or record errors
            raise _UnreadableRun(f"{folder}: cannot read its TensorBoard event files: "
                                 f"{type(exc).__name__}: {exc}") from None
        run.metadata["imported_from"] = {"format": "tensorboard", "path": str(folder),
                                         "first_event_time": start}
        tags = acc.Tags()
        for tag in tags.get(ea.SCALARS, []):
            for event in acc.Scalars(tag):
                run.add(tag, int(event.step), float(event.wall_time), float(event.value))
        for tag in tags.get(ea.TENSORS, []):
            plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
            if not self._read_tensors(run, tag, plugin, acc.Tensors(tag)):
                skipped[plugin or "tensors"] += 1
        for kind in _NOT_IMPORTED:
            skipped[kind] += len(tags.get(kind, []))
        skipped["graphs"] += int(bool(tags.get(ea.GRAPH)))
        self._read_hparams(acc, run)
        return run

    def _read_tensors(self, run: RunData, tag: str, plugin: str, events: list[Any]) -> bool:
        """Add the points of one tensor tag; False when its kind is not imported."""
        if plugin not in ("scalars", "text", ""):
            return False
        values = []
        for event in events:
            array = self.tensor_util.make_ndarray(event.tensor_proto)
            if plugin == "text" and array.dtype.kind in "OSU":
                texts = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                         for v in array.reshape(-1).tolist()]
                values.append(texts[0] if array.size == 1 else
                              _nested(texts, list(array.shape)))
            elif plugin != "text" and array.size == 1 and array.dtype.kind in "biuf":
                values.append(array.reshape(-1)[0].item())
            else:
                return False
        for event, value in zip(events, values):
            run.add(tag, int(event.step), float(event.wall_time), value)
        return True

    def _read_hparams(self, acc: Any, run: RunData) -> None:
        try:
            content = acc.PluginTagToContent(_HPARAMS_PLUGIN)
        except KeyError:  # no hparams in this run
            return
        blob = content.get(self.hparams.SESSION_START_INFO_TAG)
        if blob is None:
            return
        info = self.hparams.parse_session_start_info_plugin_data(blob)
        run.config = {str(k): _hparam_value(v) for k, v in info.hparams.items()}
        origin = run.metadata["imported_from"]
        if info.group_name:
            origin["hparams_group"] = info.group_name
        if info.start_time_secs:
            origin["hparams_start_time"] = info.start_time_secs


def _hparam_value(value: Any) -> Any:
    """The Python value of a ``google.protobuf.Value`` hparam."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return float(value.number_value)
    if kind == "string_value":
        return str(value.string_value)
    if kind == "bool_value":
        return bool(value.bool_value)
    if kind == "list_value":
        return [_hparam_value(v) for v in value.list_value.values]
    if kind == "struct_value":
        return {str(k): _hparam_value(v) for k, v in value.struct_value.fields.items()}
    return None  # null_value, or no value set


def _nested(flat: list[str], shape: list[int]) -> Any:
    """``flat`` (row-major) as nested lists of ``shape``."""
    if len(shape) <= 1:
        return flat
    size = len(flat) // shape[0] if shape[0] else 0
    return [_nested(flat[i * size:(i + 1) * size], shape[1:]) for i in range(shape[0])]
