"""``runfleet.init`` and the module-level functions that act on the active run."""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import platform
import random
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from runfleet.errors import RunfleetError
from runfleet.home import Home
from runfleet.sinks import Sink, resolve_sinks
from runfleet.sinks.base import RunInfo
from runfleet.sinks.fanout import RunSinks, channel_for
from runfleet.store.base import AlertRow, RunStatus, Store, StoreBusyError
from runfleet.tracking import homes
from runfleet.tracking.config import Config, redact_secrets
from runfleet.tracking.disabled import DisabledRun
from runfleet.tracking.names import new_run_id, new_run_name
from runfleet.tracking.run import Run
from runfleet.tracking.summary import MetricDefinition, Summary
from runfleet.tracking.system import DEFAULT_INTERVAL_S, SystemMonitor
from runfleet.tracking.text import check_text, escape_surrogates

DEFAULT_PROJECT = "uncategorized"
MODES = ("offline", "online", "disabled")
RESUME_VALUES = (None, False, True, "never", "allow", "must", "auto")
# Arguments of wandb.init / trackio.init that only make sense with a cloud service.
_CLOUD_ONLY = frozenset({
    "entity", "space_id", "dataset_id", "anonymous", "save_code", "sync_tensorboard",
    "monitor_gym", "settings", "magic", "allow_val_change", "force", "tensorboard",
    "fork_from", "resume_from", "private", "embed", "auto_log_gpu", "gpu_log_interval",
    "webhook_url", "webhook_min_level", "bucket_id", "config_exclude_keys",
    "config_include_keys", "mode_", "job_type", "dir_", "host", "server_url",
})

_state_lock = threading.RLock()
_active: Run | DisabledRun | None = None
_warned: set[str] = set()
_uncaught: list[BaseException] = []
_exit_code: list[Any] = []


def active_run() -> Run | DisabledRun | None:
    """The run of the last ``init()`` not yet finished in this process, or None."""
    return _active


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, UserWarning, stacklevel=4)


def init(
    project: str | None = None,
    name: str | None = None,
    group: str | None = None,
    config: Mapping[str, Any] | Any = None,
    tags: Any = None,
    notes: str | None = None,
    id: str | None = None,
    resume: bool | str | None = None,
    dir: str | os.PathLike[str] | None = None,
    mode: str | None = None,
    reinit: Any = None,
    system_metrics: bool | None = None,
    system_interval: float = DEFAULT_INTERVAL_S,
    parent: str | None = None,
    parent_step: int | None = None,
    sinks: Sequence[Sink | str] | None = None,
    **kwargs: Any,
) -> Run | DisabledRun:
    """Start (or resume) a run and make it the active one; returns the :class:`Run`.

    Args:
        project: project name (default ``uncategorized``).
        name: display name (default: a generated ``adjective-noun-N``).
        group: a group label, e.g. the sweep or experiment the run belongs to.
        config: hyperparameters: a dict, argparse namespace or dataclass.
        tags, notes: labels and free text.
        id: run id (default: 8 random characters). With ``resume`` it picks the run.
        resume: ``"allow"``/``True`` continues the run with this ``id`` (or, without an id,
            the newest run named ``name``) if it exists; ``"must"`` requires it; ``"never"``
            (default) refuses an existing id. Resumed runs continue after their last step.
        dir: home directory (default ``RUNFLEET_DIR`` or ``~/.runfleet``).
        mode: ``"offline"`` (default; ``"online"`` is the same, there is no server) or
            ``"disabled"`` (every call is a no-op). ``RUNFLEET_MODE`` sets the default.
        reinit: accepted for wandb compatibility; a new ``init()`` always finishes the
            active run first.
        system_metrics: sample CPU/RAM/GPU every ``system_interval`` seconds (default on;
            ``RUNFLEET_SYSTEM_METRICS=0`` turns the default off).
        parent, parent_step: lineage, for runs cloned from another run.
        sinks: also send the run to these trackers, fed in the background: names
            (``"trackio"``, ``"mlflow"``, ``"tensorboard"``) or :class:`runfleet.sinks.Sink`
            objects (see :mod:`runfleet.sinks`). runfleet's store always gets everything;
            a failing sink is recorded on the run as a warning. ``finish()`` waits for the
            sinks to take what was logged (``RUNFLEET_SINK_TIMEOUT`` seconds at most).

    ``settings`` takes a :class:`runfleet.Settings` (``wandb.Settings``) or a dict of its
    fields: those with a local meaning fill the arguments above that were not given.
    Cloud-only arguments of wandb and trackio (``entity``, ``space_id``, ...) are accepted,
    warned about once and ignored; any other unknown argument is a ``TypeError``.
    """
    global _active
    if kwargs.get("settings") is not None:
        from runfleet.tracking.settings import Settings

        given = kwargs.pop("settings")
        if not isinstance(given, (Settings, Mapping)):
            raise TypeError(f"settings= takes runfleet.Settings (wandb.Settings) or a dict, "
                            f"got {type(given).__name__}")
        chosen = given if isinstance(given, Settings) else Settings(**dict(given))
        filled = chosen.init_kwargs()
        project = project if project is not None else filled.get("project")
        name = name if name is not None else filled.get("name")
        group = group if group is not None else filled.get("group")
        tags = tags if tags is not None else filled.get("tags")
        notes = notes if notes is not None else filled.get("notes")
        id = id if id is not None else filled.get("id")
        resume = resume if resume is not None else filled.get("resume")
        mode = mode if mode is not None else filled.get("mode")
        if system_metrics is None:
            system_metrics = filled.get("system_metrics")
    kwargs.pop("settings", None)
    unknown = set(kwargs) - _CLOUD_ONLY
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    for key in sorted(kwargs):
        _warn_once(f"runfleet.init(): {key}= is a cloud-service option; ignored (runs are local)")
    mode = (mode or os.environ.get("RUNFLEET_MODE") or "offline").lower()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if resume not in RESUME_VALUES:
        raise ValueError(f"resume must be one of {RESUME_VALUES}, got {resume!r}")
    project = project or os.environ.get("RUNFLEET_PROJECT") or DEFAULT_PROJECT
    if not isinstance(project, str):
        raise TypeError(f"project must be a str, got {type(project).__name__}")
    tag_list = [str(t) for t in (tags or [])] if not isinstance(tags, str) else [tags]

    with _state_lock:
        if _active is not None:
            _active.finish()
        if mode == "disabled":
            _active = DisabledRun(project=project, name=name, config=config,
                                  on_finish=_on_finish)
            return _active
        run = start_run(project, name=name, group=group, config=config, tags=tag_list,
                        notes=notes, id=id, resume=resume, dir=dir,
                        system_metrics=system_metrics, system_interval=system_interval,
                        parent=parent, parent_step=parent_step, on_finish=_on_finish,
                        sinks=sinks)
        _active = run
        _install_hooks()
        return run


def start_run(
    project: str,
    *,
    name: str | None = None,
    group: str | None = None,
    config: Any = None,
    tags: list[str] | None = None,
    notes: str | None = None,
    id: str | None = None,
    resume: bool | str | None = None,
    dir: str | os.PathLike[str] | None = None,
    system_metrics: bool | None = False,
    system_interval: float = DEFAULT_INTERVAL_S,
    parent: str | None = None,
    parent_step: int | None = None,
    on_finish: Any = None,
    status: str = RunStatus.RUNNING,
    sinks: Sequence[Sink | str] | None = None,
    wait_sinks: bool = True,
) -> Run:
    """Create or resume a run without making it the active one.

    This is what :func:`init` uses, and what the engine's controller uses to track many
    runs at once from one process. Arguments are those of :func:`init`; with
    ``wait_sinks=False`` :meth:`Run.finish` does not wait for the sinks (the engine waits
    once for all its runs instead).
    """
    tag_list = list(tags or [])
    _check_run_texts(project, name, group, notes, id, tag_list)
    sink_objects = resolve_sinks(sinks)
    home = Home.resolve(dir)
    opened = homes.get(home)
    cfg_values = Config(config).as_dict() if config is not None else {}
    stored = redact_secrets(cfg_values)  # secrets never reach the store or a tracker
    record = None
    created = None  # the run this call created, when it created it atomically below
    if resume in (True, "allow", "auto") and id is not None:
        # Create-or-resume in one transaction: of several processes starting this id at
        # once, exactly one creates the run and the others resume it.
        metadata = _environment()
        record, was_created = _retry_busy(lambda: opened.store.create_or_get_run(
            project, id, name or _next_name(opened.store, project), group=group,
            config=stored, tags=tag_list, notes=notes, parent=parent,
            parent_step=parent_step, metadata=metadata, status=status))
        if was_created:
            created, record = record, None
    elif resume in (True, "allow", "must", "auto"):
        if id is not None:
            record = opened.store.find_run(project, id=id)
        elif name is not None:
            record = opened.store.find_run(project, name=name)
        if record is None and resume == "must":
            what = f"id {id!r}" if id is not None else f"name {name!r}"
            raise ValueError(f"resume='must' but project {project!r} has no run with {what}")
    elif id is not None and opened.store.find_run(project, id=id) is not None:
        raise ValueError(
            f"run id {id!r} already exists in project {project!r}; pass resume='allow' "
            f"to continue it, or choose another id")

    if record is not None and record.status == RunStatus.DELETED and status != RunStatus.DELETED:
        raise ValueError(f"run {record.id!r} of project {project!r} is deleted: restore it "
                         f"first (`runfleet restore {record.id} --project {project}`) to "
                         f"continue it, or choose another id")
    if record is not None:
        merged = {**record.config, **cfg_values}
        fields: dict[str, Any] = {"status": status, "finished": None,
                                  "heartbeat": time.time(), "config": redact_secrets(merged)}
        if tag_list:
            fields["tags"] = tag_list
        if notes is not None:
            fields["notes"] = notes
        if group is not None:
            fields["grp"] = group
        rid_to_update = record.rid
        _retry_busy(lambda: opened.store.update_run(rid_to_update, **fields))
        metadata = {**record.metadata, **_environment()}  # this process now writes it
        metadata.setdefault("resumed", []).append(time.time())
        definitions = [MetricDefinition.from_json(d) for d in metadata.get("metrics", [])]
        summary = Summary(record.summary, metadata.get("summary_state"), definitions)
        rid, run_id, run_name = record.rid, record.id, record.name
        step = record.last_step + 1
        group = group if group is not None else record.group
        tag_list = tag_list or list(record.tags)
        notes = notes if notes is not None else record.notes
        cfg_values = merged
    else:
        if created is not None:
            record = created
        else:
            metadata = _environment()
            record = opened.store.create_run(
                project, id or new_run_id(), name or _next_name(opened.store, project),
                group=group, config=stored, tags=tag_list, notes=notes, parent=parent,
                parent_step=parent_step, metadata=metadata, status=status)
        run_id, run_name = record.id, record.name
        rid, step = record.rid, 0
        summary = Summary()

    run_sinks = None
    if sink_objects:
        run_sinks = _open_sinks(sink_objects, opened.writer, rid, RunInfo(
            project=project, run_id=run_id, name=run_name, group=group,
            config=redact_secrets(cfg_values), parent=record.parent,
            parent_step=record.parent_step,
            tags=tuple(tag_list), resumed=step > 0 or "resumed" in metadata,
            home=str(home.root), status=status))

    def config_changed(snapshot: dict[str, Any]) -> None:
        snapshot = redact_secrets(snapshot)
        opened.writer.update_run(rid, config=snapshot)
        if run_sinks is not None:
            run_sinks.update_config(snapshot)

    run = Run(home=home, writer=opened.writer, rid=rid, id=run_id, name=run_name,
              project=project, group=group, tags=tag_list, notes=notes,
              config=Config(cfg_values, on_change=config_changed),
              summary=summary, metadata=metadata, step=step, on_finish=on_finish,
              sinks=run_sinks, wait_sinks=wait_sinks)
    if "resumed" in metadata:
        run.set_metadata("resumed", metadata["resumed"])  # persist the new host and pid
    if _system_metrics_enabled(system_metrics):
        run._monitor = SystemMonitor(
            lambda i, d: run._log_system(i, d), interval=system_interval).start()
    return run


def _next_name(store: Store, project: str) -> str:
    """A generated name for the next run of ``project`` (``adjective-noun-<count + 1>``)."""
    count = next((p.run_count for p in store.projects() if p.name == project), 0)
    return new_run_name(count + 1)


def _check_run_texts(project: str, name: str | None, group: str | None, notes: str | None,
                     id: str | None, tags: list[str]) -> None:
    """Refuse (``TypeError`` naming the field) text holding a lone surrogate, which could
    not be stored and read back as UTF-8."""
    for what, text in (("project", project), ("run name", name), ("group", group),
                       ("notes", notes), ("run id", id)):
        if isinstance(text, str):
            check_text(what, text)
    for tag in tags:
        if isinstance(tag, str):
            check_text(f"tag {tag!r}", tag)


_T = TypeVar("_T")


def _retry_busy(fn: Callable[[], _T]) -> _T:
    """Call ``fn``, retrying with backoff while another process holds the write lock (up to
    :data:`homes.OPEN_RETRY_S` seconds), as opening the home does."""
    deadline = time.monotonic() + homes.OPEN_RETRY_S
    delay = 0.01
    while True:
        try:
            return fn()
        except StoreBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)


def _open_sinks(sinks: list[Sink], writer: Any, rid: int, info: RunInfo) -> RunSinks:
    """Start the run in every sink's channel; sink failures become warn alerts on it."""

    def on_error(message: str, step: int | None) -> None:
        writer.alert(AlertRow(rid, "tracking sink failed", escape_surrogates(message), "warn",
                              step, time.time()))

    return RunSinks([channel_for(s) for s in sinks], info, on_error)


def _system_metrics_enabled(flag: bool | None) -> bool:
    if flag is not None:
        return bool(flag)
    return os.environ.get("RUNFLEET_SYSTEM_METRICS", "1").lower() not in ("0", "false", "no")


def _environment() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = None
    return {
        "host": socket.gethostname(), "pid": os.getpid(), "user": user,
        "python": platform.python_version(), "platform": platform.platform(),
        "argv": list(sys.argv), "cwd": os.getcwd(), "started": time.time(),
    }


def _on_finish(run: Run | DisabledRun) -> None:
    global _active
    with _state_lock:
        if _active is run:
            _active = None


def require_run(what: str) -> Run | DisabledRun:
    """The active run, or a clear error telling the user to call ``init()`` first."""
    run = _active
    if run is None:
        raise RunfleetError(f"runfleet.{what}() needs an active run: call runfleet.init() first")
    return run


_hooks_installed = False


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException,
             tb: TracebackType | None) -> None:
        _uncaught.append(exc)
        run = _active
        if isinstance(run, Run) and not isinstance(exc, KeyboardInterrupt):
            import traceback

            with contextlib.suppress(Exception):  # never mask the user's own traceback
                run.fail("".join(traceback.format_exception(exc_type, exc, tb)))
        previous(exc_type, exc, tb)

    sys.excepthook = hook
    real_exit = sys.exit

    def exit_hook(code: Any = None) -> None:
        _exit_code.append(code)  # SystemExit never reaches excepthook: remember the code
        real_exit(code)

    sys.exit = exit_hook  # type: ignore[assignment]
    atexit.register(_finish_at_exit)


def _finish_at_exit() -> None:
    run = _active
    if run is not None:
        code = _exit_code[-1] if _exit_code else None
        status = RunStatus.FAILED if _uncaught or code not in (None, 0) else None
        run.finish(status=status) if isinstance(run, Run) else run.finish()
