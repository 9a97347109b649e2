"""``wandb.sdk`` under :func:`runfleet.patch_wandb`: the names libraries import from it."""

from __future__ import annotations

from runfleet.tracking.run import Run
from runfleet.tracking.settings import Settings
from runfleet.wandb.sdk import lib, wandb_run, wandb_settings

__all__ = ["Run", "Settings", "lib", "wandb_run", "wandb_settings"]
