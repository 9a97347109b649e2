"""Who may read and write: loopback hosts, cross-site writes, the token, media paths."""

from __future__ import annotations

import concurrent.futures
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import Message

import runfleet
from runfleet.api import PatternError
from runfleet.dashboard.app import create_app
from runfleet.dashboard.routes import BODY_LIMIT
from runfleet.dashboard.security import is_loopback
from runfleet.store.sqlite import SQLiteStore
from tests.dashboard.helpers import auth, start_show, stop_show


def _first_run(c: TestClient, headers: dict[str, str] | None = None) -> str:
    return str(c.get("/api/runs", params={"project": "demo"},
                     headers=headers).json()["runs"][0]["id"])


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
    app = create_app(demo_copy)
    with TestClient(app, base_url="http://127.0.0.1:7760", headers=auth(app)) as c:
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
        run = _first_run(c, {"Authorization": "Bearer s3cret"})  # reads need it too
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


# -- the token: every write, and reads off loopback -----------------------------------------
def test_loopback_writes_need_the_token(demo_copy: Path) -> None:
    app = create_app(demo_copy)
    token = app.state.token
    assert token  # made for every app unless no_token=True
    with TestClient(app, base_url="http://127.0.0.1:7760") as c:
        run = _first_run(c)  # reads on loopback need no token
        url = f"/api/run?project=demo&run={run}"
        denied = c.patch(url, json={"notes": "x"})
        assert denied.status_code == 401 and "token" in denied.json()["error"]
        assert c.patch(url, json={"notes": "x"}, headers={"Authorization": "Bearer nope"}
                       ).status_code == 401
        op = c.post("/api/ops", json={"project": "demo", "run": run, "kind": "delete",
                                      "args": {"purge": True}})
        assert op.status_code == 401
        ok = c.patch(url, json={"notes": "x"}, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["notes"] == "x"
    with runfleet.Api(demo_copy) as api:
        assert [r.notes for r in api.runs("demo") if r.id == run] == ["x"]


def test_no_token_must_be_asked_for(demo_copy: Path) -> None:
    app = create_app(demo_copy, no_token=True)
    assert app.state.token is None
    with TestClient(app, base_url="http://127.0.0.1:7760") as c:
        res = c.patch(f"/api/run?project=demo&run={_first_run(c)}", json={"notes": "x"})
        assert res.status_code == 200
    with pytest.raises(ValueError, match="not both"):
        create_app(demo_copy, token="t", no_token=True)


def test_off_loopback_reads_need_the_token_and_its_cookie_opens_links(demo_home: Path) -> None:
    app = create_app(demo_home, token="s3cret", loopback_only=False)
    bearer = {"Authorization": "Bearer s3cret"}
    with TestClient(app, base_url="http://10.1.2.3:7760", headers=bearer) as c:
        run = _first_run(c)
        run_1 = c.get("/api/runs", params={"project": "demo", "search": "run-1"}
                      ).json()["runs"][0]["id"]
        items = c.get("/api/media", params={"project": "demo", "run": run_1}).json()
        image = next(m["index"] for m in items if m["type"] == "image")
    links = [("/api/export.csv", {"project": "demo"}),
             ("/api/media/file", {"project": "demo", "run": run_1, "index": image}),
             ("/api/stream", {"project": "demo", "max_seconds": 0.1}),
             ("/api/runs", {"project": "demo"}), ("/api/health", {}), ("/api/projects", {})]
    for host in ("http://10.1.2.3:7760", "http://evil.example"):  # any Host: the token rules
        with TestClient(app, base_url=host) as c:
            for path, params in links:
                res = c.get(path, params=params)
                assert res.status_code == 401 and "token" in res.json()["error"], path
            assert c.get("/").status_code == 200  # the page holds no data
    with TestClient(app, base_url="http://10.1.2.3:7760") as c:
        first = c.get("/api/projects", headers=bearer)
        assert first.status_code == 200
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "s3cret" not in cookie
        name, value = cookie.split(";")[0].split("=", 1)
    with TestClient(app, base_url="http://10.1.2.3:7760",
                    headers={"Cookie": f"{name}={value}"}) as c:
        for path, params in links:  # what the page opens without a header: the cookie
            assert c.get(path, params=params).status_code == 200, path
        write = c.patch(f"/api/run?project=demo&run={run}", json={"notes": "x"})
        assert write.status_code == 401  # a cookie never authorizes a write
    with TestClient(app, base_url="http://10.1.2.3:7760",
                    headers={"Cookie": f"{name}=forged"}) as c:
        assert c.get("/api/runs", params={"project": "demo"}).status_code == 401


# -- regular expressions run in linear time -------------------------------------------------
REDOS = "(.*.*.*.*.*.*)*Z"  # hours for a backtracking engine on 30 'a's
GUARD_S = 60  # a bound against hanging on a stalled server, not a timing assertion


@pytest.fixture
def redos_home(tmp_path: Path) -> Path:
    store = SQLiteStore.open(tmp_path / "runfleet.db")
    for i in range(4):
        store.create_run("p", f"r{i}", "a" * (30 + i))
    store.create_run("p", "z", "aaZ")
    store.close()
    return tmp_path


def test_a_catastrophic_regex_cannot_stall_the_server(redos_home: Path) -> None:
    proc, lines = start_show(redos_home, "--port", "0")
    try:
        base = re.search(r"http://[^/\s]+", "\n".join(lines)).group(0)  # type: ignore[union-attr]
        answers: dict[str, httpx.Response | Exception] = {}

        def ask(name: str, params: dict[str, str]) -> None:
            try:
                answers[name] = httpx.get(f"{base}/api/runs", params={"project": "p", **params},
                                          timeout=GUARD_S)
            except httpx.HTTPError as exc:
                answers[name] = exc

        askers = [threading.Thread(target=ask, args=("search", {"search": REDOS,
                                                               "regex": "true"})),
                  threading.Thread(target=ask, args=("filter", {"filter": f"name~{REDOS}"}))]
        for t in askers:
            t.start()
        healthy = 0
        while healthy == 0 or any(t.is_alive() for t in askers):
            health = httpx.get(f"{base}/api/health", timeout=GUARD_S)  # times out if stalled
            assert health.status_code == 200 and health.json()["ok"]
            healthy += 1
        for t in askers:
            t.join(GUARD_S)
        for name in ("search", "filter"):
            res = answers[name]
            assert isinstance(res, httpx.Response), (name, res)
            assert res.status_code == 200, res.text
            assert [r["name"] for r in res.json()["runs"]] == ["aaZ"], name
    finally:
        stop_show(proc)


def test_regexes_are_limited_and_unsupported_ones_explained(client: TestClient) -> None:
    for params in ({"search": "(a)\\1", "regex": "true"}, {"filter": "name~(?=run)"},
                   {"filter": "name~(?<!x)run"}):
        res = client.get("/api/runs", params={"project": "demo", **params})
        assert res.status_code == 400 and "regular expression" in res.json()["error"], params
        assert "Traceback" not in res.text
    assert "RE2" in client.get("/api/runs", params={"project": "demo", "search": "(a)\\1",
                                                     "regex": "true"}).json()["error"]
    for params in ({"search": "a" * 1001, "regex": "true"}, {"filter": "name~" + "a" * 1001}):
        res = client.get("/api/runs", params={"project": "demo", **params})
        assert res.status_code == 400 and "1000" in res.json()["error"]
    with pytest.raises(PatternError, match="at most 1000"):
        runfleet.Api(client.app.state.query.home_root).runs(  # type: ignore[attr-defined]
            "demo", filters={"name": {"$regex": "a" * 1001}})
    ok = client.get("/api/runs", params={"project": "demo", "search": "RUN-[01]$",
                                         "regex": "true"}).json()
    assert [r["name"] for r in ok["runs"]] == ["run-0", "run-1"]  # case-insensitive
    tilde = client.get("/api/runs", params={"project": "demo", "filter": "name~^run-[23]"})
    assert [r["name"] for r in tilde.json()["runs"]] == ["run-2", "run-3"]


# -- request bodies are refused past the limit, never held whole ----------------------------
def _asgi_patch(app: Starlette, run: str, headers: list[tuple[bytes, bytes]],
                chunks: Iterator[bytes]) -> tuple[int, int]:
    """PATCH a run's notes straight through the ASGI app with a body fed chunk by chunk;
    return the status and how many body bytes the app pulled."""
    pulled = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "PATCH", "scheme": "http", "path": "/api/run",
             "raw_path": b"/api/run", "query_string": f"project=demo&run={run}".encode(),
             "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 7760),
             "headers": [(b"host", b"127.0.0.1:7760"), (b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {app.state.token}".encode()), *headers]}
    # In a thread of its own: the browser tests' driver may run an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(anyio.run, app, scope, receive, send).result(timeout=GUARD_S)
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), pulled


def test_a_body_over_the_limit_is_refused_without_being_read_whole(demo_copy: Path) -> None:
    app = create_app(demo_copy)
    with TestClient(app, base_url="http://127.0.0.1", headers=auth(app)) as c:
        run = _first_run(c)
    chunk = 64 << 10
    total = 8 * BODY_LIMIT  # 8 MB offered

    def body() -> Iterator[bytes]:
        yield b'{"notes": "'
        for _ in range(total // chunk):
            yield b"x" * chunk

    # Chunked (no Content-Length): cut as soon as it passes the limit.
    status, pulled = _asgi_patch(app, run, [], body())
    assert status == 413
    assert pulled <= BODY_LIMIT + chunk + 16, pulled
    # A declared Content-Length over the limit: refused before reading anything.
    status, pulled = _asgi_patch(app, run, [(b"content-length", str(total).encode())], body())
    assert status == 413 and pulled == 0
    # Under the limit still works.
    small = iter([b'{"notes": "fine"}'])
    assert _asgi_patch(app, run, [], small) == (200, 17)
    app.state.query.close()


def test_a_streamed_oversized_body_gets_413_over_http(serve: Any, demo_copy: Path) -> None:
    srv = serve(demo_copy)
    run = httpx.get(f"{srv.url}/api/runs", params={"project": "demo"}).json()["runs"][0]["id"]

    def body() -> Iterator[bytes]:
        yield b'{"notes": "'
        for _ in range(64):
            yield b"x" * (64 << 10)  # 4 MB in all, sent chunked

    res = httpx.patch(f"{srv.url}/api/run?project=demo&run={run}", content=body(),
                      headers={**srv.headers(), "Content-Type": "application/json"},
                      timeout=GUARD_S)
    assert res.status_code == 413 and str(BODY_LIMIT) in res.json()["error"]
    assert httpx.get(f"{srv.url}/api/health", timeout=GUARD_S).json()["ok"]
