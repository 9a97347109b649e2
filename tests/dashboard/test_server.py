"""`runfleet show`: port choice (never taking a port in use), printed address and token."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runfleet.cli import main
from runfleet.dashboard.server import bind_socket, dashboard_url
from tests.conftest import PYTHON, subprocess_env


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


def _start_show(home: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen([PYTHON, "-m", "runfleet", "show", "--dir", str(home), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=subprocess_env())
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if "Ctrl+C" in line:
            return proc, lines
    proc.kill()
    raise AssertionError(f"runfleet show did not start: {lines}")


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_runfleet_show_serves_and_skips_a_busy_port(demo_home: Path, busy_port: int) -> None:
    started = time.monotonic()
    proc, lines = _start_show(demo_home, "--port", str(busy_port), "--project", "demo")
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
        assert _stop(proc) in (0, 130, -2)


def test_runfleet_show_on_all_interfaces_prints_a_token(demo_home: Path) -> None:
    proc, lines = _start_show(demo_home, "--host", "0.0.0.0", "--port", "0")
    try:
        text = "\n".join(lines)
        token = re.search(r"#token=(\S+)", text)
        assert token is not None and f"writes need the token {token.group(1)}" in text
        port = int(re.search(r":(\d+)/", text).group(1))  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        run = httpx.get(f"{base}/api/runs", params={"project": "demo"}).json()["runs"][0]
        url = f"{base}/api/run?project=demo&run={run['id']}"
        assert httpx.patch(url, json={"notes": "n"}).status_code == 401
    finally:
        _stop(proc)


def test_show_rejects_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "--port", "70000"]) == 2
    assert "--port must be between" in capsys.readouterr().err
