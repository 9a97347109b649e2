"""Fuzz the JSON API against its own OpenAPI description: no answer may be a 5xx.

Schemathesis generates valid and invalid parameters for every operation from
``/api/openapi.json`` and calls the app in process. The live stream never ends, so it is
left out here (``test_live.py`` covers it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    status_code_conformance,
)

from runfleet.dashboard.app import create_app
from tests.dashboard.helpers import log_demo


def _fuzz_home() -> Path:
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="rf-fuzz-"))
    log_demo(home, steps=300)
    return home


HOME = _fuzz_home()
APP = create_app(HOME, loopback_only=False)
AUTH = {"Authorization": f"Bearer {APP.state.token}"}  # reads need it: not loopback-only
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP, headers=AUTH).exclude(
    path="/api/stream")


@pytest.fixture(autouse=True, scope="module")
def _app_lifespan() -> Iterator[None]:
    yield
    APP.state.query.close()
    shutil.rmtree(HOME, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx(case: Any) -> None:
    case.call_and_validate(headers=AUTH,
                           checks=[not_a_server_error, status_code_conformance,
                                   content_type_conformance, negative_data_rejection])
