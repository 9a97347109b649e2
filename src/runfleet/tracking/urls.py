"""The dashboard address of a run (``run.url``).

``runfleet show`` serves on ``127.0.0.1:7760`` by default and opens a run's detail page for
``?project=<project>&run=<id>``. ``RUNFLEET_DASHBOARD_URL`` (e.g.
``http://myhost:8000/``) names the dashboard when it is served elsewhere.
"""

from __future__ import annotations

import os
from urllib.parse import quote

#: Where ``runfleet show`` serves by default (its ``DEFAULT_HOST`` and ``DEFAULT_PORT``).
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:7760/"


def run_url(project: str, run_id: str) -> str:
    """The dashboard URL of run ``run_id`` of ``project``.

    >>> run_url("my exp", "ab12")
    'http://127.0.0.1:7760/?project=my%20exp&run=ab12'
    """
    base = os.environ.get("RUNFLEET_DASHBOARD_URL") or DEFAULT_DASHBOARD_URL
    base = base.split("#", 1)[0].split("?", 1)[0]
    if not base.endswith("/"):
        base += "/"
    return f"{base}?project={quote(project, safe='')}&run={quote(run_id, safe='')}"
