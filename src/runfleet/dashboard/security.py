"""Who may talk to the dashboard: host checks, cross-site write refusal and the write token.

* Bound to a loopback address (the default), the server answers only requests whose
  ``Host`` is a loopback name, so a web page on another site cannot reach it through DNS
  rebinding.
* Writes (any method but GET, HEAD and OPTIONS) are refused when the browser says they come
  from another site (``Origin`` differs from ``Host``, or ``Sec-Fetch-Site: cross-site``),
  and must send JSON (``Content-Type: application/json``), which a plain HTML form cannot.
* Bound to any other address, writes also need the token printed at start, as
  ``Authorization: Bearer <token>`` or ``X-Runfleet-Token: <token>``.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runfleet.dashboard import jsonio

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' "
            "'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'")


def new_token() -> str:
    """A fresh random write token."""
    return secrets.token_urlsafe(24)


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
    """ASGI middleware applying the rules of the module docstring to every HTTP request."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = self._check(scope["method"], headers)
        if problem is not None:
            status, message = problem
            response = jsonio.json_response({"error": message}, status=status)
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY"),
                         (b"content-security-policy", PAGE_CSP.encode())]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _check(self, method: str, headers: Headers) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.loopback_only and not is_loopback(_host_name(host)):
            return 403, (f"host {host!r} is not allowed: this dashboard only answers "
                         f"loopback names (start it with --host to serve others)")
        if method in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None and (origin == "null" or urlsplit(origin).netloc != host):
            return 403, "cross-site write refused (Origin does not match Host)"
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, "cross-site write refused"
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return 415, "writes must send Content-Type: application/json"
        if self.token is not None and not self._has_token(headers):
            return 401, ("this write needs the dashboard token printed at start "
                         "(Authorization: Bearer <token>)")
        return None

    def _has_token(self, headers: Headers) -> bool:
        assert self.token is not None
        sent = headers.get("x-runfleet-token")
        auth = headers.get("authorization", "")
        if sent is None and auth.lower().startswith("bearer "):
            sent = auth[7:].strip()
        return sent is not None and hmac.compare_digest(sent.encode(), self.token.encode())
