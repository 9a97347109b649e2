"""``wandb.sdk.lib.config_util`` under :func:`runfleet.patch_wandb`.

transformers' ``WandbCallback`` imports ``ConfigError`` from here to catch a refused config
change. runfleet's config accepts every change (``allow_val_change`` is always true), so it
is not raised by config updates; it exists so that such code imports and runs.
"""

from __future__ import annotations

from runfleet.errors import RunfleetError


class ConfigError(RunfleetError):
    """wandb's error for a refused config change (never raised by runfleet's config)."""


__all__ = ["ConfigError"]
