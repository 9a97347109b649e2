"""The content-addressed file store of a home: every artefact file once, named by its sha256.

Layout: ``<home>/artifacts/objects/<first two hex digits>/<sha256>``. A file is written
to a temporary name in its final folder and renamed into place, so a reader never sees a
partial object; an object that exists already is not written again (the same content in
two versions or two artefacts is stored once). Folders are created owner-only and files
mode 0600, unless ``RUNFLEET_SHARED_HOME=1`` (see :mod:`runfleet.home`).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from runfleet.home import PRIVATE_FILE_MODE, Home, make_home_dir, shared_home

CHUNK = 1 << 20


_OBJECT_DIR = re.compile(r"[0-9a-f]{2}")
_OBJECT_NAME = re.compile(r"[0-9a-f]{64}")


def _real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)  # a symlink to a folder is not one
    except OSError:
        return False


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def path_component(text: str) -> str:
    """``text`` as one folder name that cannot climb out of its parent (project and
    artefact names are free text): unsafe characters become ``_``, and a short hash of the
    original keeps two names that clean to the same text apart."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]
    if cleaned == text and cleaned not in ("", ".", ".."):
        return cleaned
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned.strip('.') or '_'}-{digest}"


def artifacts_dir(home: Home) -> Path:
    """The home's artefact folder (objects and downloaded copies)."""
    return home.root / "artifacts"


def make_dirs(path: Path, stop: Path) -> None:
    """Create ``path`` and its missing parents below ``stop``, each owner-only unless the
    home is shared (``stop`` itself must exist)."""
    missing = []
    p = path
    while p != stop and not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        make_home_dir(d)


def sha256_file(path: Path) -> tuple[str, int]:
    """The sha256 (hex) and size in bytes of the file at ``path``."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def copy_atomic(src: Path, dest: Path) -> tuple[str, int]:
    """Copy ``src`` to ``dest`` through a temporary file renamed into place (owner-only
    unless the home is shared); return the sha256 and size of what was copied."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    mode = 0o666 if shared_home() else PRIVATE_FILE_MODE
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    h = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return h.hexdigest(), size


class ObjectStore:
    """The content-addressed objects of one home.

    Example:
        >>> from runfleet.home import Home
        >>> objects = ObjectStore(Home.resolve("/tmp/rf-doc"))
        >>> objects.path("ab" * 32).parent.name
        'ab'
    """

    def __init__(self, home: Home) -> None:
        self.home = home
        self.root = artifacts_dir(home) / "objects"

    def path(self, sha256: str) -> Path:
        """Where the object with this sha256 lives (whether or not it exists)."""
        return self.root / sha256[:2] / sha256

    def put(self, src: Path) -> tuple[str, int]:
        """Store the file ``src`` unless its content is stored already; return its sha256
        and size. Raises ``OSError`` if ``src`` cannot be read or the home written, and
        ``RuntimeError`` if ``src`` changed while it was being stored."""
        sha, size = sha256_file(src)
        dest = self.path(sha)
        if dest.exists():
            os.utime(dest)  # fresh again: a concurrent purge leaves recent objects alone
            return sha, size
        self.home.ensure()
        make_dirs(dest.parent, self.home.root)
        copied, copied_size = copy_atomic(src, dest)
        if copied != sha:
            os.unlink(dest)
            raise RuntimeError(f"{src} changed while it was being stored as an artefact "
                               f"file ({size} then {copied_size} bytes); log it again once "
                               f"it is no longer being written")
        return sha, size

    def all(self) -> Iterator[Path]:
        """Every stored object file: regular files named by their sha256 in the folder of
        its first two digits. Anything else (temporary files, symlinks, folders planted by
        another member of a shared home) is never listed, so never deleted."""
        if not _real_dir(self.root):
            return
        for sub in sorted(self.root.iterdir()):
            if not (_OBJECT_DIR.fullmatch(sub.name) and _real_dir(sub)):
                continue
            for f in sorted(sub.iterdir()):
                if _OBJECT_NAME.fullmatch(f.name) and f.name[:2] == sub.name and \
                        _regular_file(f):
                    yield f

    def remove_unreferenced(self, referenced: set[str], grace_s: float) -> tuple[int, int]:
        """Delete objects whose sha256 is not in ``referenced`` and that were not written
        or reused within the last ``grace_s`` seconds (they may belong to a version being
        logged right now); return how many files and bytes were deleted."""
        count = freed = 0
        cutoff = time.time() - grace_s
        for f in self.all():
            if f.name in referenced:
                continue
            try:
                st = f.stat()
                if st.st_mtime > cutoff:
                    continue
                f.unlink()
            except FileNotFoundError:
                continue
            count += 1
            freed += st.st_size
        return count, freed
