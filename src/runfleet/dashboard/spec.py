"""Declared parameters of the JSON API: one table drives validation and the OpenAPI document.

Every endpoint lists its query parameters as :class:`Param` objects. :func:`parse_params`
checks a request against them and raises :class:`ApiError` (answered as a 4xx JSON error
with a message) for anything missing, malformed or out of range, so handlers only ever see
typed, valid values. :func:`openapi` turns the same table into the OpenAPI 3.1 description
served at ``/api/openapi.json``.

Example:
    >>> p = Param("buckets", "integer", default=1000, minimum=1, maximum=10_000)
    >>> p.convert("250")
    250
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

MAX_TEXT = 1000  # longest accepted text parameter (characters)
MAX_LIST = 2000  # most items accepted in a comma-separated list parameter


class ApiError(Exception):
    """A request the API refuses: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Param:
    """One query parameter: its name, type and limits.

    ``kind`` is ``string``, ``integer``, ``number``, ``boolean``, ``list`` (comma-separated
    strings) or ``multi`` (a string that may be repeated).
    """

    name: str
    kind: str = "string"
    required: bool = False
    default: Any = None
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] | None = None
    max_length: int = MAX_TEXT

    def convert(self, raw: str) -> Any:
        """Convert one raw text value; raise :class:`ApiError` (400) when it does not fit."""
        if len(raw) > self.max_length and self.kind != "list":
            raise ApiError(400, f"parameter {self.name!r} is too long (at most "
                                f"{self.max_length} characters)")
        if "\x00" in raw:
            raise ApiError(400, f"parameter {self.name!r} contains a NUL character")
        if self.kind in ("string", "multi"):
            if self.enum is not None and raw not in self.enum:
                raise ApiError(400, f"parameter {self.name!r} must be one of "
                                    f"{', '.join(self.enum)}; got {raw!r}")
            return raw
        if self.kind == "list":
            items = [item for item in raw.split(",") if item]
            if len(items) > MAX_LIST:
                raise ApiError(400, f"parameter {self.name!r} lists {len(items)} items; at "
                                    f"most {MAX_LIST}")
            if any(len(item) > MAX_TEXT for item in items):
                raise ApiError(400, f"an item of parameter {self.name!r} is too long")
            return items
        if self.kind == "boolean":
            lowered = raw.lower()
            if lowered in ("1", "true", "yes"):
                return True
            if lowered in ("0", "false", "no"):
                return False
            raise ApiError(400, f"parameter {self.name!r} must be true or false; got {raw!r}")
        if self.kind == "integer":
            try:
                value: float = int(raw)
            except ValueError:
                raise ApiError(400, f"parameter {self.name!r} must be an integer; "
                                    f"got {raw!r}") from None
        elif self.kind == "number":
            try:
                value = float(raw)
            except ValueError:
                raise ApiError(400, f"parameter {self.name!r} must be a number; "
                                    f"got {raw!r}") from None
            if not math.isfinite(value):
                raise ApiError(400, f"parameter {self.name!r} must be a finite number")
        else:  # pragma: no cover - a programming error in a declaration
            raise AssertionError(f"unknown parameter kind {self.kind}")
        if self.minimum is not None and value < self.minimum:
            raise ApiError(400, f"parameter {self.name!r} must be >= {self.minimum:g}; "
                                f"got {raw}")
        if self.maximum is not None and value > self.maximum:
            raise ApiError(400, f"parameter {self.name!r} must be <= {self.maximum:g}; "
                                f"got {raw}")
        return value

    def schema(self) -> dict[str, Any]:
        """The OpenAPI schema of this parameter."""
        out: dict[str, Any]
        if self.kind in ("string", "multi", "list"):
            out = {"type": "string", "maxLength": self.max_length if self.kind != "list"
                   else MAX_TEXT * 4}
            if self.enum is not None:
                out = {"type": "string", "enum": list(self.enum)}
        else:
            out = {"type": self.kind}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.default is not None:
            out["default"] = self.default
        if self.kind == "multi":
            return {"type": "array", "items": out}
        return out


Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    """A JSON API route: path, method, parameters, handler and what it answers."""

    path: str
    method: str
    summary: str
    params: tuple[Param, ...]
    handler: Handler
    responses: Mapping[int, str] = field(default_factory=dict)
    content_type: str = "application/json"
    body: Mapping[str, Any] | None = None  # JSON schema of the request body, if any
    description: str = ""


def parse_params(request: Request, params: Sequence[Param]) -> dict[str, Any]:
    """Validate the query string of ``request`` against ``params``; return typed values.

    Unknown parameters are refused, so a misspelt option never silently does nothing.
    """
    query = request.query_params
    known = {p.name for p in params}
    unknown = sorted(set(query.keys()) - known)
    if unknown:
        raise ApiError(400, f"unknown parameter {unknown[0]!r}; this endpoint takes "
                            f"{', '.join(sorted(known)) or 'no parameters'}")
    values: dict[str, Any] = {}
    for p in params:
        raws = query.getlist(p.name)
        if not raws:
            if p.required:
                raise ApiError(400, f"missing required parameter {p.name!r}")
            values[p.name] = [] if p.kind == "multi" else p.default
            continue
        if p.kind == "multi":
            if len(raws) > MAX_LIST:
                raise ApiError(400, f"parameter {p.name!r} is repeated too often")
            values[p.name] = [p.convert(r) for r in raws]
            continue
        if len(raws) > 1:
            raise ApiError(400, f"parameter {p.name!r} given {len(raws)} times; give it once")
        values[p.name] = p.convert(raws[0])
    return values


# Answers every endpoint may give: bad parameters, a missing token (reads of a dashboard
# bound to a non-loopback address need it; see security.py), an unreadable database.
COMMON_RESPONSES = {400: "invalid parameter",
                    401: "token required (Authorization: Bearer <token>)",
                    503: "the database cannot be read now (damaged, I/O error or busy)"}

_ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}},
                 "required": ["error"]}


def openapi(endpoints: Sequence[Endpoint], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``endpoints``."""
    paths: dict[str, Any] = {}
    for ep in endpoints:
        responses: dict[str, Any] = {}
        ok = {"description": "success", "content": {ep.content_type: {"schema": {}}}}
        responses["200"] = ok
        for status, text in {**COMMON_RESPONSES, **ep.responses}.items():
            responses[str(status)] = {
                "description": text,
                "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        op: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": ep.method.lower() + ep.path.replace("/", "_").replace(".", "_"),
            "parameters": [{"name": p.name, "in": "query", "required": p.required,
                            "description": p.description, "schema": p.schema(),
                            **({"style": "form", "explode": True} if p.kind == "multi"
                               else {})}
                           for p in ep.params],
            "responses": responses,
        }
        if ep.description:
            op["description"] = ep.description
        if ep.body is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": dict(ep.body)}}}
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "runfleet dashboard API", "version": version,
                 "description": "Read access to a runfleet home: projects, runs, series "
                 "downsampled for charts, media, CSV export, and live updates by "
                 "Server-Sent Events; writes of run notes and tags and of control ops "
                 "(stop, resume, delete, clone) for an experiment's controller. Every write "
                 "needs the token `runfleet show` prints (`Authorization: Bearer <token>`); "
                 "reads need it too when the dashboard is bound to a non-loopback address. "
                 "Errors are JSON objects {\"error\": message} with a 4xx or 503 status."},
        "paths": paths,
    }
