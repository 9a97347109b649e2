"""The JSON API: one :class:`~runfleet.dashboard.spec.Endpoint` per route, over a Query.

Handlers receive validated parameters (see ``spec.py``), run the blocking store work in a
worker thread, and answer JSON. Every refusal is an :class:`ApiError`, answered as
``{"error": message}`` with its 4xx status; a database that cannot be read (damaged, I/O
error, busy) is a 503 whose message names the file and what to do (see
:func:`store_failure`), never a traceback. Request bodies are read as a stream and refused
(413) as soon as they pass :data:`BODY_LIMIT`, before being held whole.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from runfleet.dashboard import deletion, jsonio, live
from runfleet.dashboard.artifacts import run_artifacts
from runfleet.dashboard.control import BODY_SCHEMA, Control
from runfleet.dashboard.cursor import decode_token
from runfleet.dashboard.query import Query
from runfleet.dashboard.spec import ApiError, Endpoint, Handler, Param, openapi, parse_params
from runfleet.errors import StoreError
from runfleet.filters import FilterError, parse_filters
from runfleet.store.base import RunStatus, StoreBusyError
from runfleet.version import __version__

T = TypeVar("T")

PROJECT = Param("project", required=True, description="project name")
RUN = Param("run", required=True, description="run id")
RUNS = Param("runs", "list", description="comma-separated run ids")
MAX_BUCKETS = 10_000
BODY_LIMIT = 1_000_000
NOTES_LIMIT = 100_000
TAGS_LIMIT = 100


async def _blocking(fn: Callable[[], T]) -> T:
    """Run store work in a worker thread (the event loop keeps serving SSE meanwhile)."""
    return await anyio.to_thread.run_sync(fn)


def build_endpoints(query: Query) -> list[Endpoint]:
    """Every endpoint of the API, bound to ``query``."""
    control = Control(query)

    async def health(request: Request, p: dict[str, Any]) -> Response:
        return jsonio.json_response(query.health())

    async def projects(request: Request, p: dict[str, Any]) -> Response:
        return jsonio.json_response(await _blocking(query.projects))

    async def runs(request: Request, p: dict[str, Any]) -> Response:
        try:
            filters = parse_filters(p["filter"])
        except FilterError as exc:
            raise ApiError(400, str(exc)) from None
        result = await _blocking(lambda: query.runs(
            p["project"], search=p["search"], regex=p["regex"], status=p["status"],
            filters=filters, sort=p["sort"], limit=p["limit"], offset=p["offset"],
            include_deleted=p["deleted"]))
        return jsonio.json_response(result)

    async def run(request: Request, p: dict[str, Any]) -> Response:
        return jsonio.json_response(await _blocking(
            lambda: query.run_detail(p["project"], p["run"])))

    async def artifacts(request: Request, p: dict[str, Any]) -> Response:
        return jsonio.json_response(await _blocking(
            lambda: run_artifacts(query, p["project"], p["run"])))

    async def update_run(request: Request, p: dict[str, Any]) -> Response:
        body = await _json_body(request)
        notes, tags = body.get("notes"), body.get("tags")
        unknown = sorted(set(body) - {"notes", "tags"})
        if unknown:
            raise ApiError(400, f"unknown field {unknown[0]!r}: only notes and tags can be "
                                f"changed")
        if notes is not None and (not isinstance(notes, str) or len(notes) > NOTES_LIMIT):
            raise ApiError(400, f"notes must be text of at most {NOTES_LIMIT} characters")
        if tags is not None and not (isinstance(tags, list) and len(tags) <= TAGS_LIMIT and all(
                isinstance(t, str) and 0 < len(t) <= 200 for t in tags)):
            raise ApiError(400, f"tags must be a list of at most {TAGS_LIMIT} non-empty texts")
        try:
            result = await _blocking(lambda: query.update_run(p["project"], p["run"], notes,
                                                              tags))
        except StoreBusyError:
            raise ApiError(409, "the database is busy with writes; try again") from None
        return jsonio.json_response(result)

    async def keys(request: Request, p: dict[str, Any]) -> Response:
        return jsonio.json_response(await _blocking(
            lambda: query.keys(p["project"], p["runs"] or [])))

    async def series(request: Request, p: dict[str, Any]) -> Response:
        if not p["runs"]:
            raise ApiError(400, "parameter 'runs' must list at least one run id")
        result = await _blocking(lambda: query.chart(
            p["project"], p["key"], p["runs"], x=p["x"], start=p["start"], end=p["end"],
            buckets=p["buckets"], encoding=p["encoding"]))
        return jsonio.json_response(result)

    async def media(request: Request, p: dict[str, Any]) -> Response:
        return jsonio.json_response(await _blocking(
            lambda: query.media(p["project"], p["run"], p["key"])))

    async def media_file(request: Request, p: dict[str, Any]) -> Response:
        item = await _blocking(lambda: query.media_file(p["project"], p["run"], p["index"]))
        if item.media_type == "application/json":
            def load() -> Any:
                try:
                    return jsonio.safe(json.loads(item.path.read_text(encoding="utf-8")))
                except (OSError, ValueError) as exc:
                    raise ApiError(404, f"media file cannot be read: {exc}") from None

            return jsonio.json_response({"type": item.type, "value": await _blocking(load)})
        return FileResponse(item.path, media_type=item.media_type)

    async def export_csv(request: Request, p: dict[str, Any]) -> Response:
        # surrogatepass: a lone surrogate stored by an importer or an older runfleet
        # survives the spool and becomes U+FFFD below instead of failing the whole export.
        spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by the body
            max_size=8 << 20, mode="w+", newline="", encoding="utf-8", errors="surrogatepass")
        try:
            await _blocking(lambda: query.export_csv(p["project"], p["runs"] or [],
                                                     p["keys"] or None, spool))
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", p["project"])[:100] or "export"

        async def body() -> AsyncIterator[bytes]:
            try:
                while chunk := await _blocking(lambda: spool.read(1 << 20)):
                    yield jsonio.safe_text(chunk).encode("utf-8")
            finally:
                spool.close()

        return StreamingResponse(body(), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"'})

    async def list_ops(request: Request, p: dict[str, Any]) -> Response:
        return jsonio.json_response(await _blocking(lambda: control.ops(
            p["project"], p["run"], p["after"], p["limit"])))

    async def request_op(request: Request, p: dict[str, Any]) -> Response:
        body = await _json_body(request)
        client = request.client.host if request.client else None
        try:
            op = await _blocking(lambda: control.request(body, client))
        except StoreBusyError:
            raise ApiError(409, "the database is busy with writes; try again") from None
        return jsonio.json_response(op)

    def change_run(restore: bool) -> Handler:
        async def handler(request: Request, p: dict[str, Any]) -> Response:
            body = await _json_body(request)
            try:
                run = await _blocking(lambda: deletion.change(query, body, restore))
            except StoreBusyError:
                raise ApiError(409, "the database is busy with writes; try again") from None
            return jsonio.json_response(run)

        return handler

    async def stream(request: Request, p: dict[str, Any]) -> Response:
        token = request.headers.get("last-event-id") or p["cursor"]
        cursor, ops_from = decode_token(token) if token else ({}, None)
        if ops_from is None:
            ops_from = p["ops_from"]

        def open_watcher() -> live.LiveWatcher:
            query.check_project(p["project"])  # 404, as the other endpoints answer
            return live.LiveWatcher(query.api, p["project"], p["runs"] or None, cursor,
                                    ops_from)

        watcher = await _blocking(open_watcher)
        stopping = getattr(request.app.state, "stopping", None)
        return StreamingResponse(live.event_stream(watcher, p["max_seconds"], stopping),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def spec(request: Request, p: dict[str, Any]) -> Response:
        return jsonio.json_response(openapi(endpoints, __version__))

    not_found = {404: "unknown project, run or item"}
    endpoints = [
        Endpoint("/api/health", "GET", "Server version and home", (), health),
        Endpoint("/api/projects", "GET", "Projects with run counts", (), projects),
        Endpoint("/api/runs", "GET", "Runs of a project, filtered and sorted", (
            PROJECT,
            Param("search", description="text in the run name or id (case-insensitive)"),
            Param("regex", "boolean", default=False, description="search is a regular "
                  "expression (RE2 syntax: linear time, no backreferences or lookaround)"),
            Param("status", "multi", enum=tuple(RunStatus), description="keep these statuses"),
            Param("filter", "multi", description="FIELD<op>VALUE with op = != > >= < <= or "
                  "~ (RE2 regular expression), e.g. config.lr=0.001 or summary.acc>=0.9; "
                  "repeatable"),
            Param("sort", description="field to sort by, '-' first for descending, e.g. "
                  "-summary.acc, name, created"),
            Param("limit", "integer", default=1000, minimum=1, maximum=10_000),
            Param("offset", "integer", default=0, minimum=0, maximum=10**9),
            Param("deleted", "boolean", default=False, description="include deleted runs"),
        ), runs, not_found),
        Endpoint("/api/run", "GET", "One run: config, summary, keys, lineage, alerts, media",
                 (PROJECT, RUN), run, not_found),
        Endpoint("/api/run", "PATCH", "Change a run's notes or tags", (PROJECT, RUN),
                 update_run, {**not_found, 401: "token required", 403: "cross-site write",
                              409: "database busy", 413: "body too large",
                              415: "not JSON"},
                 body={"type": "object", "properties": {
                     "notes": {"type": ["string", "null"]},
                     "tags": {"type": ["array", "null"], "items": {"type": "string"}}},
                     "additionalProperties": False}),
        Endpoint("/api/run/artifacts", "GET", "Artefact versions a run logged and used",
                 (PROJECT, RUN), artifacts, not_found, description=(
                     "`logged` and `used`: lists of versions (project, name, version, type, "
                     "aliases, size, files, digest, description, metadata, created, "
                     "logged_by and used_by as {project, run, purged}).")),
        Endpoint("/api/keys", "GET", "Metric keys of runs (all runs when none are given)",
                 (PROJECT, RUNS), keys, not_found),
        Endpoint("/api/series", "GET", "Chart data of one key for many runs", (
            PROJECT,
            Param("key", required=True, description="metric key"),
            Param("runs", "list", required=True, description="comma-separated run ids"),
            Param("x", default="step", description="x axis: step, time (seconds since the "
                  "epoch), relative (seconds since each run started) or a logged key"),
            Param("start", "number", description="smallest x (default: the data's)"),
            Param("end", "number", description="largest x (default: the data's)"),
            Param("buckets", "integer", default=1000, minimum=1, maximum=MAX_BUCKETS,
                  description="at most this many buckets (about the chart's pixel width)"),
            Param("encoding", default="json", enum=jsonio.ENCODINGS,
                  description="float arrays as JSON numbers or base64 float64"),
        ), series, not_found, description=(
            "For each run: the exact points when the range holds at most `buckets` of "
            "them (mode exact: x, y), else min, max, mean and count per bucket (mode "
            "buckets) on the grid `grid` = {lo, hi, buckets} shared by the chart.")),
        Endpoint("/api/media", "GET", "Media items of a run", (
            PROJECT, RUN, Param("key", description="only this key")), media, not_found),
        Endpoint("/api/media/file", "GET", "One media file (image, or table/histogram JSON)", (
            PROJECT, RUN, Param("index", "integer", required=True, minimum=0,
                                maximum=10**9)), media_file,
                 {**not_found, 403: "path outside the home"}, content_type="*/*"),
        Endpoint("/api/export.csv", "GET", "Points of runs as CSV (long layout, exact values)",
                 (PROJECT, RUNS, Param("keys", "list", description="only these keys")),
                 export_csv, not_found, content_type="text/csv"),
        Endpoint("/api/stream", "GET", "Live updates (Server-Sent Events)", (
            PROJECT, RUNS,
            Param("cursor", description="token from /api/runs or a previous event id"),
            Param("ops_from", "integer", minimum=0, maximum=2**62,
                  description="send ops with id >= this (ops_from of /api/ops); default: "
                  "only op changes after the stream opens"),
            Param("max_seconds", "number", minimum=0.1, maximum=86_400,
                  description="close the stream after this long (default: never)"),
        ), stream, not_found, content_type="text/event-stream"),
        Endpoint("/api/ops", "GET", "Control ops (audit trail) and the controller's state", (
            PROJECT, Param("run", description="only the ops of this run"),
            Param("after", "integer", default=0, minimum=0, maximum=2**62,
                  description="only ops with a larger id"),
            Param("limit", "integer", default=1000, minimum=1, maximum=10_000),
        ), list_ops, not_found, description=(
            "Ops oldest first: id, kind (stop, resume, delete, clone), run, args, source "
            "(python, attach, cli, dashboard, policy:NAME), actor, status (pending, applied, "
            "rejected), reason, result, created, applied. `controller_alive` says whether "
            "the experiment's controller runs now (pending ops wait for it); `ops_from` is "
            "the position to follow ops on /api/stream from; `engine_keys` lists the config "
            "keys the experiment sets for all its runs (a clone cannot change them).")),
        Endpoint("/api/ops", "POST", "Ask for a stop, resume, delete or clone of a run", (),
                 request_op, {**not_found, 401: "token required", 403: "cross-site write",
                              409: "database busy", 413: "body too large",
                              415: "not JSON"},
                 body=BODY_SCHEMA, description=(
                     "Writes a pending op (source dashboard) that the experiment's controller "
                     "applies in order, or rejects with a reason; follow it on /api/stream or "
                     "GET /api/ops. A clone may change only keys of the run's config "
                     "(`changes` = {dotted.key: value}); an unknown key is refused at once.")),
        Endpoint("/api/run/delete", "POST", "Delete a tracked run (soft: restorable until "
                 "`runfleet gc`)", (), change_run(False),
                 {**not_found, 401: "token required", 403: "cross-site write",
                  409: "refused: running, already deleted, or a run of an experiment",
                  413: "body too large", 415: "not JSON"},
                 body=deletion.BODY_SCHEMA, description=(
                     "Applies at once to a run that belongs to no experiment: it is hidden "
                     "from listings (GET /api/runs?deleted=true lists it) until restored or "
                     "purged by `runfleet gc`. A run whose process still runs is refused, "
                     "and so is a run of an experiment (its controller deletes it: POST "
                     "/api/ops).")),
        Endpoint("/api/run/restore", "POST", "Restore a deleted tracked run", (),
                 change_run(True),
                 {**not_found, 401: "token required", 403: "cross-site write",
                  409: "refused: not deleted, or deleted by an experiment's controller",
                  413: "body too large", 415: "not JSON"},
                 body=deletion.BODY_SCHEMA, description=(
                     "Gives a run deleted by POST /api/run/delete (or `runfleet delete`) "
                     "back the status it had.")),
        Endpoint("/api/openapi.json", "GET", "This description", (), spec),
    ]
    return endpoints


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_large() -> ApiError:
    return ApiError(413, f"request body over {BODY_LIMIT} bytes: refused")


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object body, read as a stream: a declared ``Content-Length`` over
    :data:`BODY_LIMIT` is refused before anything is read, and a body without one (chunked)
    is cut as soon as it passes the limit, so a large body is never held whole (the server
    discards the rest of it). Any text in it holding a lone surrogate is refused, naming the
    field."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > BODY_LIMIT:
                raise _too_large()
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_LIMIT:
            raise _too_large()
        parts.append(chunk)
    try:
        body = json.loads(b"".join(parts), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    where = _surrogate_field(body)
    if where is not None:
        raise ApiError(400, f"field {where!r} holds a lone surrogate (a \\udXXX escape on "
                            f"its own), which is not valid Unicode text")
    return body


def _surrogate_field(value: Any, path: str = "") -> str | None:
    """Where in a parsed JSON value a text (or object key) holds a lone surrogate, as a path
    like ``tags[2]`` or ``args.changes.lr``; None when nowhere."""
    if isinstance(value, str):
        return (path or "body") if jsonio.has_surrogate(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if jsonio.has_surrogate(key):
                return name
            found = _surrogate_field(item, name)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _surrogate_field(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def store_failure(exc: BaseException, db_path: Path) -> ApiError | None:
    """The 503 answer for a database that cannot be read, naming ``db_path`` and what to do;
    None when ``exc`` is not such a failure (a bug: the caller answers a plain 500).

    A damaged file (SQLite's ``database disk image is malformed``, a point blob that no
    longer decompresses) stays damaged until someone recovers it; I/O errors and a busy
    database may pass.
    """
    if isinstance(exc, StoreBusyError):
        return ApiError(503, f"the runfleet database {db_path} is busy (locked by a "
                             f"writer for too long); try again in a moment")
    if isinstance(exc, StoreError):
        return ApiError(503, f"the runfleet database cannot be used: {exc}")
    damaged = isinstance(exc, zlib.error)
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
            exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.IntegrityError)):
        name = getattr(exc, "sqlite_errorname", "") or ""
        damaged = (name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
                   or "malformed" in str(exc) or "not a database" in str(exc))
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return ApiError(503, f"the runfleet database {db_path} is busy; try again in a "
                                 f"moment")
        if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_FULL",
                            "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_NOMEM")):
            return ApiError(503, f"cannot read the runfleet database {db_path}: {exc}. Check "
                                 f"the disk and the file's permissions, then reload")
    if not damaged:
        return None
    return ApiError(503, f"the runfleet database {db_path} is damaged ({exc}): part of it "
                         f"cannot be read. Stop the programs that use it, keep a copy, and "
                         f"recover what SQLite can still read, e.g. `sqlite3 {db_path} "
                         f".recover | sqlite3 recovered.db`, or restore a backup")


def _db_path(request: Request) -> Path:
    query = getattr(request.app.state, "query", None)
    return Path(getattr(query, "db_path", "runfleet.db"))


def routes(endpoints: Sequence[Endpoint]) -> list[Route]:
    """Starlette routes for the endpoints (one route per path, dispatching on method)."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for ep in endpoints:
        by_path.setdefault(ep.path, {})[ep.method] = ep
    return [Route(path, _dispatch(methods), methods=list(methods))
            for path, methods in by_path.items()]


def _dispatch(methods: dict[str, Endpoint]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        ep = methods.get(request.method) or methods["GET"]  # HEAD is served as GET
        try:
            params = parse_params(request, ep.params)
            return await ep.handler(request, params)
        except ApiError as exc:
            return jsonio.json_response({"error": exc.message}, status=exc.status)
        except (sqlite3.DatabaseError, StoreError, StoreBusyError, zlib.error) as exc:
            failure = store_failure(exc, _db_path(request))
            if failure is None:
                raise
            print(f"runfleet dashboard: {request.url.path}: {failure.message}",
                  file=sys.stderr)
            return jsonio.json_response({"error": failure.message}, status=failure.status)

    return endpoint
