"""``Artifact``: a named, typed, versioned set of files, and how runs log and use them.

Example:
    >>> import runfleet
    >>> art = runfleet.Artifact("tiny-data", type="dataset")
    >>> art.name, art.type, art.version
    ('tiny-data', 'dataset', None)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

from runfleet.artifacts.objects import (
    ObjectStore,
    artifacts_dir,
    copy_atomic,
    make_dirs,
    path_component,
)
from runfleet.errors import ArtifactNotFoundError
from runfleet.home import Home
from runfleet.store.base import ArtifactFile, ArtifactLink, ArtifactRecord, Store, StoreBusyError

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_VERSION = re.compile(r"^v\d+$")
_BUSY_RETRIES = 20


def check_name(what: str, value: Any) -> str:
    """``value`` if it is a valid artefact name, type or alias (letters, digits, ``_``,
    ``-`` and ``.``, not starting with ``.`` or ``-``); else ``ValueError`` naming it."""
    if not isinstance(value, str) or not _NAME.match(value) or len(value) > 128:
        raise ValueError(f"artefact {what} {value!r} is not valid: use letters, digits, "
                         f"'_', '-' and '.' (at most 128, not starting with '.' or '-')")
    return value


def _check_alias(alias: Any) -> str:
    check_name("alias", alias)
    if _VERSION.match(alias):
        raise ValueError(f"artefact alias {alias!r} looks like a version number; "
                         f"versions are named by runfleet, choose another alias")
    return str(alias)


def _check_inner_path(path: str) -> str:
    p = PurePosixPath(path.replace(os.sep, "/"))
    if p.is_absolute() or not p.parts or any(part in ("", ".", "..") for part in p.parts):
        raise ValueError(f"path {path!r} inside an artefact must be relative, without "
                         f"'.' or '..' parts")
    return p.as_posix()


def parse_ref(ref: str, project: str) -> tuple[str, str, str]:
    """Split ``"name"``, ``"name:ref"`` or ``"project/name:ref"`` into ``(project, name,
    ref)``; the ref defaults to ``latest`` and the project to ``project``."""
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"an artefact is named 'name', 'name:version' or "
                         f"'project/name:alias', got {ref!r}")
    path, _, version = ref.partition(":")
    proj, _, name = path.rpartition("/")
    return proj or project, check_name("name", name), version or "latest"


class Artifact:
    """A named, typed set of files that runs log (output) and use (input), versioned.

    Build one with :meth:`add_file` and :meth:`add_dir`, then ``run.log_artifact(art)``:
    the files are stored once each by content under the home, and the artefact gets the
    next version (``v0``, ``v1`` ...) unless a version with exactly the same files exists,
    which is reused. ``run.use_artifact("name:latest")`` returns a logged one whose
    :meth:`download` and :meth:`file` give local paths.

    Attributes after logging or use: ``version`` (``"v3"``), ``aliases``, ``digest``,
    ``size``, ``project``, ``producer`` and ``users`` (lineage); ``None`` or empty before.

    Example:
        >>> art = Artifact("weights", type="model", metadata={"epochs": 3})
        >>> art.qualified_name
        'weights'
    """

    def __init__(self, name: str, type: str, description: str | None = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        self.name = check_name("name", name)
        self.type = check_name("type", type)
        self.description = description
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._staged: dict[str, Path] = {}
        self._staging: Path | None = None  # private temporary folder of new_file()
        self._record: ArtifactRecord | None = None
        self._home: Home | None = None

    # -- building ---------------------------------------------------------------------------
    def add_file(self, local_path: str | os.PathLike[str], name: str | None = None, *,
                 is_tmp: bool = False, skip_cache: bool | None = None,
                 policy: str | None = None, overwrite: bool = False) -> str:
        """Add the file ``local_path`` as ``name`` (default: its file name) inside the
        artefact; return that name. Its content is read when the artefact is logged.
        ``is_tmp``, ``skip_cache``, ``policy`` and ``overwrite`` are accepted for wandb
        compatibility (a name added twice always takes the last file)."""
        self._check_mutable()
        path = Path(local_path)
        if not path.is_file():
            raise ValueError(f"cannot add {path} to artefact {self.name!r}: not a file")
        inner = _check_inner_path(name if name is not None else path.name)
        self._staged[inner] = path.resolve()
        return inner

    def add_dir(self, local_path: str | os.PathLike[str], name: str | None = None, *,
                skip_cache: bool | None = None, policy: str | None = None,
                merge: bool = False) -> list[str]:
        """Add every file under the folder ``local_path`` (recursively, keeping relative
        paths, under the prefix ``name`` if given); return the names added.
        ``skip_cache``, ``policy`` and ``merge`` are accepted for wandb compatibility."""
        self._check_mutable()
        root = Path(local_path)
        if not root.is_dir():
            raise ValueError(f"cannot add {root} to artefact {self.name!r}: not a folder")
        added = []
        for f in sorted(root.rglob("*")):
            if f.is_file():
                rel = f.relative_to(root).as_posix()
                added.append(self.add_file(f, f"{name}/{rel}" if name else rel))
        if not added:
            raise ValueError(f"folder {root} holds no files to add to artefact {self.name!r}")
        return added

    @contextmanager
    def new_file(self, name: str, mode: str = "x", encoding: str | None = None
                 ) -> Iterator[IO[Any]]:
        """Open a new file ``name`` inside the artefact for writing (``mode`` ``"x"``/``"w"``
        for text, ``"xb"``/``"wb"`` for bytes); it is added when the block ends.

        Example:
            >>> art = Artifact("notes", type="text")
            >>> with art.new_file("readme.txt") as f:
            ...     _ = f.write("hello")
        """
        self._check_mutable()
        if mode not in ("x", "w", "xb", "wb"):
            raise ValueError(f"new_file() writes a new file: mode 'x', 'w', 'xb' or 'wb', "
                             f"not {mode!r}")
        inner = _check_inner_path(name)
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="runfleet-artifact-"))
            weakref.finalize(self, shutil.rmtree, str(self._staging), True)
        path = self._staging / uuid.uuid4().hex
        with open(path, "x" + ("b" if "b" in mode else ""), encoding=encoding) as f:
            yield f
        self._staged[inner] = path

    def _check_mutable(self) -> None:
        if self._record is not None:
            raise ValueError(f"artefact {self.qualified_name} is logged and cannot change; "
                             f"make a new Artifact({self.name!r}, ...) for a new version")

    # -- reading ----------------------------------------------------------------------------
    @property
    def version(self) -> str | None:
        """``"v<N>"`` once logged or used, else None."""
        return f"v{self._record.version}" if self._record else None

    @property
    def aliases(self) -> list[str]:
        """Aliases of this version (``latest`` first when it is the newest)."""
        return list(self._record.aliases) if self._record else []

    @property
    def digest(self) -> str | None:
        """The sha256 of the artefact's manifest (paths and file hashes) once logged."""
        return self._record.digest if self._record else None

    @property
    def size(self) -> int:
        """Total bytes of the files (of the logged version, or of those added so far)."""
        if self._record:
            return self._record.size
        return sum(p.stat().st_size for p in self._staged.values())

    @property
    def project(self) -> str | None:
        """The project the version belongs to, once logged or used."""
        return self._record.project if self._record else None

    @property
    def qualified_name(self) -> str:
        """``project/name:vN`` once logged or used, else the bare name."""
        if self._record is None:
            return self.name
        return f"{self._record.project}/{self.name}:v{self._record.version}"

    @property
    def producer(self) -> ArtifactLink | None:
        """The run that logged this version (lineage), or None."""
        return self._record.producer if self._record else None

    @property
    def users(self) -> list[ArtifactLink]:
        """The runs that used this version (lineage; as of when it was logged or used)."""
        return self._record.users if self._record else []

    def files(self) -> list[ArtifactFile]:
        """The files of the version (path inside the artefact, sha256, size); before
        logging, the files added so far (their sha256 empty: content is read at logging)."""
        if self._record is None:
            return [ArtifactFile(k, "", p.stat().st_size) for k, p in sorted(self._staged.items())]
        return list(self._record.files)

    def download(self, root: str | os.PathLike[str] | None = None) -> str:
        """Copy the version's files into the folder ``root`` (default:
        ``<home>/artifacts/files/<project>/<name>/v<N>``) and return its path. Files
        already there and unchanged are not copied again."""
        record, home = self._require_logged("download")
        objects = ObjectStore(home)
        if root is None:
            dest_root = artifacts_dir(home) / "files" / path_component(record.project) / \
                path_component(record.name) / f"v{record.version}"
            home.ensure()
            make_dirs(dest_root, home.root)
        else:
            dest_root = Path(root)
            dest_root.mkdir(parents=True, exist_ok=True)
        for f in record.files:
            src = objects.path(f.sha256)
            if not src.is_file():
                raise ArtifactNotFoundError(
                    f"file {f.path!r} of artefact {self.qualified_name} is missing from "
                    f"{objects.root} (object {f.sha256[:12]}...); the home was altered")
            dest = dest_root / _check_inner_path(f.path)  # never outside the folder
            if root is None:
                make_dirs(dest.parent, dest_root)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
            st_src = src.stat()
            if dest.is_file():
                st = dest.stat()
                if st.st_size == f.size and st.st_mtime_ns == st_src.st_mtime_ns:
                    continue
            copy_atomic(src, dest)
            os.utime(dest, ns=(st_src.st_atime_ns, st_src.st_mtime_ns))
        return str(dest_root)

    def file(self, name: str | None = None, root: str | os.PathLike[str] | None = None
             ) -> str:
        """Download (see :meth:`download`) and return the local path of the file ``name``;
        without ``name`` the artefact must hold exactly one file."""
        record, _ = self._require_logged("file")
        paths = [f.path for f in record.files]
        if name is None:
            if len(paths) != 1:
                raise ValueError(f"artefact {self.qualified_name} holds {len(paths)} files; "
                                 f"name one: file(name) with name in {paths[:10]}")
            name = paths[0]
        if name not in paths:
            raise ArtifactNotFoundError(f"artefact {self.qualified_name} has no file {name!r}"
                                        f" (files: {paths[:10]})")
        return str(Path(self.download(root)) / name)

    def _require_logged(self, what: str) -> tuple[ArtifactRecord, Home]:
        if self._record is None or self._home is None:
            raise ValueError(f"{what}() needs a logged artefact: log it with "
                             f"run.log_artifact() or get one with run.use_artifact()")
        return self._record, self._home

    def _bind(self, record: ArtifactRecord, home: Home) -> Artifact:
        self._record = record
        self._home = home
        self.description = record.description
        self.metadata = dict(record.metadata)
        return self

    @classmethod
    def from_record(cls, record: ArtifactRecord, home: Home) -> Artifact:
        """An :class:`Artifact` for a stored version of ``home`` (for readers such as the
        Api and the CLI)."""
        art = cls(record.name, record.type)
        return art._bind(record, home)

    def __repr__(self) -> str:
        return f"<Artifact {self.qualified_name} type={self.type!r}>"


def _retry_busy(fn: Any) -> Any:
    for attempt in range(_BUSY_RETRIES):
        try:
            return fn()
        except StoreBusyError:
            if attempt == _BUSY_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def manifest_digest(files: Iterable[ArtifactFile]) -> str:
    """The digest of a set of files: sha256 of their sorted paths and content hashes. Two
    artefacts with the same digest hold the same files under the same names."""
    entries = sorted([f.path, f.sha256] for f in files)
    return hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest()


def as_artifact(artifact_or_path: Artifact | str | os.PathLike[str], name: str | None,
                type: str | None) -> Artifact:
    """``artifact_or_path`` itself, or a new :class:`Artifact` holding the file or folder
    at that path (named ``name`` or the path's last part, of ``type`` or
    ``"unspecified"``)."""
    if isinstance(artifact_or_path, Artifact):
        if name is not None and name != artifact_or_path.name:
            raise ValueError(f"name={name!r} differs from the artefact's name "
                             f"{artifact_or_path.name!r}")
        if type is not None and type != artifact_or_path.type:
            raise ValueError(f"type={type!r} differs from the artefact's type "
                             f"{artifact_or_path.type!r}")
        return artifact_or_path
    if not isinstance(artifact_or_path, (str, os.PathLike)):
        raise TypeError(f"log_artifact() takes an Artifact or a path, got "
                        f"{artifact_or_path.__class__.__name__}")
    path = Path(artifact_or_path)
    if not path.exists():
        raise ValueError(f"cannot log artefact from {path}: no such file or folder")
    default = re.sub(r"[^A-Za-z0-9_.\-]", "_", path.resolve().name).lstrip(".-") or "artifact"
    art = Artifact(name or default, type or "unspecified")
    if path.is_dir():
        art.add_dir(path)
    else:
        art.add_file(path)
    return art


def save_artifact(store: Store, home: Home, project: str, artifact: Artifact, *,
                  run: int | None = None, aliases: Iterable[str] = ()) -> Artifact:
    """Store ``artifact``'s files in ``home`` and record its version in ``store`` (as
    logged by run ``run``, an internal run id); bind and return ``artifact``.

    An artefact already logged is not stored again: it is linked to ``run`` and given
    ``aliases``.
    """
    alias_list = [_check_alias(a) for a in aliases]
    if artifact._record is None:
        if not artifact._staged:
            raise ValueError(f"artefact {artifact.name!r} holds no files; add some with "
                             f"add_file() or add_dir() before logging it")
        objects = ObjectStore(home)
        files = []
        for inner, src in sorted(artifact._staged.items()):
            try:
                sha, size = objects.put(src)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot store file {src} of artefact "
                                         f"{artifact.name!r} in {objects.root}: {exc}") from exc
            files.append(ArtifactFile(inner, sha, size))
        digest = manifest_digest(files)
        if artifact._staging is not None:  # new_file()s are stored: their copies can go
            shutil.rmtree(artifact._staging, ignore_errors=True)
    else:
        files = list(artifact._record.files)
        digest = artifact._record.digest
        project = artifact._record.project
    record, _ = _retry_busy(lambda: store.add_artifact_version(
        project, artifact.name, artifact.type, digest, files,
        description=artifact.description, metadata=artifact.metadata,
        aliases=alias_list, run=run))
    return artifact._bind(record, home)


def use_artifact(store: Store, home: Home, project: str,
                 artifact_or_name: Artifact | str, *, type: str | None = None,
                 run: int | None = None) -> Artifact:
    """The stored version named by ``artifact_or_name`` (``"name"``, ``"name:v1"``,
    ``"name:alias"``, ``"project/name:latest"``, or a logged :class:`Artifact`), linked as
    used by run ``run``. Raises ``ArtifactNotFoundError`` if there is no such version and
    ``ValueError`` if it is not of ``type`` (when given)."""
    if isinstance(artifact_or_name, Artifact):
        if artifact_or_name._record is None:
            raise ValueError(f"artefact {artifact_or_name.name!r} has not been logged; "
                             f"log it with run.log_artifact() first")
        rec = artifact_or_name._record
        proj, name, ref = rec.project, rec.name, f"v{rec.version}"
    else:
        proj, name, ref = parse_ref(artifact_or_name, project)
    record = store.artifact_version(proj, name, ref)
    if type is not None and record.type != type:
        raise ValueError(f"artefact {proj}/{name}:{ref} has type {record.type!r}, "
                         f"not {type!r}")
    if run is not None:
        _retry_busy(lambda: store.use_artifact_version(record.id, run))
        record = store.artifact_version(proj, name, f"v{record.version}")
    return Artifact.from_record(record, home)

