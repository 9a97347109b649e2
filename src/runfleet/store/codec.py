"""Columnar encoding of metric segments.

A segment holds up to a few thousand consecutive points of one (run, key) series of one
value kind. Its steps, times and values are stored as three compressed blobs, so a chart or a
history read touches only the series it asks for and decodes it with numpy in one call.

Encodings (all little-endian, zlib level 1):

* steps: int64, delta-encoded (steady logging compresses to a few bytes per thousand points);
* times: wall-clock seconds as int64 microseconds since the epoch, delta-encoded;
* values by kind: ``f`` float64 split into its 8 byte planes, each plane compressed only
  when a sample of it compresses (the sign/exponent planes of real metrics nearly always do,
  the low mantissa planes of noisy values never do, and skipping them halves the cost);
  ``i`` int64 (delta-encoded), ``b`` bool (uint8), ``j`` JSON list (text, None, integers
  beyond 64 bits), ``m`` JSON list of media references.

Float values keep every bit, so NaN, infinities and the exact binary value round-trip.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FLOAT = "f"
INT = "i"
BOOL = "b"
JSON = "j"
MEDIA = "m"
KINDS = (FLOAT, INT, BOOL, JSON, MEDIA)

_LEVEL = 1


def _pack_delta(arr: npt.NDArray[np.int64]) -> bytes:
    if arr.size == 0:
        return zlib.compress(b"", _LEVEL)
    delta = np.empty_like(arr)
    delta[0] = arr[0]
    np.subtract(arr[1:], arr[:-1], out=delta[1:])
    return zlib.compress(delta.astype("<i8", copy=False).tobytes(), _LEVEL)


def _unpack_delta(blob: bytes) -> npt.NDArray[np.int64]:
    delta = np.frombuffer(zlib.decompress(blob), dtype="<i8")
    return np.cumsum(delta, dtype=np.int64)


def encode_steps(steps: npt.NDArray[np.int64]) -> bytes:
    """Encode an int64 step array."""
    return _pack_delta(np.asarray(steps, dtype=np.int64))


def decode_steps(blob: bytes) -> npt.NDArray[np.int64]:
    """Decode what :func:`encode_steps` produced."""
    return _unpack_delta(blob)


def encode_times(times: npt.NDArray[np.float64]) -> bytes:
    """Encode wall-clock seconds with microsecond resolution."""
    micros = np.rint(np.asarray(times, dtype=np.float64) * 1e6).astype(np.int64)
    return _pack_delta(micros)


def decode_times(blob: bytes) -> npt.NDArray[np.float64]:
    """Decode what :func:`encode_times` produced, as float seconds."""
    return _unpack_delta(blob).astype(np.float64) / 1e6


_PLANE_RAW = 0
_PLANE_ZLIB = 1
_SAMPLE = 512
_DISTINCT_LIMIT = 160  # 512 random bytes show about 222 distinct values
_FLOAT_FORMAT = 1  # first byte of a float blob: the byte-plane layout below


def _encode_float_planes(arr: npt.NDArray[np.float64]) -> bytes:
    planes = np.ascontiguousarray(arr.astype("<f8", copy=False).view(np.uint8).reshape(-1, 8).T)
    header = bytearray([_FLOAT_FORMAT])
    body = []
    for plane in planes:
        raw = plane.tobytes()
        packed = None
        # Few distinct byte values in a sample means the plane compresses; noisy mantissa
        # bytes use nearly all 256 and are stored raw (a byte count is cheaper than zlib).
        distinct = int(np.count_nonzero(np.bincount(plane[:_SAMPLE], minlength=256)))
        if distinct < _DISTINCT_LIMIT:
            packed = zlib.compress(raw, _LEVEL)
        if packed is not None and len(packed) < len(raw):
            header += bytes([_PLANE_ZLIB]) + len(packed).to_bytes(4, "little")
            body.append(packed)
        else:
            header += bytes([_PLANE_RAW]) + len(raw).to_bytes(4, "little")
            body.append(raw)
    return bytes(header) + b"".join(body)


def _decode_float_planes(blob: bytes, n: int) -> npt.NDArray[np.float64]:
    if blob[0] != _FLOAT_FORMAT:
        raise ValueError(f"unknown float segment format {blob[0]}")
    planes = np.empty((8, n), dtype=np.uint8)
    offset = 1 + 8 * 5
    for i in range(8):
        mode = blob[1 + i * 5]
        length = int.from_bytes(blob[2 + i * 5: 6 + i * 5], "little")
        chunk = blob[offset: offset + length]
        offset += length
        data = zlib.decompress(chunk) if mode == _PLANE_ZLIB else chunk
        planes[i] = np.frombuffer(data, dtype=np.uint8)
    return planes.T.copy().view("<f8").reshape(n).astype(np.float64, copy=False)


def encode_values(kind: str, values: Sequence[Any] | npt.NDArray[Any]) -> bytes:
    """Encode values of one kind (see the module docstring)."""
    if kind == FLOAT:
        return _encode_float_planes(np.asarray(values, dtype=np.float64))
    if kind == INT:
        return _pack_delta(np.asarray(values, dtype=np.int64))
    if kind == BOOL:
        return zlib.compress(np.asarray(values, dtype=np.uint8).tobytes(), _LEVEL)
    if kind in (JSON, MEDIA):
        text = json.dumps(list(values), separators=(",", ":"), allow_nan=True)
        return zlib.compress(text.encode("utf-8"), _LEVEL)
    raise ValueError(f"unknown value kind {kind!r}")


def decode_values(kind: str, blob: bytes, n: int) -> npt.NDArray[Any]:
    """Decode ``n`` values of ``kind``; JSON kinds come back as an object array."""
    if kind == FLOAT:
        return _decode_float_planes(blob, n)
    raw = zlib.decompress(blob)
    if kind == INT:
        return np.cumsum(np.frombuffer(raw, dtype="<i8"), dtype=np.int64)
    if kind == BOOL:
        return np.frombuffer(raw, dtype=np.uint8).astype(bool)
    if kind in (JSON, MEDIA):
        out = np.empty(n, dtype=object)
        for i, item in enumerate(json.loads(raw.decode("utf-8"))):
            out[i] = item
        return out
    raise ValueError(f"unknown value kind {kind!r}")


# -- block summaries ---------------------------------------------------------------------------
# A segment of a numeric kind also gets a summary: per block of SUMMARY_BLOCK consecutive
# points (in logging order) the smallest step and time, the number of non-NaN values, and
# their min, max and sum. A chart over many points reads these instead of decoding every
# point, so its cost follows the number of blocks, not points; spikes survive (min/max).
# Blocks are fixed-size little-endian records, uncompressed (the floats would not compress),
# so the summaries of a whole series decode with one numpy call.
SUMMARY_BLOCK = 32
SUMMARY_KINDS = (FLOAT, INT, BOOL)
SUMMARY_RECORD = np.dtype([("step_lo", "<i8"), ("time_lo", "<i8"), ("cnt", "u1"),
                           ("vmin", "<f8"), ("vmax", "<f8"), ("vsum", "<f8")])


def encode_summary(kind: str, steps: npt.NDArray[np.int64], times: npt.NDArray[np.float64],
                   values: Sequence[Any] | npt.NDArray[Any]) -> bytes | None:
    """Summarise a segment in blocks of :data:`SUMMARY_BLOCK` points; None for kinds that
    cannot be summarised (text, JSON, media) or no points."""
    n = len(steps)
    if kind not in SUMMARY_KINDS or n == 0:
        return None
    nb = -(-n // SUMMARY_BLOCK)
    pad = nb * SUMMARY_BLOCK - n
    v = np.asarray(values, dtype=np.float64)
    s = np.asarray(steps, dtype=np.int64)
    t = np.rint(np.asarray(times, dtype=np.float64) * 1e6).astype(np.int64)
    if pad:
        v = np.concatenate([v, np.full(pad, np.nan)])
        s = np.concatenate([s, np.full(pad, s[-1])])
        t = np.concatenate([t, np.full(pad, t[-1])])
    v = v.reshape(nb, SUMMARY_BLOCK)
    present = ~np.isnan(v)
    rec = np.empty(nb, dtype=SUMMARY_RECORD)
    rec["step_lo"] = s.reshape(nb, SUMMARY_BLOCK).min(axis=1)
    rec["time_lo"] = t.reshape(nb, SUMMARY_BLOCK).min(axis=1)
    rec["cnt"] = present.sum(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):  # 1e308 + 1e308 is inf, on purpose
        rec["vmin"] = np.fmin.reduce(v, axis=1)
        rec["vmax"] = np.fmax.reduce(v, axis=1)
        rec["vsum"] = np.where(present, v, 0.0).sum(axis=1)
    return rec.tobytes()


def decode_summaries(blobs: Sequence[bytes], ns: Sequence[int]) -> dict[str, npt.NDArray[Any]]:
    """Decode the summaries of several segments (holding ``ns`` points) at once: arrays
    ``step_lo, time_lo`` (seconds), ``n`` (points per block), ``cnt`` (non-NaN points),
    ``vmin, vmax, vsum``, blocks of all segments in the given order."""
    rec = np.frombuffer(b"".join(blobs), dtype=SUMMARY_RECORD)
    blocks = -(-np.asarray(ns, dtype=np.int64) // SUMMARY_BLOCK)
    if int(blocks.sum()) != len(rec):
        raise ValueError("segment summaries do not match their point counts")
    n = np.full(len(rec), SUMMARY_BLOCK, dtype=np.int64)
    last = np.cumsum(blocks) - 1
    n[last] = np.asarray(ns, dtype=np.int64) - SUMMARY_BLOCK * (blocks - 1)
    return {"step_lo": rec["step_lo"].astype(np.int64),
            "time_lo": rec["time_lo"].astype(np.float64) / 1e6, "n": n,
            "cnt": rec["cnt"].astype(np.int64), "vmin": rec["vmin"].astype(np.float64),
            "vmax": rec["vmax"].astype(np.float64), "vsum": rec["vsum"].astype(np.float64)}
