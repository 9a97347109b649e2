"""``wandb.env`` under :func:`runfleet.patch_wandb`: the setters some libraries call
(transformers' hyperparameter search) to choose the project of the next ``wandb.init()``."""

from __future__ import annotations

import os

PROJECT = "WANDB_PROJECT"
ENTITY = "WANDB_ENTITY"


def set_project(value: str | None) -> None:
    """Make ``value`` the project of runs started by ``wandb.init()`` without one."""
    if value:
        os.environ[PROJECT] = str(value)


def set_entity(value: str | None) -> None:
    """Accepted for wandb compatibility: runfleet has no entities (kept in the environment,
    unused)."""
    if value:
        os.environ[ENTITY] = str(value)


__all__ = ["ENTITY", "PROJECT", "set_entity", "set_project"]
