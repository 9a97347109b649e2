"""Fixtures of the dashboard tests: logged homes, the app, a served dashboard, a browser."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from runfleet.dashboard.app import STATIC_DIR, create_app
from runfleet.dashboard.server import BackgroundServer
from tests.conftest import ROOT
from tests.dashboard.helpers import auth, log_demo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the four demo runs (read-only for tests: copy it to change it)."""
    home = tmp_path_factory.mktemp("demo-home")
    log_demo(home)
    return home


@pytest.fixture
def demo_copy(demo_home: Path, tmp_path: Path) -> Path:
    """A private copy of the demo home, for tests that write or log more."""
    target = tmp_path / "demo"
    shutil.copytree(demo_home, target)
    return target


@pytest.fixture
def client(demo_home: Path) -> Iterator[TestClient]:
    """The API of the demo home through Starlette's test client (a loopback host), sending
    the app's token."""
    app = create_app(demo_home)
    with TestClient(app, base_url="http://127.0.0.1", headers=auth(app)) as c:
        yield c


def _need_browser() -> None:
    """Skip browser tests where they cannot run locally; in CI they must run."""
    problems = []
    if not CHROMIUM.exists():
        problems.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    if not (STATIC_DIR / "index.html").exists():
        problems.append("the front end is not built (make frontend)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("playwright is not installed")
    if problems:
        if os.environ.get("CI"):
            pytest.fail("browser tests cannot run: " + "; ".join(problems))
        pytest.skip("; ".join(problems))


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the whole session."""
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start a dashboard on a free port for a home: ``serve(home) -> BackgroundServer``
    (``.url``; ``.page_url(project)`` with the token in the fragment; ``.headers()``)."""
    servers: list[BackgroundServer] = []

    def start(home: Path, **kwargs: Any) -> BackgroundServer:
        srv = BackgroundServer(create_app(home, **kwargs)).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (own context) that fails the test on any JavaScript error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900},
                                  accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
