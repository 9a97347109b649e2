"""Interpreter exit flushes everything; an uncaught exception marks the run failed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import runfleet
from tests.conftest import subprocess_env

NO_FINISH = textwrap.dedent("""
    import sys, runfleet
    runfleet.init(project="exit", dir=sys.argv[1], id="nofinish")
    for i in range(5000):
        runfleet.log({"x": float(i)})
""")

CRASH = textwrap.dedent("""
    import sys, runfleet
    runfleet.init(project="exit", dir=sys.argv[1], id="crash")
    runfleet.log({"x": 1.0})
    raise RuntimeError("boom in training")
""")


def _run(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, str(home)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)


def test_exit_without_finish_flushes_and_completes(home: Path) -> None:
    assert _run(NO_FINISH, home).returncode == 0
    r = runfleet.Api(home).run("exit", "nofinish")
    assert r.status == "completed"
    assert r.history()["x"].tolist() == [float(i) for i in range(5000)]


def test_uncaught_exception_marks_failed_with_traceback(home: Path) -> None:
    proc = _run(CRASH, home)
    assert proc.returncode == 1 and "boom in training" in proc.stderr
    r = runfleet.Api(home).run("exit", "crash")
    assert r.status == "failed"
    assert r.history()["x"].tolist() == [1.0]
    assert "RuntimeError: boom in training" in r.alerts()[-1]["text"]


def test_sys_exit_with_an_error_code_marks_failed(home: Path) -> None:
    code = textwrap.dedent("""
        import sys, runfleet
        runfleet.init(project="exit", dir=sys.argv[1], id="exit3")
        runfleet.log({"x": 1.0})
        sys.exit(3)
    """)
    assert _run(code, home).returncode == 3
    assert runfleet.Api(home).run("exit", "exit3").status == "failed"
