"""`runfleet show`: port choice (never taking a port in use), printed address and token."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runfleet.cli import main
from runfleet.dashboard.server import bind_socket, dashboard_url
from tests.dashboard.helpers import start_show, stop_show


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    yield int(holder.getsockname()[1])
    holder.close()


def test_a_port_in_use_means_the_next_one(busy_port: int) -> None:
    sock = bind_socket("127.0.0.1", busy_port)
    try:
        assert sock.getsockname()[1] > busy_port
    finally:
        sock.close()
    probe = socket.create_connection(("127.0.0.1", busy_port))  # the holder still has it
    probe.close()


def test_dashboard_url() -> None:
    assert dashboard_url("127.0.0.1", 7760) == "http://127.0.0.1:7760/"
    assert dashboard_url("::1", 80, project="a b/c") == "http://[::1]:80/?project=a%20b%2Fc"
    url = dashboard_url("0.0.0.0", 1, token="tok")
    assert url.endswith("/#token=tok") and "0.0.0.0" not in url


def test_runfleet_show_serves_and_skips_a_busy_port(demo_home: Path, busy_port: int) -> None:
    started = time.monotonic()
    proc, lines = start_show(demo_home, "--port", str(busy_port), "--project", "demo")
    try:
        text = "\n".join(lines)
        assert f"port {busy_port} is in use" in text
        url = re.search(r"http://\S+", text)
        assert url is not None and "?project=demo" in url.group(0)
        base = url.group(0).split("?")[0].rstrip("/")
        assert time.monotonic() - started < 30
        health = httpx.get(f"{base}/api/health", timeout=10).json()
        assert health["ok"] and Path(health["home"]) == demo_home.resolve()
        assert httpx.get(f"{base}/api/projects", timeout=10).json()[0]["name"] == "demo"
    finally:
        assert stop_show(proc) in (0, 130, -2)


def test_runfleet_show_on_all_interfaces_prints_a_token(demo_home: Path) -> None:
    proc, lines = start_show(demo_home, "--host", "0.0.0.0", "--port", "0")
    try:
        text = "\n".join(lines)
        token = re.search(r"#token=(\S+)", text)
        assert token is not None and f"writes need the token {token.group(1)}" in text
        port = int(re.search(r":(\d+)/", text).group(1))  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/runs", params={"project": "demo"}).status_code == 401
        run = httpx.get(f"{base}/api/runs", params={"project": "demo"},
                        headers={"Authorization": f"Bearer {token.group(1)}"}
                        ).json()["runs"][0]
        url = f"{base}/api/run?project=demo&run={run['id']}"
        assert httpx.patch(url, json={"notes": "n"}).status_code == 401
    finally:
        stop_show(proc)


def test_show_rejects_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "--port", "70000"]) == 2
    assert "--port must be between" in capsys.readouterr().err


def test_runfleet_show_on_loopback_prints_the_token_once_and_writes_need_it(
        demo_copy: Path) -> None:
    proc, lines = start_show(demo_copy, "--port", "0", "--project", "demo")
    try:
        token = re.search(r"#token=(\S+)", "\n".join(lines))
        assert token is not None, lines
        assert [line for line in lines if token.group(1) in line] == [
            next(line for line in lines if "http://" in line)]  # only on the URL line
        base = re.search(r"http://[^/\s]+", "\n".join(lines)).group(0)  # type: ignore[union-attr]
        runs = httpx.get(f"{base}/api/runs", params={"project": "demo"}, timeout=30)
        assert runs.status_code == 200  # reads on loopback stay open
        url = f"{base}/api/run?project=demo&run={runs.json()['runs'][0]['id']}"
        assert httpx.patch(url, json={"notes": "n"}, timeout=30).status_code == 401
        ok = httpx.patch(url, json={"notes": "n"}, timeout=30,
                         headers={"Authorization": f"Bearer {token.group(1)}"})
        assert ok.status_code == 200 and ok.json()["notes"] == "n"
    finally:
        stop_show(proc)


def test_runfleet_show_no_token_warns_and_takes_writes_without_one(demo_copy: Path) -> None:
    proc, lines = start_show(demo_copy, "--port", "0", "--no-token")
    try:
        text = "\n".join(lines)
        assert "warning: --no-token" in text and "#token=" not in text
        base = re.search(r"http://[^/\s]+", text).group(0)  # type: ignore[union-attr]
        run = httpx.get(f"{base}/api/runs", params={"project": "demo"}, timeout=30
                        ).json()["runs"][0]
        res = httpx.patch(f"{base}/api/run?project=demo&run={run['id']}",
                          json={"notes": "open"}, timeout=30)
        assert res.status_code == 200 and res.json()["notes"] == "open"
    finally:
        stop_show(proc)
