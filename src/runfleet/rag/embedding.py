"""Embedding passages and queries with sentence-transformers models.

Models are loaded from a local folder or, by name, from the Hugging Face cache only: this
module sets ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` (unless already set) and
passes ``local_files_only=True`` to the loaders, so a load never waits on the network.
Set ``HF_HUB_OFFLINE=0`` before the first load to allow downloads. A reference that looks
like a path (``/``, ``./``, ``../``, ``~``) and does not exist fails with
:class:`ModelNotFoundError` naming it, before any loader runs.

sentence-transformers and torch are imported when a model is first loaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runfleet.errors import RunfleetError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "ModelError",
    "ModelNotFoundError",
    "embed",
    "hub_offline",
    "load_embedder",
    "looks_like_path",
    "normalize_rows",
    "resolve_model",
]

_FALSE = ("0", "false", "no", "off")


class ModelError(RunfleetError):
    """A model (embedder, reranker, generator, tokenizer) that cannot be loaded; the
    message names it and says why."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """A model folder that does not exist, or a model name that is not in the local
    Hugging Face cache while the hub is offline."""


def hub_offline() -> bool:
    """Put the Hugging Face libraries in offline mode unless the environment already says
    otherwise, and tell whether models must come from local files only.

    Sets ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` when they are unset. Returns
    False only when ``HF_HUB_OFFLINE`` was set to a false value (``0``, ``false``, ...).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return os.environ["HF_HUB_OFFLINE"].strip().lower() not in _FALSE


def looks_like_path(model: str) -> bool:
    """Whether a model reference means a folder on this machine rather than a hub name:
    it starts with ``/``, ``./``, ``../`` or ``~``, or names an existing path."""
    return model.startswith(("/", "./", "../", "~", ".\\", "..\\")) or os.path.exists(
        os.path.expanduser(model))


def resolve_model(model: str | os.PathLike[str], what: str = "model") -> str:
    """Where to load a model from: an existing folder (absolute path), or a hub name found
    in the local cache (or any name when downloads are allowed).

    Args:
        model: a folder or a Hugging Face name.
        what: how error messages call it (``"embedder"``, ``"reranker"``, ...).

    Raises:
        ModelNotFoundError: a path that does not exist or is not a folder; a name that is
            not cached while the hub is offline.
    """
    ref = os.fspath(model)
    if not isinstance(ref, str) or not ref.strip():
        raise ModelNotFoundError(f"{what}: the model reference is empty")
    if isinstance(model, Path) or looks_like_path(ref):
        folder = Path(ref).expanduser()
        if not folder.exists():
            raise ModelNotFoundError(f"{what}: no model folder at {ref} (the path does not "
                                     f"exist)")
        if not folder.is_dir():
            raise ModelNotFoundError(f"{what}: {ref} is a file, not a model folder")
        return str(folder.resolve())
    if hub_offline():
        from huggingface_hub import try_to_load_from_cache

        cached = any(isinstance(try_to_load_from_cache(ref, name), str)
                     for name in ("config.json", "modules.json", "tokenizer_config.json"))
        if not cached:
            raise ModelNotFoundError(
                f"{what}: {ref!r} is neither a folder on this machine nor in the Hugging Face "
                f"cache, and models load offline (HF_HUB_OFFLINE=1); give a local folder")
    return ref


def load_embedder(model: str | os.PathLike[str], device: str = "cpu") -> SentenceTransformer:
    """Load a sentence-transformers model by name or local folder, offline (see the module
    doc). Each call loads a fresh model; keep the result to reuse it.

    Raises:
        ModelNotFoundError: a folder that does not exist; a name not in the local cache.
        ModelError: the folder or cache entry holds no loadable model.
    """
    location = resolve_model(model, what="embedder")
    local_only = hub_offline()
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(location, device=device, local_files_only=local_only)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"embedder {os.fspath(model)!r} cannot be loaded: {exc}") from exc


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm as float32 (all-zero rows stay zero)."""
    out = np.asarray(matrix, dtype=np.float32)
    if out.ndim != 2:
        raise ValueError(f"expected a 2-D array of row vectors, got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(out / norms, dtype=np.float32)


def embed(model: SentenceTransformer | str | os.PathLike[str], texts: Sequence[str],
          batch_size: int = 64) -> np.ndarray:
    """Embed texts: a float32 array of shape ``(len(texts), dim)`` with L2-normalised rows,
    so inner products are cosine similarities.

    Args:
        model: a loaded ``SentenceTransformer`` or a name/folder for :func:`load_embedder`.
        texts: the texts (passages or queries), in order.
        batch_size: texts per forward pass.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    encoder: Any = load_embedder(model) if isinstance(model, (str, os.PathLike)) else model
    items = list(texts)
    if not all(isinstance(text, str) for text in items):
        raise TypeError("texts must be strings")
    if not items:
        # renamed in sentence-transformers 5 (the old name warns there)
        dimension = getattr(encoder, "get_embedding_dimension", None) or \
            encoder.get_sentence_embedding_dimension
        dim = int(dimension() or 0)
        return np.zeros((0, dim), dtype=np.float32)
    vectors = encoder.encode(items, batch_size=batch_size, show_progress_bar=False,
                             convert_to_numpy=True, normalize_embeddings=False)
    return normalize_rows(np.asarray(vectors))
