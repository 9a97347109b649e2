"""MLflow sink: mirror runfleet runs into an MLflow tracking store (``runfleet[mlflow]``).

Mapping
-------
* **Experiment** = the runfleet project (created when missing, restored when deleted).
* **Run**: one MLflow run per runfleet run, ``run_name`` = the run's name. Tags:
  ``runfleet.run_id``, ``runfleet.group``, ``runfleet.status`` (updated on every status
  change), ``runfleet.tags`` (JSON list), and for a clone ``runfleet.parent`` /
  ``runfleet.parent_step`` plus ``mlflow.parentRunId`` when the parent's MLflow run can be
  found in the experiment. A resumed run (``RunInfo.resumed``) continues the MLflow run that
  carries its ``runfleet.run_id`` (a new one is created only if none is found).
* **Params** = the flattened config plus the lineage (``parent``, ``parent_step``), as text:
  a ``str`` is stored as-is unless it would parse as JSON (``"3"``, ``"true"``, ``"null"``),
  in which case it is stored JSON-quoted (``"\\"3\\""``); every other value is stored as JSON
  (``3``, ``0.001``, ``true``, ``null``, ``NaN``, ``[1, 2]``; objects JSON cannot hold as their
  ``str()``, treated as a string). Reading back (:func:`decode_param`) parses JSON and keeps
  the raw text where that fails, so ints, floats (exactly), bools, ``None`` and strings come
  back as they were. A value longer than MLflow's limit (6000 characters) is cut and ends
  with ``...[truncated by runfleet: N chars]`` (it then reads back as that string).
* **Config changes** (:meth:`MLflowSink.update_config`): MLflow params are immutable, so new
  keys become params, and a key whose value changed keeps its first param value and gets
  the latest value in the tag ``runfleet.config.<name>`` (same encoding), which
  :meth:`MLflowSink.read_project` applies over the params. Keys removed from the config stay.
  A change whose tag name would exceed 250 characters is left out and counted in the tag
  ``runfleet.config_changes_left_out``.
* **Metrics** via ``log_batch`` (at most 1000 per call) with the row's step and time (ms).
  Numbers and bools (``True`` → 1.0, ``False`` → 0.0) become metrics; NaN is kept. MLflow's
  SQL stores save ±infinity as ±``sys.float_info.max`` (its file store keeps infinity);
  :meth:`MLflowSink.read_project` reads ±``sys.float_info.max`` back as ±infinity, so a
  genuinely logged ±1.7976931348623157e308 also reads back as infinity. Strings, JSON-like
  values and media are left out and counted (:attr:`MLflowSink.left_out` and the tag
  ``runfleet.values_left_out``).
* **Names** (metric and param keys) are made acceptable to MLflow by :func:`mlflow_name`:
  characters other than letters, digits, ``_ . - /`` and space become ``_`` (``:`` too, which
  MLflow accepts only off Windows), empty and ``.`` path parts are dropped, ``..`` parts become
  ``__``; a name that had to change, or is longer than 250 characters, gets ``-`` and 8 hex
  digits of its SHA-1 appended (cut to fit 250), so distinct keys never merge. The renames of
  a run are kept in the tag ``runfleet.renamed`` (JSON, ``{mlflow name: original}``, while it
  fits 8000 characters) and :meth:`MLflowSink.read_project` gives the original names back.
* **Status**: ``running`` → RUNNING, ``pending`` → SCHEDULED, ``stopped`` → KILLED (the run is
  terminated, and set back to RUNNING if it runs again), ``completed`` → FINISHED,
  ``failed`` → FAILED, ``deleted`` → KILLED (the MLflow run is not deleted); the tag
  ``runfleet.status`` always holds runfleet's status. :meth:`MLflowSink.close` terminates
  runs still open with their last status (KILLED for one still running or pending).

URIs: ``tracking_uri`` or, when not given, ``mlflow.get_tracking_uri()`` (which honours
``MLFLOW_TRACKING_URI``; MLflow's default is ``sqlite:///mlflow.db`` in the working
directory). Local ``sqlite:`` and ``file:`` URIs work; for a ``file:`` URI (or a plain path)
the sink sets ``MLFLOW_ALLOW_FILE_STORE=true`` unless it is already set, since MLflow 3
refuses its file store otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import numbers
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from runfleet.errors import RunfleetError
from runfleet.sinks.base import Row, RunInfo, Sink, SinkRun, numeric

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient

__all__ = ["MLflowSink", "decode_param", "encode_param", "mlflow_name"]

#: MLflow's limits (``mlflow.utils.validation``).
MAX_METRICS_PER_CALL = 1000
MAX_PARAMS_PER_CALL = 100
MAX_NAME_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000

TAG_RUN_ID = "runfleet.run_id"
TAG_GROUP = "runfleet.group"
TAG_STATUS = "runfleet.status"
TAG_TAGS = "runfleet.tags"
TAG_PARENT = "runfleet.parent"
TAG_PARENT_STEP = "runfleet.parent_step"
TAG_RENAMED = "runfleet.renamed"
TAG_LEFT_OUT = "runfleet.values_left_out"
TAG_CONFIG_PREFIX = "runfleet.config."
TAG_CONFIG_LEFT_OUT = "runfleet.config_changes_left_out"
TAG_MLFLOW_PARENT = "mlflow.parentRunId"

_STATUS_TO_MLFLOW = {
    "pending": "SCHEDULED",
    "running": "RUNNING",
    "stopped": "KILLED",
    "completed": "FINISHED",
    "failed": "FAILED",
    "deleted": "KILLED",
}
_MLFLOW_TO_STATUS = {
    "SCHEDULED": "pending",
    "RUNNING": "running",
    "KILLED": "stopped",
    "FINISHED": "completed",
    "FAILED": "failed",
}
_TERMINATED = ("FINISHED", "FAILED", "KILLED")
_BAD_CHARS = re.compile(r"[^\w./\- ]")
_INSTALL_HINT = "the MLflow sink needs the 'mlflow' package: pip install 'runfleet[mlflow]'"


def mlflow_name(key: str) -> str:
    """``key`` as a metric / param / tag name MLflow accepts (see the module docstring).

    Valid names of at most 250 characters come back unchanged; others are sanitized and
    suffixed with ``-`` and 8 hex digits of the SHA-1 of ``key``.

    Example:
        >>> mlflow_name("train/loss")
        'train/loss'
        >>> mlflow_name("eval/acc@1")[:11]
        'eval/acc_1-'
    """
    name = _BAD_CHARS.sub("_", key)
    parts = ["__" if p == ".." else p for p in name.split("/") if p not in ("", ".")]
    name = "/".join(parts) or "_"
    if name.startswith(".."):
        name = "__" + name[2:]
    if name == key and len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{name[:MAX_NAME_LENGTH - 9]}-{digest}"


def encode_param(value: Any) -> str:
    """A config value as MLflow param text (the rule is in the module docstring)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
        return json.dumps(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value)
    try:
        return json.dumps(value, default=_json_default)
    except (TypeError, ValueError):
        return encode_param(str(value))


def decode_param(text: str) -> Any:
    """The value :func:`encode_param` encoded as ``text`` (``text`` itself if not JSON)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json_default(value: Any) -> Any:
    if isinstance(value, numbers.Integral):  # numpy integers and the like
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    marker = f"...[truncated by runfleet: {len(text)} chars]"
    return text[:limit - len(marker)] + marker


def _from_stored(value: float) -> float:
    if value == sys.float_info.max:
        return math.inf
    if value == -sys.float_info.max:
        return -math.inf
    return value


@dataclass
class _OpenRun:
    mlflow_id: str
    experiment_id: str
    params: dict[str, str] = field(default_factory=dict)  # mlflow name -> logged text
    changed: dict[str, str] = field(default_factory=dict)  # mlflow name -> latest text
    renamed: dict[str, str] = field(default_factory=dict)  # mlflow name -> original key
    renamed_full: bool = False
    renamed_dirty: bool = False
    status: str = "running"
    mlflow_status: str = "RUNNING"
    left_out: int = 0
    config_left_out: int = 0


class MLflowSink(Sink):
    """Forward runs to MLflow (see the module docstring for how runs map onto MLflow).

    Args:
        tracking_uri: The MLflow tracking URI (``sqlite:///path/mlflow.db``,
            ``file:///path/mlruns``, ``http://host:5000`` ...); default
            ``mlflow.get_tracking_uri()``, resolved when the first run starts.

    Raises:
        ImportError: ``mlflow`` is not installed (``pip install 'runfleet[mlflow]'``).

    Example:
        >>> sink = MLflowSink("sqlite:////tmp/mlflow.db")          # doctest: +SKIP
        >>> run = runfleet.init(project="p", sinks=[sink])         # doctest: +SKIP
    """

    name = "mlflow"

    def __init__(self, tracking_uri: str | None = None) -> None:
        if importlib.util.find_spec("mlflow") is None:
            raise ImportError(_INSTALL_HINT)
        self.tracking_uri = tracking_uri
        #: Values not forwarded per run id (strings, JSON-like values, media).
        self.left_out: dict[str, int] = {}
        self._client: MlflowClient | None = None
        self._experiments: dict[str, str] = {}
        self._open: dict[str, _OpenRun] = {}
        self._mlflow_ids: dict[str, str] = {}  # runfleet run id -> MLflow run id

    def __repr__(self) -> str:
        return f"MLflowSink(tracking_uri={self.tracking_uri!r})"

    def settings(self) -> dict[str, Any]:
        """``{"tracking_uri": ...}`` (None: MLflow's default where it is rebuilt)."""
        return {"tracking_uri": self.tracking_uri}

    # -- target access ---------------------------------------------------------------------------
    def client(self) -> MlflowClient:
        """The ``MlflowClient`` of this sink (created, and the URI resolved, on first use).

        Raises:
            RunfleetError: the tracking URI cannot be opened (the message names it).
        """
        if self._client is not None:
            return self._client
        try:
            import mlflow
            from mlflow.tracking import MlflowClient
        except ImportError as exc:  # pragma: no cover - checked in __init__
            raise ImportError(f"{_INSTALL_HINT}: {exc}") from exc
        uri = self.tracking_uri or mlflow.get_tracking_uri()
        scheme = urlparse(uri).scheme
        if scheme == "file" or len(scheme) <= 1:  # a file: URI, a plain path, or C:\...
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            client = MlflowClient(tracking_uri=uri)
        except Exception as exc:
            raise RunfleetError(f"the MLflow sink cannot open tracking URI {uri!r}: "
                                f"{exc}") from exc
        self.tracking_uri = uri
        self._client = client
        return client

    def _experiment_id(self, project: str, create: bool) -> str | None:
        found = self._experiments.get(project)
        if found is not None:
            return found
        client = self.client()
        try:
            exp = client.get_experiment_by_name(project)
            if exp is None:
                if not create:
                    return None
                try:
                    exp_id = client.create_experiment(project)
                except Exception:  # created meanwhile by another process?
                    exp = client.get_experiment_by_name(project)
                    if exp is None:
                        raise
                    exp_id = exp.experiment_id
            else:
                exp_id = exp.experiment_id
                if exp.lifecycle_stage == "deleted":
                    if not create:
                        return None
                    client.restore_experiment(exp_id)
        except RunfleetError:
            raise
        except Exception as exc:
            raise RunfleetError(f"the MLflow sink cannot use experiment {project!r} at "
                                f"{self.tracking_uri!r}: {exc}") from exc
        self._experiments[project] = exp_id
        return exp_id

    def _find_run(self, experiment_id: str, run_id: str) -> Any | None:
        escaped = run_id.replace("\\", "\\\\").replace("'", "\\'")
        runs = self.client().search_runs(
            [experiment_id], filter_string=f"tags.`{TAG_RUN_ID}` = '{escaped}'",
            max_results=1, order_by=["attributes.start_time ASC"])
        return runs[0] if runs else None

    # -- Sink interface ----------------------------------------------------------------------------
    def start_run(self, run: RunInfo) -> None:
        """Create the MLflow run of ``run`` (or continue it when ``run.resumed``).

        Raises:
            RunfleetError: the tracking URI or the experiment cannot be used.
        """
        client = self.client()
        exp_id = self._experiment_id(run.project, create=True)
        assert exp_id is not None
        state = self._open.get(run.run_id)
        if state is None and run.resumed:
            found = self._find_run(exp_id, run.run_id)
            if found is not None:
                tags = found.data.tags
                state = _OpenRun(found.info.run_id, exp_id, params=dict(found.data.params))
                state.renamed = _json_dict(tags.get(TAG_RENAMED))
                state.changed = {k[len(TAG_CONFIG_PREFIX):]: v for k, v in tags.items()
                                 if k.startswith(TAG_CONFIG_PREFIX)}
                state.left_out = _int(tags.get(TAG_LEFT_OUT))
                state.config_left_out = _int(tags.get(TAG_CONFIG_LEFT_OUT))
                state.mlflow_status = found.info.status
        tags = {TAG_RUN_ID: run.run_id, TAG_STATUS: "running"}
        if run.group is not None:
            tags[TAG_GROUP] = run.group
        if run.tags:
            tags[TAG_TAGS] = json.dumps(list(run.tags))
        if run.parent is not None:
            tags[TAG_PARENT] = run.parent
            tags[TAG_PARENT_STEP] = json.dumps(run.parent_step)
            parent_id = self._parent_mlflow_id(exp_id, run.parent)
            if parent_id is not None:
                tags[TAG_MLFLOW_PARENT] = parent_id
        tags = {k: _cut(v, MAX_TAG_VALUE_LENGTH) for k, v in tags.items()}
        if state is None:
            created = client.create_run(exp_id, run_name=_cut(run.name, MAX_TAG_VALUE_LENGTH),
                                        tags=tags)
            state = _OpenRun(created.info.run_id, exp_id)
        else:
            from mlflow.entities import RunTag

            client.log_batch(state.mlflow_id, tags=[RunTag(k, v) for k, v in tags.items()],
                             synchronous=True)
            if state.mlflow_status != "RUNNING":
                client.update_run(state.mlflow_id, status="RUNNING")
        state.status, state.mlflow_status = "running", "RUNNING"
        self._open[run.run_id] = state
        self._mlflow_ids[run.run_id] = state.mlflow_id
        self.left_out.setdefault(run.run_id, state.left_out)
        self._log_config(state, {**run.config, **run.lineage()})

    def _parent_mlflow_id(self, experiment_id: str, parent: str) -> str | None:
        known = self._mlflow_ids.get(parent)
        if known is not None:
            return known
        found = self._find_run(experiment_id, parent)
        if found is None:
            return None
        self._mlflow_ids[parent] = found.info.run_id
        return str(found.info.run_id)

    def _state(self, run_id: str) -> _OpenRun:
        state = self._open.get(run_id)
        if state is None:
            raise RunfleetError(f"run {run_id!r} is not open in the MLflow sink "
                                f"(start_run failed or the run already finished)")
        return state

    def _name(self, state: _OpenRun, key: str) -> str:
        name = mlflow_name(key)
        if name != key and name not in state.renamed and not state.renamed_full:
            state.renamed[name] = key
            if len(json.dumps(state.renamed)) > MAX_TAG_VALUE_LENGTH:
                del state.renamed[name]
                state.renamed_full = True
            else:
                state.renamed_dirty = True
        return name

    def _flush_renames(self, state: _OpenRun, extra: dict[str, str] | None = None) -> None:
        tags = dict(extra or {})
        if state.renamed_dirty:
            tags[TAG_RENAMED] = json.dumps(state.renamed)
            state.renamed_dirty = False
        if tags:
            from mlflow.entities import RunTag

            self.client().log_batch(state.mlflow_id,
                                    tags=[RunTag(k, v) for k, v in tags.items()],
                                    synchronous=True)

    def _log_config(self, state: _OpenRun, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        new: list[Any] = []
        changed: dict[str, str] = {}
        for key, value in config.items():
            name = self._name(state, str(key))
            text = _cut(encode_param(value), MAX_PARAM_VALUE_LENGTH)
            first = state.params.get(name)
            if first is None:
                state.params[name] = text
                new.append(Param(name, text))
            elif text != state.changed.get(name, first):
                tag = TAG_CONFIG_PREFIX + name
                if len(tag) > MAX_NAME_LENGTH:
                    state.config_left_out += 1
                    changed[TAG_CONFIG_LEFT_OUT] = str(state.config_left_out)
                    continue
                state.changed[name] = changed[tag] = _cut(text, MAX_TAG_VALUE_LENGTH)
        client = self.client()
        for i in range(0, len(new), MAX_PARAMS_PER_CALL):
            client.log_batch(state.mlflow_id, params=new[i:i + MAX_PARAMS_PER_CALL],
                             synchronous=True)
        self._flush_renames(state, changed)

    def log(self, run_id: str, rows: Sequence[Row]) -> None:
        """Log the numeric values of ``rows`` as metrics (other values are counted)."""
        from mlflow.entities import Metric

        state = self._state(run_id)
        metrics: list[Any] = []
        skipped = 0
        for step, when, values in rows:
            stamp = max(0, round(when * 1000))
            for key, value in values.items():
                number = numeric(value)
                if number is None:
                    skipped += 1
                    continue
                metrics.append(Metric(self._name(state, str(key)), number, stamp, int(step)))
        client = self.client()
        for i in range(0, len(metrics), MAX_METRICS_PER_CALL):
            client.log_batch(state.mlflow_id, metrics=metrics[i:i + MAX_METRICS_PER_CALL],
                             synchronous=True)
        if skipped:
            state.left_out += skipped
            self.left_out[run_id] = state.left_out
        self._flush_renames(state)

    def set_status(self, run_id: str, status: str) -> None:
        """Update the ``runfleet.status`` tag and the MLflow run status (see the mapping)."""
        self._apply_status(self._state(run_id), status, final=False)

    def _apply_status(self, state: _OpenRun, status: str, final: bool) -> None:
        client = self.client()
        target = _STATUS_TO_MLFLOW.get(status, "RUNNING")
        if final and target not in _TERMINATED:
            target = "KILLED"
        tags = {TAG_STATUS: status}
        if state.left_out:
            tags[TAG_LEFT_OUT] = str(state.left_out)
        self._flush_renames(state, tags)
        if target in _TERMINATED:
            if final or target != state.mlflow_status:
                client.set_terminated(state.mlflow_id, status=target)
        elif target != state.mlflow_status:
            client.update_run(state.mlflow_id, status=target)
        state.status, state.mlflow_status = status, target

    def update_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Log new config keys as params; changed values go to ``runfleet.config.*`` tags."""
        self._log_config(self._state(run_id), config)

    def finish_run(self, run_id: str, status: str) -> None:
        """Terminate the MLflow run: completed → FINISHED, failed → FAILED, else KILLED."""
        state = self._state(run_id)
        self._apply_status(state, status, final=True)
        del self._open[run_id]

    def close(self) -> None:
        """Terminate the runs still open with their last status; the first error is raised."""
        first: Exception | None = None
        for run_id, state in list(self._open.items()):
            try:
                self._apply_status(state, state.status, final=True)
            except Exception as exc:
                first = first or exc
            del self._open[run_id]
        if first is not None:
            raise first

    # -- reading back ------------------------------------------------------------------------------
    def read_project(self, project: str) -> list[SinkRun]:
        """Every run of the experiment named ``project``, oldest first, metrics included.

        Params are decoded with :func:`decode_param` (changed values from the
        ``runfleet.config.*`` tags win), original key names come back from
        ``runfleet.renamed``, ±``sys.float_info.max`` reads as ±infinity, and the status is
        the ``runfleet.status`` tag (or MLflow's status mapped back, for foreign runs).
        """
        exp_id = self._experiment_id(project, create=False)
        if exp_id is None:
            return []
        client = self.client()
        runs: list[Any] = []
        token: str | None = None
        while True:
            page = client.search_runs([exp_id], max_results=1000, page_token=token,
                                      order_by=["attributes.start_time ASC"])
            runs.extend(page)
            token = page.token
            if not token:
                break
        out = []
        for found in runs:
            tags = found.data.tags
            renamed = _json_dict(tags.get(TAG_RENAMED))
            config = {renamed.get(k, k): decode_param(v) for k, v in found.data.params.items()}
            for tag, text in tags.items():
                if tag.startswith(TAG_CONFIG_PREFIX):
                    key = tag[len(TAG_CONFIG_PREFIX):]
                    config[renamed.get(key, key)] = decode_param(text)
            points: dict[str, list[tuple[int, Any]]] = {}
            for key in sorted(found.data.metrics):
                history = sorted(client.get_metric_history(found.info.run_id, key),
                                 key=lambda m: (m.step, m.timestamp))
                points[renamed.get(key, key)] = [(int(m.step), _from_stored(m.value))
                                                 for m in history]
            status = tags.get(TAG_STATUS) or _MLFLOW_TO_STATUS.get(found.info.status)
            out.append(SinkRun(run_id=tags.get(TAG_RUN_ID), name=found.info.run_name or "",
                               group=tags.get(TAG_GROUP), config=config, status=status,
                               points=points))
        return out


def _json_dict(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _int(text: str | None) -> int:
    try:
        return int(text) if text else 0
    except ValueError:
        return 0

