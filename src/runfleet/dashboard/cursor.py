"""The live-update cursor: what the page already has, as one opaque token.

``/api/runs`` answers a cursor, the live stream (``live.py``) sends the new one as each
event's ``id:`` and takes it back as ``Last-Event-ID`` (or ``?cursor=``) when the browser
reconnects.

The token is base64url JSON ``{run id: last step sent}``, or ``{"r": {run id: step},
"o": N}`` once ops are followed: every op with id >= N is (re)sent, so the op position N
(:func:`op_position`) is the first op that was still pending, or one past the last op sent.

Example:
    >>> token = encode_cursor({"abc123": 41}, ops_from=7)
    >>> decode_token(token)
    ({'abc123': 41}, 7)
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from runfleet.dashboard.spec import ApiError
from runfleet.store.base import OpRecord, OpStatus


def encode_cursor(steps: dict[str, int], ops_from: int | None = None) -> str:
    """The cursor token for ``{run id: last step known}`` (and the first op to send)."""
    data: Any = steps if ops_from is None else {"r": steps, "o": ops_from}
    raw = json.dumps(data, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_token(token: str) -> tuple[dict[str, int], int | None]:
    """Inverse of :func:`encode_cursor`: steps and the op position (None when absent);
    :class:`ApiError` 400 for a malformed token."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "malformed cursor (expected the token the API returned)") from None
    ops_from = None
    if isinstance(data, dict) and isinstance(data.get("r"), dict):
        position: Any = data.get("o")
        if not (_is_int(position) and position >= 0 and set(data) == {"r", "o"}):
            raise ApiError(400, "malformed cursor (expected an op position)")
        ops_from = int(position)
        data = data["r"]
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and _is_int(v) for k, v in data.items()):
        raise ApiError(400, "malformed cursor (expected {run id: step})")
    return data, ops_from


def decode_cursor(token: str) -> dict[str, int]:
    """The steps of a cursor token (see :func:`decode_token`)."""
    return decode_token(token)[0]


def op_position(ops: list[OpRecord], after: int) -> int:
    """The smallest op id that may still change or be new: the first pending op, else one
    past the last op (``after + 1`` when there is none)."""
    pending = [op.id for op in ops if op.status == OpStatus.PENDING]
    if pending:
        return min(pending)
    return max((op.id for op in ops), default=after) + 1


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
