"""runfleet's version, read from the installed package's metadata (its one home is
``pyproject.toml``)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("runfleet")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
