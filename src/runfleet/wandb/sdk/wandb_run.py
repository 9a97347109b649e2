"""``wandb.sdk.wandb_run`` (and ``wandb.wandb_run``) under :func:`runfleet.patch_wandb`:
``Run`` is runfleet's :class:`~runfleet.tracking.run.Run`, for ``isinstance`` checks."""

from __future__ import annotations

from runfleet.tracking.run import Run

__all__ = ["Run"]
