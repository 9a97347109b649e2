"""``wandb.sdk.lib`` under :func:`runfleet.patch_wandb`: ``config_util`` and
``RunDisabled`` (the run of ``mode="disabled"``)."""

from __future__ import annotations

from runfleet.tracking.disabled import DisabledRun as RunDisabled
from runfleet.wandb.sdk.lib import config_util

__all__ = ["RunDisabled", "config_util"]
