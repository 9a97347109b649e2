"""The OpenAPI document at /openapi.json (as at /api/openapi.json) and the API page at
/docs: Swagger UI, bundled by the front end's build (no CDN), renders every endpoint of the
document under the dashboard's own CSP, in a real browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from runfleet.dashboard.app import create_app
from runfleet.dashboard.security import PAGE_CSP
from tests.dashboard.conftest import ARTIFACTS


def test_openapi_document_is_served_at_both_addresses(client: TestClient) -> None:
    root = client.get("/openapi.json")
    assert root.status_code == 200
    assert root.headers["content-type"].startswith("application/json")
    assert root.json() == client.get("/api/openapi.json").json()
    assert root.json()["openapi"].startswith("3.")


def test_docs_page_and_document_need_no_token_but_keep_the_security_headers(
        demo_home: Path) -> None:
    app = create_app(demo_home, loopback_only=False)  # reads of /api/* need the token here
    with TestClient(app, base_url="http://192.0.2.1") as anonymous:
        assert anonymous.get("/api/runs", params={"project": "demo"}).status_code == 401
        for path in ("/docs", "/openapi.json"):  # no run data in either
            response = anonymous.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-security-policy"] == PAGE_CSP
            assert response.headers["x-frame-options"] == "DENY"
    docs = TestClient(create_app(demo_home), base_url="http://127.0.0.1").get("/docs").text
    assert "/static/docs.js" in docs and "https://" not in docs and "http://" not in docs


def test_docs_page_renders_every_endpoint_of_the_document(serve: Any, page: Any,
                                                          demo_home: Path) -> None:
    srv = serve(demo_home)
    document = TestClient(create_app(demo_home), base_url="http://127.0.0.1").get(
        "/openapi.json").json()
    expected = sorted((method.upper(), path) for path, item in document["paths"].items()
                      for method in item)
    outside: list[str] = []
    refused: list[str] = []
    page.on("request", lambda r: outside.append(r.url)
            if not r.url.startswith((srv.url, "data:", "blob:")) else None)
    page.on("console", lambda m: refused.append(m.text)
            if "Content Security Policy" in m.text else None)
    page.goto(srv.url.rstrip("/") + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    blocks = page.locator(".opblock")
    shown = sorted(
        (block.locator(".opblock-summary-method").inner_text().strip(),
         block.locator(".opblock-summary-path").get_attribute("data-path") or "")
        for block in blocks.all())
    assert shown == expected
    assert page.locator(".info .title").inner_text().startswith(document["info"]["title"])
    assert not outside, f"requests leaving the dashboard: {outside}"
    assert not refused, f"blocked by the page's CSP: {refused}"
    assert len(shown) >= 10
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "api-docs.png"))


@pytest.mark.parametrize("path", ["/static/docs.js", "/static/docs.css"])
def test_docs_assets_are_built_into_the_static_folder(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200 and len(response.content) > 10_000
