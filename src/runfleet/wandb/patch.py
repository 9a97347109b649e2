"""Make ``import wandb`` give runfleet's stand-in (:mod:`runfleet.wandb`).

:func:`patch_wandb` puts a finder at the front of ``sys.meta_path`` that answers for
``wandb`` and every ``wandb.<name>`` with the module ``runfleet.wandb.<name>`` (the same
object, so ``wandb.sdk is runfleet.wandb.sdk``). It works whether or not wandb is
installed; ``importlib.util.find_spec("wandb")`` finds the stand-in, so libraries that check
for wandb (transformers' ``is_wandb_available``) see it. A ``wandb`` module imported before
the patch is dropped from ``sys.modules``; names other modules already took from it keep
pointing to the real one, so patch before importing code that imports wandb (transformers
and TRL import it lazily or at import: patch before importing TRL).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import warnings
from types import ModuleType
from typing import Any

PREFIX = "wandb"
TARGET = "runfleet.wandb"
_lock = threading.Lock()


def _target_name(fullname: str) -> str:
    return TARGET + fullname[len(PREFIX):]


def _is_wandb(fullname: str) -> bool:
    return fullname == PREFIX or fullname.startswith(PREFIX + ".")


class WandbAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The meta-path finder and loader that map ``wandb[.x]`` to ``runfleet.wandb[.x]``."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        """A spec for ``wandb`` names that ``runfleet.wandb`` has; None for all others
        (so ``import wandb.nothing`` fails with the usual ``ModuleNotFoundError``)."""
        if not _is_wandb(fullname):
            return None
        real = _target_name(fullname)
        try:
            real_spec = importlib.util.find_spec(real)
        except ModuleNotFoundError:
            return None
        if real_spec is None:
            return None
        return importlib.util.spec_from_loader(
            fullname, self, is_package=real_spec.submodule_search_locations is not None)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        """The ``runfleet.wandb`` module itself (imported if needed)."""
        module = importlib.import_module(_target_name(spec.name))
        # The import system sets __spec__ to the alias's spec next: keep the real one.
        module.__dict__["_runfleet_own_spec"] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (the module ran under its ``runfleet.wandb`` name): give it back
        its own ``__spec__``, so it stays importable and reloadable under that name."""
        own = module.__dict__.pop("_runfleet_own_spec", None)
        if own is not None:
            module.__spec__ = own


def _finder() -> WandbAliasFinder | None:
    return next((f for f in sys.meta_path if isinstance(f, WandbAliasFinder)), None)


def is_patched() -> bool:
    """Whether ``import wandb`` gives runfleet's stand-in in this process."""
    return _finder() is not None


def patch_wandb() -> ModuleType:
    """Make ``import wandb`` (and ``import wandb.<submodule>``) give runfleet's stand-in for
    the rest of the process, whether or not wandb is installed; returns the stand-in.

    Calling it again does nothing. If the real wandb was already imported it is dropped
    from ``sys.modules`` (with a warning: objects taken from it earlier keep pointing to
    it). Setting ``RUNFLEET_WANDB=1`` in the environment makes ``import runfleet`` call it.
    """
    with _lock:
        if _finder() is None:
            stale = [n for n in sys.modules if _is_wandb(n)
                     and not getattr(sys.modules[n], "__name__", "").startswith(TARGET)]
            if stale:
                warnings.warn("patch_wandb(): the real wandb was already imported; modules "
                              "that imported it before keep using it. Call patch_wandb() "
                              "(or set RUNFLEET_WANDB=1) before importing them.",
                              UserWarning, stacklevel=2)
                for name in stale:
                    del sys.modules[name]
            sys.meta_path.insert(0, WandbAliasFinder())
        return importlib.import_module(PREFIX)


def unpatch_wandb() -> None:
    """Undo :func:`patch_wandb`: ``import wandb`` finds the real package again (or fails
    when it is not installed). Modules that hold the stand-in keep it."""
    with _lock:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, WandbAliasFinder)]
        for name in [n for n in sys.modules if _is_wandb(n)]:
            if getattr(sys.modules[name], "__name__", "").startswith(TARGET):
                del sys.modules[name]


__all__ = ["WandbAliasFinder", "is_patched", "patch_wandb", "unpatch_wandb"]
