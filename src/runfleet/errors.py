"""Exceptions raised by runfleet, each naming what went wrong and where."""

from __future__ import annotations


class RunfleetError(Exception):
    """Base class of every error runfleet raises on purpose."""


class StoreError(RunfleetError):
    """The store at a home directory cannot be opened or used.

    Raised for a home path that is a file, a database file that is corrupt or belongs to
    another program, or a schema written by a newer runfleet. The message names the path.
    """


class RunNotFoundError(RunfleetError, LookupError):
    """A run id or name asked for does not exist in the store."""


class UsageError(RunfleetError):
    """A call made in the wrong order, e.g. setting ``runfleet.config`` before ``init()``
    (wandb raises its own usage error there too; ``wandb.errors.UsageError`` is this class
    under :func:`runfleet.patch_wandb`)."""


class ArtifactNotFoundError(RunfleetError, LookupError):
    """An artefact name, version or alias asked for does not exist in the store."""
