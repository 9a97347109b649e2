"""Deleting and restoring tracked runs from the dashboard: the endpoints (guarded like every
write: token, same origin, JSON), their refusals, and the Delete / Restore buttons of a plain
project in a real browser."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from runfleet.api import Api
from runfleet.dashboard.app import create_app
from runfleet.store.sqlite import SQLiteStore
from tests.dashboard.helpers import auth


@pytest.fixture
def del_home(tmp_path: Path) -> Path:
    """Project "plain": run "done" (completed) and run "live" (running: fresh heartbeat);
    experiment "exp" with run "e"."""
    home = tmp_path / "del-home"
    store = SQLiteStore.open(home / "runfleet.db")
    done = store.create_run("plain", "done", "run-done", config={"lr": 1})
    store.update_run(done.rid, status="completed", finished=time.time())
    store.create_run("plain", "live", "run-live")
    store.create_run("exp", "e", "run-e")
    store.close()
    (home / "experiments" / "exp").mkdir(parents=True)
    (home / "experiments" / "exp" / "experiment.json").write_text('{"name": "exp"}')
    return home


@pytest.fixture
def app_client(del_home: Path) -> Iterator[TestClient]:
    app = create_app(del_home)
    with TestClient(app, base_url="http://127.0.0.1", headers=auth(app)) as c:
        yield c


def _ids(c: TestClient, **params: Any) -> list[str]:
    res = c.get("/api/runs", params={"project": "plain", **params})
    assert res.status_code == 200, res.text
    return [r["id"] for r in res.json()["runs"]]


def test_delete_and_restore_a_tracked_run(app_client: TestClient, del_home: Path) -> None:
    res = app_client.post("/api/run/delete", json={"project": "plain", "run": "done"})
    assert res.status_code == 200, res.text
    assert res.json()["id"] == "done" and res.json()["status"] == "deleted"
    assert _ids(app_client) == ["live"]
    assert _ids(app_client, deleted="true") == ["done", "live"]
    again = app_client.post("/api/run/delete", json={"project": "plain", "run": "done"})
    assert again.status_code == 409 and "already deleted" in again.json()["error"]
    res = app_client.post("/api/run/restore", json={"project": "plain", "run": "done"})
    assert res.status_code == 200 and res.json()["status"] == "completed"
    assert _ids(app_client) == ["done", "live"]
    with Api(del_home) as api:
        assert "deleted" not in api.run("plain", "done").metadata


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"project": "plain", "run": "live"}, 409, "still running"),
    ({"project": "exp", "run": "e"}, 409, "engine experiment"),
    ({"project": "plain", "run": "nope"}, 404, "unknown run"),
    ({"project": "nope", "run": "done"}, 404, "nope"),
    ({"project": "plain"}, 400, "field 'run'"),
    ({"project": "plain", "run": "done", "purge": True}, 400, "unknown field 'purge'"),
])
def test_refusals_say_why(app_client: TestClient, body: dict[str, Any], status: int,
                          words: str) -> None:
    res = app_client.post("/api/run/delete", json=body)
    assert res.status_code == status, res.text
    assert words in res.json()["error"]


def test_writes_need_the_token_and_the_same_origin(del_home: Path) -> None:
    app = create_app(del_home)
    body = {"project": "plain", "run": "done"}
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.post("/api/run/delete", json=body).status_code == 401  # no token
        headers = auth(app)
        cross = c.post("/api/run/delete", json=body,
                       headers={**headers, "Origin": "http://evil.example"})
        assert cross.status_code == 403
        form = c.post("/api/run/delete", content="project=plain&run=done",
                      headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415
    with Api(del_home) as api:
        assert api.run("plain", "done").status == "completed"  # untouched


def test_delete_and_restore_buttons_in_a_browser(del_home: Path, serve: Any, page: Any
                                                 ) -> None:
    page.goto(serve(del_home).page_url("plain"))
    done, live = "#run-list li.run[data-run='done']", "#run-list li.run[data-run='live']"
    page.wait_for_selector(f"{done} button[data-action='delete']")
    assert page.locator(f"{live} button[data-action]").count() == 0  # its process runs
    # Cancel changes nothing.
    page.click(f"{done} button[data-action='delete']")
    page.wait_for_selector("#run-change-dialog[open]")
    assert "runfleet gc" in page.inner_text("#run-change-text")
    page.click("#run-change-cancel")
    page.wait_for_selector("#run-change-dialog", state="detached")
    with Api(del_home) as api:
        assert api.run("plain", "done").status == "completed"
    # Delete: the run leaves the list (the live stream brings the new status).
    page.click(f"{done} button[data-action='delete']")
    page.click("#run-change-ok")
    page.wait_for_selector(done, state="detached", timeout=15_000)
    with Api(del_home) as api:
        assert api.run("plain", "done").status == "deleted"
    # "show deleted" lists it, with Restore; restoring brings back its status.
    page.check("#show-deleted")
    page.wait_for_selector(f"{done}[data-status='deleted'] button[data-action='restore']")
    page.click(f"{done} button[data-action='restore']")
    page.wait_for_selector("#run-change-dialog[open]")
    page.keyboard.press("Enter")  # the confirm button has the focus
    page.wait_for_selector(f"{done}[data-status='completed'] button[data-action='delete']",
                           timeout=15_000)
    with Api(del_home) as api:
        assert api.run("plain", "done").status == "completed"
