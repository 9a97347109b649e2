"""The Starlette application: JSON API, live stream, the built page, and error handling.

Example:
    >>> from runfleet.dashboard.app import create_app
    >>> app = create_app("/tmp/rf-doc")                  # doctest: +SKIP
    >>> # uvicorn.run(app, host="127.0.0.1", port=7760)
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from runfleet.dashboard import jsonio
from runfleet.dashboard.query import Query
from runfleet.dashboard.routes import build_endpoints, routes
from runfleet.dashboard.security import SecurityMiddleware

STATIC_DIR = Path(__file__).resolve().parent / "static"
NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>runfleet</title>
<p>The dashboard's front end is not built. From a checkout, run <code>make frontend</code>
(or <code>npm ci && npm run build</code> in <code>frontend/</code>); the JSON API is at
<a href="/api/openapi.json">/api/openapi.json</a>.</p>"""


def create_app(home: str | os.PathLike[str] | None = None, *, token: str | None = None,
               loopback_only: bool = True, static_dir: Path | None = None) -> Starlette:
    """The dashboard app for the home ``home`` (default: ``RUNFLEET_DIR``, else
    ``~/.runfleet``). ``loopback_only`` answers only loopback host names; ``token``, when
    set, is required for every write."""
    query = Query(home)
    endpoints = build_endpoints(query)
    static = static_dir or STATIC_DIR

    async def index(request: Request) -> Response:
        page = static / "index.html"
        if not page.is_file():
            return HTMLResponse(NOT_BUILT, status_code=200)
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    async def error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return jsonio.json_response({"error": exc.detail}, status=exc.status_code)
        # A bug, not a user error: say so without leaking a traceback to the client.
        print(f"runfleet dashboard: internal error on {request.url.path}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return jsonio.json_response({"error": "internal error (see the server's log)"},
                                    status=500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        query.close()

    app = Starlette(
        routes=[*routes(endpoints), Route("/", index),
                Mount("/static", StaticFiles(directory=static, check_dir=False))],
        middleware=[Middleware(SecurityMiddleware, token=token,
                               loopback_only=loopback_only)],
        exception_handlers={HTTPException: error, Exception: error},
        lifespan=lifespan,
    )
    app.state.query = query
    app.state.stopping = threading.Event()  # set by the server on shutdown: ends live streams
    return app
