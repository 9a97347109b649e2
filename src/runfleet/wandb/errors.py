"""``wandb.errors`` under :func:`runfleet.patch_wandb`: wandb's exception names, mapped onto
runfleet's (``Error`` is :class:`runfleet.RunfleetError`, so ``except wandb.Error`` catches
what runfleet raises on purpose)."""

from __future__ import annotations

from runfleet.errors import RunfleetError, UsageError

#: wandb's base error: every error runfleet raises on purpose is one.
Error = RunfleetError


class CommError(RunfleetError):
    """wandb's communication error; runfleet talks to no server, so it is never raised,
    but code that catches it keeps working."""


class AuthenticationError(CommError):
    """wandb's login error; never raised (runfleet needs no login)."""


__all__ = ["AuthenticationError", "CommError", "Error", "UsageError"]
