"""What ``runfleet.config`` and ``runfleet.summary`` are before ``init()``.

wandb refuses to read or set ``wandb.config`` and ``wandb.summary`` before ``wandb.init()``;
so does runfleet, instead of keeping the values in an object no run will ever see.
"""

from __future__ import annotations

from typing import Any, NoReturn

from runfleet.errors import UsageError


class PreInitObject:
    """A stand-in for a run's ``config`` or ``summary`` while no run is active: every read
    or write raises :class:`~runfleet.errors.UsageError` telling the user to call ``init()``
    first. It is falsy, so ``if runfleet.config:`` does not raise."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _refuse(self, what: str) -> NoReturn:
        raise UsageError(
            f"{self._name}{what} needs an active run: call runfleet.init() (or wandb.init() "
            f"under patch_wandb) first; values set before init() would be lost")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._refuse(f".{name}")

    def __setattr__(self, name: str, value: Any) -> None:
        self._refuse(f".{name} = ...")

    def __delattr__(self, name: str) -> None:
        self._refuse(f".{name}")

    def __getitem__(self, key: Any) -> Any:
        self._refuse(f"[{key!r}]")

    def __setitem__(self, key: Any, value: Any) -> None:
        self._refuse(f"[{key!r}] = ...")

    def __delitem__(self, key: Any) -> None:
        self._refuse(f"[{key!r}]")

    def __contains__(self, key: Any) -> bool:
        self._refuse(f" ({key!r} in ...)")

    def __iter__(self) -> Any:
        self._refuse(" (iterating)")

    def __len__(self) -> int:
        self._refuse(" (len)")

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<{self._name} before init(): call runfleet.init() first>"
