"""``wandb.sdk.wandb_settings`` under :func:`runfleet.patch_wandb`: ``Settings`` is
:class:`runfleet.Settings`."""

from __future__ import annotations

from runfleet.tracking.settings import Settings

__all__ = ["Settings"]
