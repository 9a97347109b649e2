"""Artefacts: versioned, typed sets of files that runs log and use, stored once by content.

* ``artifact``: :class:`Artifact`, and how a run logs (:func:`save_artifact`) and uses
  (:func:`use_artifact`) one.
* ``objects``: the home's content-addressed file store (``<home>/artifacts/objects``).
* ``gc``: :func:`purge_unreferenced`, reclaiming what only purged runs referenced.

Versions, aliases and lineage are rows of the home's store (see
:meth:`runfleet.store.base.Store.add_artifact_version`).
"""

from runfleet.artifacts.artifact import Artifact, parse_ref, save_artifact, use_artifact
from runfleet.artifacts.gc import PurgeReport, purge_unreferenced
from runfleet.artifacts.objects import ObjectStore

__all__ = [
    "Artifact",
    "ObjectStore",
    "PurgeReport",
    "parse_ref",
    "purge_unreferenced",
    "save_artifact",
    "use_artifact",
]
