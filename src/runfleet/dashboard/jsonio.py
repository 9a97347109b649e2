"""JSON encoding for the API: strict JSON out of numpy arrays, quickly.

Strict JSON has no NaN or infinity, so non-finite floats travel as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (the convention of ``runfleet runs --json`` and the
JSON Lines export). Chart arrays can instead be sent as base64 of little-endian float64
(``encoding=base64``): exact, NaN and infinities included, about 4x smaller and much faster
to produce and to read than decimal text; the dashboard's own page uses that.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.responses import Response

from runfleet.export import json_safe

ENCODINGS = ("json", "base64")


def dumps(payload: Any) -> bytes:
    """Compact strict JSON bytes (raises ``ValueError`` on NaN: make values safe first).

    A lone surrogate in a text (not valid Unicode, so not encodable as UTF-8; an importer or
    an older runfleet may have stored one) travels as its JSON escape ``\\udXXX``, which
    every JSON reader accepts, so one such value never breaks a whole listing.
    """
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False,
                          ensure_ascii=True).encode("ascii")


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (a code point U+D800..U+DFFF on its own, which
    is not valid Unicode and cannot be stored or sent as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def safe_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, the replacement character (for
    CSV and other plain-text output)."""
    if not has_surrogate(text):
        return text
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def json_response(payload: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """A JSON response; ``payload`` must already be JSON-safe (see :func:`safe`)."""
    return Response(dumps(payload), status_code=status, headers=headers,
                    media_type="application/json")


def safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by their string names, recursively."""
    return json_safe(value)


def floats(arr: npt.NDArray[Any], encoding: str = "json",
           empty: npt.NDArray[np.bool_] | None = None) -> Any:
    """A float array for JSON: a list (non-finite as strings, ``empty`` positions as null),
    or ``{"b64": ...}`` with the raw float64 bytes for ``encoding="base64"``."""
    a = np.asarray(arr, dtype=np.float64)
    if encoding == "base64":
        return {"b64": base64.b64encode(a.astype("<f8", copy=False).tobytes()).decode("ascii")}
    finite = np.isfinite(a)
    if empty is None and bool(finite.all()):
        return a.tolist()
    out: list[Any] = a.tolist()
    for i in np.flatnonzero(~finite).tolist():
        v = out[i]
        out[i] = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    if empty is not None:
        for i in np.flatnonzero(empty).tolist():
            out[i] = None
    return out


def ints(arr: npt.NDArray[Any], encoding: str = "json") -> Any:
    """An integer array for JSON: a list, or ``{"b64": ...}`` of little-endian int32 (counts
    never exceed that) for ``encoding="base64"``."""
    a = np.asarray(arr)
    if encoding == "base64":
        return {"b64": base64.b64encode(a.astype("<i4").tobytes()).decode("ascii")}
    return a.astype(np.int64).tolist()


def values(arr: npt.NDArray[Any], encoding: str = "json") -> Any:
    """Exact values of a series of any kind: floats as :func:`floats`, ints and bools as
    JSON numbers and booleans, text and JSON values as they are (made JSON-safe)."""
    a = np.asarray(arr)
    kind = a.dtype.kind
    if kind == "f":
        return floats(a, encoding)
    if kind in "iub":
        return a.tolist()
    return [json_safe(v.item() if isinstance(v, np.generic) else v) for v in a.tolist()]
