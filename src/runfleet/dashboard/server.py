"""``runfleet show``: pick a port, make the token, and serve the app with uvicorn.

A port in use means the next one is tried (up to :data:`PORT_TRIES`); whatever holds a port
is never touched. Every start makes a fresh token, printed once in the URL shown (in its
fragment, which browsers never send to servers); writes need it, and reads too when bound
to a non-loopback host (see ``security.py``). ``no_token`` turns it off, with a warning.

Example:
    >>> from runfleet.dashboard.server import serve
    >>> serve(home="/tmp/rf-doc", port=7760)              # doctest: +SKIP
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import quote

import uvicorn
from starlette.applications import Starlette

from runfleet.dashboard.app import create_app
from runfleet.dashboard.security import is_loopback, new_token
from runfleet.errors import StoreError
from runfleet.home import Home
from runfleet.store.base import StoreBusyError
from runfleet.store.sqlite import SQLiteStore

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7760
PORT_TRIES = 50


def bind_socket(host: str, port: int, tries: int = PORT_TRIES) -> socket.socket:
    """A listening socket on the first free port from ``port`` on (``0``: any free port).

    Raises ``OSError`` when none of ``tries`` ports is free or the host cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for candidate in ([0] if port == 0 else range(port, min(port + tries, 65536))):
        sock = socket.socket(family, socket.SOCK_STREAM)
        # SO_REUSEADDR only skips TIME_WAIT leftovers; a port another socket listens on
        # still fails with EADDRINUSE, so nothing is taken over.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), candidate))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            last = exc
            continue
        sock.set_inheritable(True)
        return sock
    raise OSError(f"no free port on {host} from {port} to {port + tries - 1} ({last})")


def dashboard_url(host: str, port: int, project: str | None = None,
                  token: str | None = None) -> str:
    """The address to open: the page for ``project``, the token in the fragment (never
    sent to servers or logged)."""
    name = host
    if host in ("0.0.0.0", "::", ""):
        name = socket.gethostname()
    elif ":" in host and not host.startswith("["):
        name = f"[{host}]"
    url = f"http://{name}:{port}/"
    if project:
        url += f"?project={quote(project, safe='')}"
    if token:
        url += f"#token={token}"
    return url


def fill_summaries(db_path: Path, stop: threading.Event) -> int:
    """Give segments written before schema 2 their block summaries, in small transactions,
    until none are left or ``stop`` is set; return how many were filled. Stops quietly on
    a home it cannot write (the dashboard then decodes those segments, just slower)."""
    done = 0
    try:
        store = SQLiteStore.open(db_path)
    except (StoreError, StoreBusyError, sqlite3.Error, OSError):
        return 0
    try:
        while not stop.is_set():
            try:
                n = store.fill_summaries(256)
            except StoreBusyError:
                stop.wait(1.0)
                continue
            except (StoreError, sqlite3.Error, OSError):
                break
            done += n
            if n == 0:
                break
            stop.wait(0.05)  # let training processes' writes through
    finally:
        store.close()
    return done


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app when it starts to stop (live streams then end at
    once instead of holding the shutdown until its grace period runs out)."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app_stopping: threading.Event | None = getattr(app.state, "stopping", None)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.app_stopping is not None:
            self.app_stopping.set()
        super().handle_exit(sig, frame)


class BackgroundServer:
    """The dashboard served by uvicorn on a thread (for tests, benchmarks and notebooks).

    Example:
        >>> with BackgroundServer(create_app("/tmp/rf-doc")) as srv:   # doctest: +SKIP
        ...     print(srv.url)
    """

    def __init__(self, app: Starlette, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self.sock = bind_socket(host, port)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://{host}:{self.port}"
        self.token: str | None = getattr(app.state, "token", None)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=1)
        self.server = _Server(config, app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="runfleet-dashboard", daemon=True)

    def page_url(self, project: str | None = None) -> str:
        """The page's address with the token in its fragment (as ``runfleet show`` prints)."""
        return dashboard_url(self.host, self.port, project, self.token)

    def headers(self) -> dict[str, str]:
        """``Authorization`` headers carrying the token (empty without one), for clients."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self) -> BackgroundServer:
        """Start serving; return once the server accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the dashboard server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self.server.app_stopping is not None:
            self.server.app_stopping.set()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(home: str | os.PathLike[str] | None = None, host: str = DEFAULT_HOST,
          port: int | None = None, project: str | None = None,
          out: IO[str] | None = None, no_token: bool = False,
          err: IO[str] | None = None) -> int:
    """Serve the dashboard of ``home`` until interrupted; return an exit code.

    A fresh token is made and printed once, in the URL line (nowhere else); ``no_token``
    serves without one and prints a warning to ``err`` (default: standard error).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    resolved = Home.resolve(home)
    loopback = is_loopback(host)
    token = None if no_token else new_token()
    app = create_app(resolved.root, token=token, no_token=no_token, loopback_only=loopback)
    sock = bind_socket(host, DEFAULT_PORT if port is None else port)
    actual = int(sock.getsockname()[1])
    wanted = DEFAULT_PORT if port is None else port
    if wanted not in (0, actual):
        print(f"port {wanted} is in use; using {actual}", file=out)
    if no_token:
        who = ("anyone who can reach this address" if not loopback
               else "every account and program on this machine")
        print(f"runfleet show: warning: --no-token: {who} can read runs and stop, delete "
              f"or edit them through this dashboard, recorded under your name. Use it only "
              f"on a single-user machine.", file=err, flush=True)
    print(f"runfleet dashboard for {resolved.root}", file=out)
    url = dashboard_url(host, actual, project, token)
    if token:
        # The one line holding the token: the link, and the token itself for API clients.
        needs = "writes need" if loopback else "reads and writes need"
        print(f"  {url}  ({needs} the token {token}: it is in this link)", file=out)
    else:
        print(f"  {url}", file=out)
    print("  press Ctrl+C to stop", file=out, flush=True)
    stop = threading.Event()
    threading.Thread(target=fill_summaries, args=(resolved.db_path, stop),
                     name="runfleet-summaries", daemon=True).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=2)
    try:
        _Server(config, app).run(sockets=[sock])
    finally:
        stop.set()
        sock.close()
    return 0


def show(project: str | None = None, dir: Any = None, host: str = DEFAULT_HOST,
         port: int | None = None, no_token: bool = False, **kwargs: Any) -> None:
    """Serve the dashboard (like ``runfleet show``) until interrupted: ``runfleet.show``.
    It prints the URL to open, holding a fresh token; ``no_token=True`` serves without one
    (with a warning; single-user machines only). trackio's ``show(project=...)`` works
    unchanged (its other arguments are ignored)."""
    serve(home=dir, host=host, port=port, project=project, no_token=no_token)
