"""Rich values for ``log()``: images, tables and histograms.

Each is saved by the writer thread as a file under ``<home>/media/<project>/<run id>/`` and
recorded as a typed row (``media`` table) plus a point whose value references the file.
Data is copied when the object is built, so later changes to the source do not leak in.

Example:
    >>> import numpy as np
    >>> img = Image(np.zeros((8, 8, 3), dtype=np.uint8), caption="black")
    >>> tbl = Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]])
    >>> hist = Histogram(np.arange(10), num_bins=5)
    >>> hist.counts
    [2, 2, 2, 2, 2]
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np


class Media:
    """Base of loggable media; subclasses set ``type_name`` and ``extension``."""

    type_name = "media"
    extension = ".bin"

    def write(self, path: Path) -> dict[str, Any]:
        """Write the file at ``path`` (already ending in ``extension``); return its metadata."""
        raise NotImplementedError

    @classmethod
    def load(cls, path: Path, meta: dict[str, Any]) -> Any:
        """Read a saved file back into a convenient Python object."""
        raise NotImplementedError


def _to_uint8_image(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.transpose(arr, (1, 2, 0))  # CHW (torch) to HWC
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"Image needs shape (H, W), (H, W, 3|4) or (3|4, H, W); got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.copy()
    if np.issubdtype(arr.dtype, np.floating):
        scaled = arr * 255.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else arr
        return np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


class Image(Media):
    """An image from a numpy array, a torch tensor, a PIL image or a file path.

    Float arrays in [0, 1] are scaled to 0-255; channel-first tensors are transposed.
    Stored as PNG (a path keeps its own file format). ``Api`` reads it back as a PIL image.
    """

    type_name = "image"
    extension = ".png"

    def __init__(self, data_or_path: Any, caption: str | None = None,
                 mode: str | None = None) -> None:
        self.caption = caption
        self._source: Path | None = None
        self._pixels: np.ndarray | None = None
        if isinstance(data_or_path, (str, os.PathLike)):
            self._source = Path(data_or_path)
            if not self._source.is_file():
                raise ValueError(f"Image path {self._source} does not exist")
            self.extension = self._source.suffix.lower() or ".png"
            return
        obj = data_or_path
        if hasattr(obj, "detach"):  # torch tensor
            obj = obj.detach().cpu().numpy()
        if hasattr(obj, "save") and hasattr(obj, "mode"):  # PIL image
            obj = np.asarray(obj.convert(mode) if mode else obj)
        if not isinstance(obj, np.ndarray):
            obj = np.asarray(obj)
        self._pixels = _to_uint8_image(obj)
        self.mode = mode

    def write(self, path: Path) -> dict[str, Any]:
        """Save the image; metadata has caption, width and height."""
        from PIL import Image as PILImage

        if self._source is not None:
            shutil.copyfile(self._source, path)
            with PILImage.open(path) as im:
                width, height = im.size
        else:
            assert self._pixels is not None
            pil = PILImage.fromarray(self._pixels)
            pil.save(path, format="PNG")
            height, width = self._pixels.shape[:2]
        return {"caption": self.caption, "width": width, "height": height}

    @classmethod
    def load(cls, path: Path, meta: dict[str, Any]) -> Any:
        """A PIL image, fully loaded (the file is closed)."""
        from PIL import Image as PILImage

        with PILImage.open(path) as im:
            im.load()
            return im.copy()


class Table(Media):
    """A table of rows; ``Api`` reads it back as a pandas DataFrame.

    Build it from ``columns`` and ``data`` (a list of rows), or from a ``dataframe``;
    ``add_data(*row)`` appends a row.
    """

    type_name = "table"
    extension = ".table.json"

    def __init__(self, columns: list[str] | None = None, data: list[list[Any]] | None = None,
                 dataframe: Any = None) -> None:
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = dataframe.to_numpy().tolist()
        rows = [list(r) for r in (data or [])]
        if columns is None:
            width = len(rows[0]) if rows else 0
            columns = [f"col{i}" for i in range(width)]
        for i, row in enumerate(rows):
            if len(row) != len(columns):
                raise ValueError(
                    f"Table row {i} has {len(row)} values but there are {len(columns)} columns")
        self.columns = list(columns)
        self.data = rows

    def add_data(self, *row: Any) -> None:
        """Append one row (as many values as there are columns)."""
        if len(row) != len(self.columns):
            raise ValueError(f"add_data got {len(row)} values for {len(self.columns)} columns")
        self.data.append(list(row))

    def write(self, path: Path) -> dict[str, Any]:
        """Save rows as JSON; metadata has the shape."""
        payload = {"columns": self.columns, "data": self.data}
        path.write_text(json.dumps(payload, default=_json_default, allow_nan=True))
        return {"rows": len(self.data), "columns": self.columns}

    @classmethod
    def load(cls, path: Path, meta: dict[str, Any]) -> Any:
        """A pandas DataFrame."""
        import pandas as pd

        payload = json.loads(path.read_text())
        return pd.DataFrame(payload["data"], columns=payload["columns"])


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


class Histogram(Media):
    """A histogram of values (``num_bins`` equal bins), or of a ``np.histogram`` result.

    Attributes ``bins`` (edges, length ``len(counts) + 1``) and ``counts``.
    """

    type_name = "histogram"
    extension = ".hist.json"

    def __init__(self, sequence: Any = None, np_histogram: Any = None,
                 num_bins: int = 64) -> None:
        if np_histogram is not None:
            counts, bins = np_histogram
        else:
            if sequence is None:
                raise ValueError("Histogram needs values or np_histogram=(counts, bins)")
            if hasattr(sequence, "detach"):
                sequence = sequence.detach().cpu().numpy()
            arr = np.asarray(sequence, dtype=np.float64).ravel()
            arr = arr[np.isfinite(arr)]
            if not 1 <= num_bins <= 512:
                raise ValueError(f"num_bins must be between 1 and 512, got {num_bins}")
            counts, bins = np.histogram(arr, bins=num_bins)
        self.counts = [int(c) for c in np.asarray(counts)]
        self.bins = [float(b) for b in np.asarray(bins)]
        if len(self.bins) != len(self.counts) + 1:
            raise ValueError("Histogram bins must have one more edge than counts")

    def write(self, path: Path) -> dict[str, Any]:
        """Save bins and counts as JSON."""
        path.write_text(json.dumps({"bins": self.bins, "counts": self.counts}))
        return {"n": int(sum(self.counts))}

    @classmethod
    def load(cls, path: Path, meta: dict[str, Any]) -> Any:
        """A :class:`Histogram` with ``bins`` and ``counts``."""
        payload = json.loads(path.read_text())
        return cls(np_histogram=(payload["counts"], payload["bins"]))


MEDIA_TYPES: dict[str, type[Media]] = {c.type_name: c for c in (Image, Table, Histogram)}
