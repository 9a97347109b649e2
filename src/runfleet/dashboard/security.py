"""Who may talk to the dashboard: host checks, cross-site write refusal and the token.

* ``runfleet show`` makes a random token at every start (``--no-token`` turns it off) and
  prints it once, in the URL it shows (``#token=...``: a URL fragment is never sent to a
  server, so it stays out of logs and ``Referer``). The page reads it from there.
* Writes (any method but GET, HEAD and OPTIONS) need the token as ``Authorization: Bearer
  <token>`` (or ``X-Runfleet-Token``), on loopback too: on a machine shared by several
  accounts, any of them can reach a loopback port, and the audit trail would name the
  dashboard's owner. A cookie never authorizes a write, so a forged cross-site request
  cannot either.
* Reads of ``/api/*`` need the token too when the server is bound to a non-loopback address
  (run metadata holds argv, working directories, configs). Links the page cannot add a
  header to (media, CSV export, the live stream) use a cookie instead: the first request
  presenting the token in a header gets an ``HttpOnly; SameSite=Strict`` cookie holding a
  value derived from the token (:func:`cookie_value`; it opens reads only, never writes).
  The page itself (``/``, ``/static/...``) holds no data and is served to anyone.
* Bound to a loopback address (the default), the server answers only requests whose
  ``Host`` is a loopback name, so a web page on another site cannot reach it through DNS
  rebinding.
* Writes are refused when the browser says they come from another site (``Origin`` differs
  from ``Host``, or ``Sec-Fetch-Site: cross-site``), and must send JSON (``Content-Type:
  application/json``), which a plain HTML form cannot.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runfleet.dashboard import jsonio

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' "
            "'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'")


def new_token() -> str:
    """A fresh random dashboard token (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def cookie_name(token: str) -> str:
    """The name of the read cookie of the dashboard with ``token``. Cookies are shared by
    every port of a host, so each dashboard's name differs (two dashboards on one machine
    keep their own)."""
    return "runfleet-" + hashlib.sha256(token.encode()).hexdigest()[:16]


def cookie_value(token: str) -> str:
    """The read cookie's value: derived from ``token``, never the token itself, so the
    cookie cannot be replayed as the token that writes need."""
    return hmac.new(token.encode(), b"runfleet dashboard read cookie", "sha256").hexdigest()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is loopback."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """The name part of a ``Host`` header value (``[::1]:8080`` -> ``::1``)."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class SecurityMiddleware:
    """ASGI middleware applying the rules of the module docstring to every HTTP request.

    ``token`` None means no token at all (``runfleet show --no-token``): writes then need
    only the same-origin JSON checks, and reads are open.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only
        self.reads_need_token = token is not None and not loopback_only
        self.cookie = (cookie_name(token), cookie_value(token)) if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        presented = self._has_token(headers)
        problem = self._check(scope["method"], scope.get("path", ""), headers, presented)
        if problem is not None:
            status, message = problem
            response = jsonio.json_response({"error": message}, status=status)
            await response(scope, receive, send)
            return
        extra = [(b"x-content-type-options", b"nosniff"),
                 (b"referrer-policy", b"no-referrer"),
                 (b"x-frame-options", b"DENY"),
                 (b"content-security-policy", PAGE_CSP.encode())]
        if presented and self.cookie is not None and not self._has_cookie(headers):
            name, value = self.cookie
            extra.append((b"set-cookie", f"{name}={value}; Path=/; HttpOnly; "
                                         f"SameSite=Strict".encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _check(self, method: str, path: str, headers: Headers,
               presented: bool) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.loopback_only and not is_loopback(_host_name(host)):
            return 403, (f"host {host!r} is not allowed: this dashboard only answers "
                         f"loopback names (start it with --host to serve others)")
        if method in SAFE_METHODS:
            if (self.reads_need_token and path.startswith("/api/") and not presented
                    and not self._has_cookie(headers)):
                return 401, ("this dashboard needs its token: open the URL `runfleet show` "
                             "printed (it holds the token), or send Authorization: Bearer "
                             "<token>")
            return None
        origin = headers.get("origin")
        if origin is not None and (origin == "null" or urlsplit(origin).netloc != host):
            return 403, "cross-site write refused (Origin does not match Host)"
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, "cross-site write refused"
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return 415, "writes must send Content-Type: application/json"
        if self.token is not None and not presented:
            return 401, ("this write needs the dashboard token (Authorization: Bearer "
                         "<token>); it is in the URL `runfleet show` printed")
        return None

    def _has_token(self, headers: Headers) -> bool:
        """Whether the request presents the token in a header."""
        if self.token is None:
            return False
        sent = headers.get("x-runfleet-token")
        auth = headers.get("authorization", "")
        if sent is None and auth.lower().startswith("bearer "):
            sent = auth[7:].strip()
        return sent is not None and hmac.compare_digest(sent.encode(), self.token.encode())

    def _has_cookie(self, headers: Headers) -> bool:
        """Whether the request carries this dashboard's read cookie."""
        if self.cookie is None or "cookie" not in headers:
            return False
        name, value = self.cookie
        sent = cookie_parser(headers["cookie"]).get(name)
        return sent is not None and hmac.compare_digest(sent.encode(), value.encode())
