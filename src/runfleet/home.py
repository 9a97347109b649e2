"""Where runfleet keeps its data: the home directory and the paths inside it.

A home is one directory holding one SQLite database (``runfleet.db``), a ``media/`` folder
for images, tables and histograms, and a ``spill/`` folder for points that could not be
written to the database yet. The home is resolved from, in order: an explicit ``dir``
argument, the ``RUNFLEET_DIR`` environment variable, or ``~/.runfleet``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runfleet.errors import StoreError

DB_NAME = "runfleet.db"
ENV_VAR = "RUNFLEET_DIR"


def default_home() -> Path:
    """The home used when neither ``dir=`` nor ``RUNFLEET_DIR`` is given: ``~/.runfleet``."""
    return Path.home() / ".runfleet"


@dataclass(frozen=True)
class Home:
    """A resolved home directory; every path runfleet writes is derived from it.

    Example:
        >>> Home.resolve("/tmp/rf").db_path.name
        'runfleet.db'
    """

    root: Path

    @classmethod
    def resolve(cls, dir: str | os.PathLike[str] | None = None) -> Home:
        """Resolve the home from ``dir``, then ``RUNFLEET_DIR``, then ``~/.runfleet``."""
        if dir is not None:
            root = Path(dir)
        elif os.environ.get(ENV_VAR):
            root = Path(os.environ[ENV_VAR])
        else:
            root = default_home()
        return cls(root.expanduser().resolve())

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.root / DB_NAME

    @property
    def media_dir(self) -> Path:
        """Folder holding media files (images, tables, histograms)."""
        return self.root / "media"

    @property
    def spill_dirs(self) -> list[Path]:
        """Folders where unwritable points are spilled, in order of preference.

        The first is inside the home; the second lives in the system temp folder, for when
        the home itself cannot be written (read-only or full disk).
        """
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
        return [self.root / "spill", Path(tempfile.gettempdir()) / f"runfleet-spill-{digest}"]

    def ensure(self) -> None:
        """Create the home directory, or raise :class:`StoreError` if the path is unusable."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(
                f"runfleet home {self.root} is a file, not a directory; "
                f"point RUNFLEET_DIR or dir= at a directory"
            )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create runfleet home {self.root}: {exc}") from exc
