"""Where runfleet keeps its data: the home directory and the paths inside it.

A home is one directory holding one SQLite database (``runfleet.db``), a ``media/`` folder
for images, tables and histograms, and a ``spill/`` folder for points that could not be
written to the database yet. The home is resolved from, in order: an explicit ``dir``
argument, the ``RUNFLEET_DIR`` environment variable, or ``~/.runfleet``.

Permissions: a home that runfleet creates is private to its owner (the directory mode
0700, ``runfleet.db`` mode 0600; SQLite gives its ``-wal`` and ``-shm`` files the
database file's mode), since other local users could otherwise read the runs or plant
files in it. Set ``RUNFLEET_SHARED_HOME=1`` to create them with the umask's defaults
instead (a home shared by a group of users). A home that already exists keeps the
permissions it has. Spill folders (see :attr:`Home.spill_dirs`) are always private.
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
SHARED_ENV_VAR = "RUNFLEET_SHARED_HOME"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
EXPERIMENT_MARKER = "experiment.json"  # marks <home>/experiments/<name>/ as an experiment


def shared_home() -> bool:
    """True if ``RUNFLEET_SHARED_HOME`` asks for homes created with the umask's defaults
    (``1``, ``true``, ``yes`` or ``on``) rather than owner-only permissions."""
    return os.environ.get(SHARED_ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def make_home_dir(path: Path) -> bool:
    """Create the directory ``path`` (missing parents with default permissions), owner-only
    (0700) unless :func:`shared_home`; return True if it was created here. An existing
    directory is left as it is. Raises ``OSError`` if it cannot be created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private = not shared_home()
    try:
        os.mkdir(path, PRIVATE_DIR_MODE if private else 0o777)
    except FileExistsError:
        return False
    if private:
        os.chmod(path, PRIVATE_DIR_MODE)  # exactly 0700, whatever the umask
    return True


def create_private_file(path: Path) -> bool:
    """Create ``path`` as an empty owner-only (0600) file if it does not exist yet, unless
    :func:`shared_home`; return True if it was created here.

    Used for the database before its first connection: SQLite then keeps the mode (and
    gives it to ``-wal`` and ``-shm``). The descriptor closed here belongs to a file this
    call just created exclusively, so no SQLite connection of this process can hold locks
    on it (closing a descriptor of an open SQLite file would drop them all). Errors are
    left to SQLite to report when it opens the path.
    """
    if shared_home():
        return False
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | \
        getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, PRIVATE_FILE_MODE)
    except OSError:  # exists already (kept as it is), or unusable: SQLite will say why
        return False
    os.close(fd)
    return True


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
    def experiments_dir(self) -> Path:
        """Folder holding the engine's experiments, one folder per experiment name."""
        return self.root / "experiments"

    def is_experiment(self, project: str) -> bool:
        """Whether ``project`` is an engine experiment (its runs are managed by a
        controller, through ops) rather than a project of plain tracked runs."""
        if not project or "/" in project or project in (".", ".."):
            return False
        return (self.experiments_dir / project / EXPERIMENT_MARKER).exists()

    @property
    def media_dir(self) -> Path:
        """Folder holding media files (images, tables, histograms)."""
        return self.root / "media"

    @property
    def spill_dirs(self) -> list[Path]:
        """Folders where unwritable points are spilled, in order of preference.

        The first is inside the home; the second lives in the system temp folder, for when
        the home itself cannot be written (read-only or full disk). Its name is predictable,
        so :mod:`runfleet.tracking.spill` creates both with mode 0700 and uses a folder
        only if it is a real directory owned by the current user that nobody else can
        write to.
        """
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
        return [self.root / "spill", Path(tempfile.gettempdir()) / f"runfleet-spill-{digest}"]

    def ensure(self) -> None:
        """Create the home directory (owner-only unless ``RUNFLEET_SHARED_HOME=1``; see
        the module docstring), or raise :class:`StoreError` if the path is unusable."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(
                f"runfleet home {self.root} is a file, not a directory; "
                f"point RUNFLEET_DIR or dir= at a directory"
            )
        try:
            make_home_dir(self.root)
        except OSError as exc:
            raise StoreError(f"cannot create runfleet home {self.root}: {exc}") from exc
