"""Rich values for ``log()``: images, tables (charts from ``wandb.plot`` are tables with a
chart spec), histograms, videos and audio.

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

    Build it from ``columns`` and ``data`` (a list of rows; ``rows`` is accepted too), or
    from a ``dataframe`` (also when passed as ``data``); ``add_data(*row)`` appends a row.
    ``allow_mixed_types`` and ``log_mode`` are accepted for wandb compatibility.
    """

    type_name = "table"
    extension = ".table.json"

    def __init__(self, columns: list[str] | None = None, data: Any = None,
                 dataframe: Any = None, rows: Any = None, allow_mixed_types: bool = True,
                 log_mode: str | None = None) -> None:
        if dataframe is None and hasattr(data, "to_numpy") and hasattr(data, "columns"):
            dataframe = data  # wandb.Table(data=<DataFrame>), as TRL's trainers pass it
        if data is None and rows is not None:
            data = rows  # wandb's older name for data
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
        self.chart: dict[str, Any] | None = None

    def add_data(self, *row: Any) -> None:
        """Append one row (as many values as there are columns)."""
        if len(row) != len(self.columns):
            raise ValueError(f"add_data got {len(row)} values for {len(self.columns)} columns")
        self.data.append(list(row))

    def write(self, path: Path) -> dict[str, Any]:
        """Save rows as JSON; metadata has the shape."""
        payload: dict[str, Any] = {"columns": self.columns, "data": self.data}
        meta: dict[str, Any] = {"rows": len(self.data), "columns": self.columns}
        chart = getattr(self, "chart", None)
        if chart is not None:  # from runfleet.wandb.plot: how to draw the table
            payload["chart"] = meta["chart"] = chart
        path.write_text(json.dumps(payload, default=_json_default, allow_nan=True))
        return meta

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


def _source_file(what: str, path: Any) -> Path:
    source = Path(path)
    if not source.is_file():
        raise ValueError(f"{what} path {source} does not exist")
    return source


class Video(Media):
    """A video from a file (``.mp4``, ``.webm``, ``.gif``, ... copied as is) or from a
    numpy array / torch tensor shaped ``(time, channels, height, width)`` (or
    ``(batch, time, channels, height, width)``: the first clip is kept), written as an
    animated GIF at ``fps`` frames per second. ``Api`` reads it back as the file's path.
    """

    type_name = "video"
    extension = ".gif"

    def __init__(self, data_or_path: Any, caption: str | None = None, fps: int = 4,
                 format: str | None = None) -> None:
        self.caption = caption
        if not 0 < fps <= 1000:
            raise ValueError(f"Video fps must be between 1 and 1000, got {fps}")
        self.fps = int(fps)
        self._source: Path | None = None
        self._frames: np.ndarray | None = None
        if isinstance(data_or_path, (str, os.PathLike)):
            self._source = _source_file("Video", data_or_path)
            self.extension = self._source.suffix.lower() or ".mp4"
            return
        if format not in (None, "gif"):
            raise ValueError(f"Video from an array is written as a GIF; format={format!r} "
                             f"needs an encoder runfleet does not ship: save the file and "
                             f"pass its path")
        obj = data_or_path
        if hasattr(obj, "detach"):
            obj = obj.detach().cpu().numpy()
        arr = np.asarray(obj)
        if arr.ndim == 5:
            arr = arr[0]
        if arr.ndim != 4 or arr.shape[1] not in (1, 3, 4):
            raise ValueError(f"Video needs shape (time, channels, height, width) with 1, 3 "
                             f"or 4 channels; got {arr.shape}")
        self._frames = np.stack([_to_uint8_image(frame) for frame in arr])

    def write(self, path: Path) -> dict[str, Any]:
        """Save the video; metadata has caption, format (the file's extension) and, for
        arrays, fps, frames and size."""
        if self._source is not None:
            shutil.copyfile(self._source, path)
            return {"caption": self.caption, "format": path.suffix.lstrip(".")}
        from PIL import Image as PILImage

        assert self._frames is not None
        frames = [PILImage.fromarray(f) for f in self._frames]
        frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:],
                       duration=max(1, round(1000 / self.fps)), loop=0)
        height, width = self._frames.shape[1:3]
        return {"caption": self.caption, "format": "gif", "fps": self.fps,
                "frames": len(frames), "width": int(width), "height": int(height)}

    @classmethod
    def load(cls, path: Path, meta: dict[str, Any]) -> Any:
        """The saved file's path."""
        return path


class Audio(Media):
    """Audio from a file (copied as is) or from samples (a 1-d array, or ``(samples,
    channels)``; floats in [-1, 1] or int16) at ``sample_rate``, written as 16-bit WAV.
    ``Api`` reads a WAV back as ``(samples as float32 array, sample_rate)``, other files as
    their path."""

    type_name = "audio"
    extension = ".wav"

    def __init__(self, data_or_path: Any, sample_rate: int | None = None,
                 caption: str | None = None) -> None:
        self.caption = caption
        self.sample_rate = sample_rate
        self._source: Path | None = None
        self._samples: np.ndarray | None = None
        if isinstance(data_or_path, (str, os.PathLike)):
            self._source = _source_file("Audio", data_or_path)
            self.extension = self._source.suffix.lower() or ".wav"
            return
        if sample_rate is None or not 0 < int(sample_rate) <= 1_000_000:
            raise ValueError("Audio from samples needs sample_rate= (Hz, e.g. 16000)")
        obj = data_or_path
        if hasattr(obj, "detach"):
            obj = obj.detach().cpu().numpy()
        arr = np.asarray(obj)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise ValueError(f"Audio needs samples shaped (n,) or (n, channels); got "
                             f"{np.asarray(obj).shape}")
        if arr.dtype != np.int16:
            floats = np.nan_to_num(arr.astype(np.float64))
            arr = (np.clip(floats, -1.0, 1.0) * 32767).round().astype(np.int16)
        self._samples = arr

    def write(self, path: Path) -> dict[str, Any]:
        """Save the audio; metadata has caption, sample rate, channels and duration."""
        if self._source is not None:
            shutil.copyfile(self._source, path)
            return {"caption": self.caption, "sample_rate": self.sample_rate}
        import wave

        assert self._samples is not None and self.sample_rate is not None
        with wave.open(str(path), "wb") as out:
            out.setnchannels(self._samples.shape[1])
            out.setsampwidth(2)
            out.setframerate(int(self.sample_rate))
            out.writeframes(self._samples.astype("<i2").tobytes())
        n = self._samples.shape[0]
        return {"caption": self.caption, "sample_rate": int(self.sample_rate),
                "channels": int(self._samples.shape[1]),
                "duration": n / int(self.sample_rate)}

    @classmethod
    def load(cls, path: Path, meta: dict[str, Any]) -> Any:
        """``(float32 samples in [-1, 1] shaped (n, channels), sample_rate)`` for WAV;
        the path for other formats."""
        if path.suffix.lower() != ".wav":
            return path
        import wave

        with wave.open(str(path), "rb") as src:
            rate, channels, width = src.getframerate(), src.getnchannels(), src.getsampwidth()
            raw = src.readframes(src.getnframes())
        if width != 2:
            return path
        samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)
        return samples.astype(np.float32) / 32767, rate


MEDIA_TYPES: dict[str, type[Media]] = {
    c.type_name: c for c in (Image, Table, Histogram, Video, Audio)}
