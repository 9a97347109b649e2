"""The web dashboard behind ``runfleet show``.

Modules, one job each:

* ``app``: the Starlette application (routes, static page, error handling);
* ``routes``: the JSON API endpoints; ``spec``: their declared parameters, validation and
  the OpenAPI document;
* ``query``: reads of the home (runs, chart data, media, exports), no HTTP;
* ``control``: control ops (stop, resume, delete, clone) asked from the page, and their
  audit trail;
* ``live``: Server-Sent Events with new points, run and op changes since a cursor;
* ``cursor``: the live-update cursor token (steps per run, op position);
* ``security``: loopback host check, cross-site write refusal, the token (every write,
  reads off loopback) and its read cookie;
* ``server``: ``runfleet show`` and ``runfleet.show()``: port choice, token, uvicorn;
* ``jsonio``: strict JSON (and base64) encoding of numpy arrays.

The front end (TypeScript + uPlot) lives in ``frontend/`` and is built by esbuild into
``static/`` (generated, not committed).
"""

from runfleet.dashboard.app import create_app
from runfleet.dashboard.server import serve, show

__all__ = ["create_app", "serve", "show"]
