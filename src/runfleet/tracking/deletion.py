"""Deleting tracked runs: soft delete, restore, and garbage collection.

A plain tracked run (made by :func:`runfleet.init`, or imported) is deleted *softly*: its
status becomes ``deleted`` and ``metadata["deleted"]`` records the status it had, when and by
whom it was deleted. Listings (``Api().runs``, ``runfleet runs``, the dashboard) hide it;
its rows, metrics and media stay until :func:`gc` purges them, and :func:`restore_run`
gives it back its previous status until then.

Rules, each with a clear refusal (:class:`DeleteRefusedError`):

* A run of an engine experiment (``Experiment.run_fit``) is deleted by the experiment's
  controller, which also drops its checkpoints: use ``Experiment.attach(p).delete(id)`` or
  ``runfleet delete`` (which writes the op); the functions here refuse such runs.
* A run still running (its process alive, or its heartbeat fresh when it runs on another
  host) is refused: deleting it under its own process would be undone when that process
  writes its status (finish, resume) and would hide data still arriving. Stop or finish it
  first; a crashed run (process gone) can be deleted.
* A deleted run cannot be resumed by ``runfleet.init(id=..., resume=...)`` until restored.

:func:`gc` purges every deleted run (of one project, or of the home): first each purge
hook (see :func:`default_purge_hooks`: the place where other stores of per-run data, such
as artefacts, drop what only this run used), then the run's media files under the home,
then its rows (points, media rows, alerts, the run).

Example:
    >>> deleted = delete_run(store, home, store.find_run("p", id="abc"))   # doctest: +SKIP
    >>> restore_run(store, home, deleted).status                            # doctest: +SKIP
    'completed'
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from runfleet.artifacts import purge_unreferenced
from runfleet.errors import RunfleetError
from runfleet.home import Home
from runfleet.store.base import RunRecord, RunStatus, Store
from runfleet.tracking.writer import HEARTBEAT_S

#: A running run whose heartbeat is older than this is taken for crashed.
CRASH_AFTER_S = 6 * HEARTBEAT_S

#: ``fn(store, home, run)``: called by :func:`purge_run` before the run's rows are deleted
#: (the run is still readable), to drop data kept elsewhere that only this run uses.
PurgeHook = Callable[[Store, Home, RunRecord], None]


class DeleteRefusedError(RunfleetError):
    """A delete or restore that cannot be done; the message says why and what to do."""


def default_purge_hooks() -> list[PurgeHook]:
    """The hooks :func:`gc` runs for each purged run when given none.

    This is the one place where stores of per-run data kept outside the runs table register
    a clean-up that needs the run itself. None are built in: media files are always
    removed, and artefacts are reclaimed once for all purged runs at the end of :func:`gc`
    (a version goes only when every run that logged or used it is purged).
    """
    return []


def process_alive(record: RunRecord, now: float | None = None) -> bool:
    """Whether the process writing ``record`` (a ``running`` run) still runs: its pid exists
    on this host, or, on another host, its heartbeat is recent."""
    now = time.time() if now is None else now
    beat = record.heartbeat or record.updated
    if now - beat < CRASH_AFTER_S:
        return True
    host, pid = record.metadata.get("host"), record.metadata.get("pid")
    if host == socket.gethostname() and isinstance(pid, int):
        return psutil.pid_exists(pid)
    return False


def _who() -> str:
    try:
        import getpass

        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "?"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def delete_run(store: Store, home: Home, record: RunRecord, actor: str | None = None
               ) -> RunRecord:
    """Soft-delete the plain tracked run ``record``; return it as stored afterwards.

    Raises :class:`DeleteRefusedError` for a run of an engine experiment, a run already
    deleted, or a run whose process is still running (see the module docstring)."""
    name = f"run {record.id} ({record.name}) of project {record.project!r}"
    if home.is_experiment(record.project):
        raise DeleteRefusedError(
            f"{name} belongs to an engine experiment: its controller deletes it (and its "
            f"checkpoints). Use `runfleet delete {record.id} --project {record.project}` "
            f"or Experiment.attach({record.project!r}).delete({record.id!r})")
    if record.status == RunStatus.DELETED:
        raise DeleteRefusedError(f"{name} is already deleted (`runfleet restore "
                                 f"{record.id}` brings it back)")
    if record.status == RunStatus.RUNNING and process_alive(record):
        where = record.metadata.get("host"), record.metadata.get("pid")
        raise DeleteRefusedError(
            f"{name} is still running (host {where[0]}, pid {where[1]}): finish or stop "
            f"its process first, then delete it")
    info: dict[str, Any] = {"status": str(record.status), "time": time.time(),
                            "by": actor or _who()}
    metadata = {**record.metadata, "deleted": info}
    if not store.update_run_if(record.rid, [record.status], status=RunStatus.DELETED,
                               metadata=metadata):
        now = store.get_run(record.rid)
        raise DeleteRefusedError(f"{name} changed status meanwhile (now {now.status}); "
                                 f"try again")
    return store.get_run(record.rid)


def restore_run(store: Store, home: Home, record: RunRecord) -> RunRecord:
    """Undo :func:`delete_run`: the run gets back the status it had and shows in listings
    again; return it as stored. Raises :class:`DeleteRefusedError` for a run that is not
    deleted, or one deleted by an experiment's controller (its checkpoints are gone)."""
    name = f"run {record.id} ({record.name}) of project {record.project!r}"
    if record.status != RunStatus.DELETED:
        raise DeleteRefusedError(f"{name} is not deleted (status {record.status})")
    info = record.metadata.get("deleted")
    if not isinstance(info, dict) or info.get("status") not in tuple(RunStatus):
        raise DeleteRefusedError(
            f"{name} was deleted by its experiment's controller, which dropped its "
            f"checkpoints: it cannot be restored (clone another run instead)")
    metadata = {k: v for k, v in record.metadata.items() if k != "deleted"}
    metadata.setdefault("restored", []).append(time.time())
    if not store.update_run_if(record.rid, [RunStatus.DELETED], status=info["status"],
                               metadata=metadata):
        raise DeleteRefusedError(f"{name} changed status meanwhile; try again")
    return store.get_run(record.rid)


@dataclass
class PurgeReport:
    """What :func:`gc` purged (or, with ``dry_run``, would purge)."""

    runs: list[RunRecord] = field(default_factory=list)
    files: int = 0  # media files removed
    bytes: int = 0  # their size
    artifact_versions: int = 0  # artefact versions only purged runs logged or used
    artifact_bytes: int = 0  # stored artefact files no remaining version lists

    def describe(self, dry_run: bool = False) -> str:
        """One line for people."""
        verb = "would purge" if dry_run else "purged"
        line = (f"{verb} {len(self.runs)} deleted run(s), {self.files} media file(s), "
                f"{self.bytes} byte(s) of media")
        if self.artifact_versions or self.artifact_bytes:
            line += (f", {self.artifact_versions} artefact version(s), "
                     f"{self.artifact_bytes} byte(s) of artefact files")
        return line


def purge_run(store: Store, home: Home, record: RunRecord,
              hooks: Sequence[PurgeHook] = (), report: PurgeReport | None = None) -> None:
    """Purge a run for good: ``hooks`` (see :data:`PurgeHook`), then its media files under
    the home (a path outside the home's media folder is never touched), then its rows."""
    for hook in hooks:
        hook(store, home, record)
    media_root = home.media_dir.resolve()
    folders: set[Path] = set()
    for row in store.media(record.rid):
        given = home.root / row.path
        path = given.parent.resolve() / given.name  # the file itself is never followed
        if not path.is_relative_to(media_root) or path == media_root:
            continue  # outside the media folder: not ours
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                continue  # a symlink (or anything but a file) planted in its place
            size = st.st_size
            path.unlink()
        except FileNotFoundError:
            continue
        folders.add(path.parent)
        if report is not None:
            report.files += 1
            report.bytes += size
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        while folder != media_root and folder.is_relative_to(media_root):
            try:
                folder.rmdir()  # only when empty: other runs' files stay
            except OSError:
                break
            folder = folder.parent
    store.purge_run(record.rid)


def gc(store: Store, home: Home, project: str | None = None, dry_run: bool = False,
       hooks: Sequence[PurgeHook] | None = None) -> PurgeReport:
    """Purge every deleted run of ``project`` (None: of every project) with
    :func:`purge_run`; with ``dry_run``, only report what would go. Runs deleted by an
    experiment's controller are purged too. ``hooks`` default to
    :func:`default_purge_hooks`."""
    hooks = default_purge_hooks() if hooks is None else hooks
    names = [project] if project is not None else [p.name for p in store.projects()]
    report = PurgeReport()
    for name in names:
        for record in store.runs(name):
            if record.status != RunStatus.DELETED:
                continue
            report.runs.append(record)
            if dry_run:
                for row in store.media(record.rid):
                    path = home.root / row.path
                    if path.is_file():
                        report.files += 1
                        report.bytes += path.stat().st_size
            else:
                purge_run(store, home, record, hooks, report)
    if not dry_run:
        # artefacts: versions that only the purged runs logged or used, then the files no
        # remaining version lists (after the runs, whose purge marks their lineage links)
        freed = purge_unreferenced(store, home)
        report.artifact_versions, report.artifact_bytes = len(freed.versions), \
            freed.bytes_freed
    return report
