"""Who may read and write: loopback hosts, cross-site writes, the token, media paths."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from runfleet.dashboard.app import create_app
from runfleet.dashboard.security import is_loopback


def _first_run(c: TestClient) -> str:
    return str(c.get("/api/runs", params={"project": "demo"}).json()["runs"][0]["id"])


def test_loopback_names() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "example.com", "192.168.1.5", ""):
        assert not is_loopback(host), host


def test_loopback_server_refuses_other_host_names(demo_home: Path) -> None:
    with TestClient(create_app(demo_home), base_url="http://evil.example") as c:
        res = c.get("/api/projects")
        assert res.status_code == 403 and "not allowed" in res.json()["error"]
    with TestClient(create_app(demo_home), base_url="http://localhost:7760") as c:
        assert c.get("/api/projects").status_code == 200


def test_writes_on_loopback_need_same_origin_json(demo_copy: Path) -> None:
    with TestClient(create_app(demo_copy), base_url="http://127.0.0.1:7760") as c:
        run = _first_run(c)
        url = f"/api/run?project=demo&run={run}"
        ok = c.patch(url, json={"notes": "looks good", "tags": ["best"]})
        assert ok.status_code == 200 and ok.json()["notes"] == "looks good"
        assert ok.json()["tags"] == ["best"]
        cross = c.patch(url, json={"notes": "x"}, headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403 and "cross-site" in cross.json()["error"]
        fetch_meta = c.patch(url, json={"notes": "x"}, headers={"Sec-Fetch-Site": "cross-site"})
        assert fetch_meta.status_code == 403
        form = c.patch(url, content=b"notes=x",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415
        same = c.patch(url, json={"notes": "again"}, headers={"Origin": "http://127.0.0.1:7760"})
        assert same.status_code == 200
        for body, words in [({"status": "x"}, "unknown field"), ({"tags": "x"}, "tags must"),
                            ({"notes": 5}, "notes must")]:
            res = c.patch(url, json=body)
            assert res.status_code == 400 and words in res.json()["error"]
        assert c.patch(url, content=b"{", headers={"Content-Type": "application/json"}
                       ).status_code == 400


def test_non_loopback_server_needs_the_token_for_writes(demo_copy: Path) -> None:
    app = create_app(demo_copy, token="s3cret", loopback_only=False)
    with TestClient(app, base_url="http://10.1.2.3:7760") as c:
        run = _first_run(c)  # reads stay open
        url = f"/api/run?project=demo&run={run}"
        denied = c.patch(url, json={"notes": "x"})
        assert denied.status_code == 401 and "token" in denied.json()["error"]
        wrong = c.patch(url, json={"notes": "x"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert c.patch(url, json={"notes": "x"}, headers={"Authorization": "Bearer s3cret"}
                       ).status_code == 200
        assert c.patch(url, json={"notes": "y"}, headers={"X-Runfleet-Token": "s3cret"}
                       ).status_code == 200


def test_media_paths_cannot_leave_the_home(demo_copy: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not yours")
    conn = sqlite3.connect(demo_copy / "runfleet.db")
    conn.execute("UPDATE media SET path = ? WHERE type = 'image'", ("../secret.png",))
    conn.commit()
    conn.close()
    with TestClient(create_app(demo_copy), base_url="http://127.0.0.1") as c:
        run = c.get("/api/runs", params={"project": "demo", "search": "run-1"}).json()
        run_id = run["runs"][0]["id"]
        items = c.get("/api/media", params={"project": "demo", "run": run_id}).json()
        index = next(m["index"] for m in items if m["type"] == "image")
        res = c.get("/api/media/file", params={"project": "demo", "run": run_id,
                                               "index": index})
        assert res.status_code == 403 and "outside" in res.json()["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_unknown_methods_are_refused(client: TestClient, method: str) -> None:
    res = client.request(method, "/api/runs?project=demo", json={})
    assert res.status_code == 405 and "error" in res.json()
