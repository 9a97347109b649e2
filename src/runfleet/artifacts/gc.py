"""Reclaiming artefact storage once the runs that logged and used versions are purged."""

from __future__ import annotations

from dataclasses import dataclass, field

from runfleet.artifacts.objects import ObjectStore
from runfleet.home import Home
from runfleet.store.base import ArtifactRecord, Store

#: Objects written or reused this recently are kept even when no version lists them: they
#: may belong to a version another process is logging right now.
DEFAULT_GRACE_S = 3600.0


@dataclass
class PurgeReport:
    """What :func:`purge_unreferenced` deleted: versions, object files and bytes."""

    versions: list[ArtifactRecord] = field(default_factory=list)
    objects: int = 0
    bytes_freed: int = 0


def purge_unreferenced(store: Store, home: Home, *, grace_s: float = DEFAULT_GRACE_S
                       ) -> PurgeReport:
    """Delete artefact versions that only purged runs logged or used, then the stored files
    no remaining version references; return what was deleted.

    Call it after purging runs with :meth:`Store.purge_run` (``runfleet gc`` does): a run
    only soft-deleted still exists in the store, so what it logged or used is kept (it can
    be restored). Versions logged outside any run are kept. Files written or reused within
    the last ``grace_s`` seconds are kept too, so a version being logged concurrently by
    another process never loses its files.

    Example:
        >>> from runfleet.store.sqlite import SQLiteStore
        >>> home = Home.resolve("/tmp/rf-doc-gc")
        >>> store = SQLiteStore.open(home.db_path)
        >>> purge_unreferenced(store, home).objects
        0
        >>> store.close()
    """
    report = PurgeReport(versions=store.delete_orphaned_artifacts())
    referenced = {f.sha256 for v in store.artifact_versions() for f in v.files}
    report.objects, report.bytes_freed = ObjectStore(home).remove_unreferenced(
        referenced, grace_s)
    return report
