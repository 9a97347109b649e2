"""The Starlette application: JSON API, live stream, the built page, the API page
(``/docs``, Swagger UI reading ``/openapi.json``), and error handling.

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
from runfleet.dashboard.routes import build_endpoints, routes, store_failure
from runfleet.dashboard.security import SecurityMiddleware, new_token
from runfleet.dashboard.spec import openapi
from runfleet.version import __version__

STATIC_DIR = Path(__file__).resolve().parent / "static"
NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>runfleet</title>
<p>The dashboard's front end is not built. From a checkout, run <code>make frontend</code>
(or <code>npm ci && npm run build</code> in <code>frontend/</code>); the JSON API is at
<a href="/openapi.json">/openapi.json</a>.</p>"""


def create_app(home: str | os.PathLike[str] | None = None, *, token: str | None = None,
               no_token: bool = False, loopback_only: bool = True,
               static_dir: Path | None = None) -> Starlette:
    """The dashboard app for the home ``home`` (default: ``RUNFLEET_DIR``, else
    ``~/.runfleet``).

    Every write needs ``token`` (``Authorization: Bearer``); without one a fresh random
    token is made, found as ``app.state.token``. ``no_token=True`` serves with no token at
    all (``runfleet show --no-token``: anyone who can reach the port may write).
    ``loopback_only`` answers only loopback host names; with it off (a server bound to
    another address), reads of the API need the token too. See ``security.py``.
    """
    if no_token and token is not None:
        raise ValueError("create_app: give a token or no_token=True, not both")
    if not no_token and token is None:
        token = new_token()
    query = Query(home)
    endpoints = build_endpoints(query)
    static = static_dir or STATIC_DIR

    async def index(request: Request) -> Response:
        page = static / "index.html"
        if not page.is_file():
            return HTMLResponse(NOT_BUILT, status_code=200)
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    async def docs(request: Request) -> Response:
        page = static / "docs.html"  # Swagger UI, bundled by the front end's build
        if not page.is_file():
            return HTMLResponse(NOT_BUILT, status_code=200)
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    async def openapi_document(request: Request) -> Response:
        # the same document as /api/openapi.json, where tools look for it first; it holds
        # no data, so like the page it is served without the token
        return jsonio.json_response(openapi(endpoints, __version__))

    async def error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return jsonio.json_response({"error": exc.detail}, status=exc.status_code)
        failure = store_failure(exc, query.db_path)
        if failure is not None:
            return jsonio.json_response({"error": failure.message}, status=failure.status)
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
        routes=[*routes(endpoints), Route("/", index), Route("/docs", docs),
                Route("/openapi.json", openapi_document),
                Mount("/static", StaticFiles(directory=static, check_dir=False))],
        middleware=[Middleware(SecurityMiddleware, token=token,
                               loopback_only=loopback_only)],
        exception_handlers={HTTPException: error, Exception: error},
        lifespan=lifespan,
    )
    app.state.query = query
    app.state.token = token  # None only with no_token
    app.state.stopping = threading.Event()  # set by the server on shutdown: ends live streams
    return app
