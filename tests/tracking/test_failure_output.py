"""A value the tracker refuses fails the run and its traceback is printed once, not twice
(once by Python, and not again by the run's failure alert)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import runfleet
from tests.conftest import subprocess_env

REFUSED_GLOBAL = textwrap.dedent("""
    import sys, runfleet
    runfleet.init(project="refuse", dir=sys.argv[1], id="glob")
    runfleet.log({"x": 1.0})
    runfleet.log({"bad": object()})
""")

REFUSED_IN_WITH = textwrap.dedent("""
    import sys, runfleet
    with runfleet.init(project="refuse", dir=sys.argv[1], id="with") as run:
        run.log({"x": 1.0})
        run.log({"bad": object()})
""")


@pytest.mark.parametrize(("code", "run_id"), [(REFUSED_GLOBAL, "glob"),
                                              (REFUSED_IN_WITH, "with")])
def test_refused_value_prints_its_traceback_once(home: Path, code: str, run_id: str) -> None:
    proc = subprocess.run([sys.executable, "-c", code, str(home)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert output.count("Traceback (most recent call last)") == 1, output
    error_lines = [line for line in output.splitlines() if line.startswith("TypeError:")]
    assert len(error_lines) == 1, output
    # the failure itself is still reported in one line naming the run
    assert "failed: TypeError: cannot log 'bad'" in proc.stderr
    run = runfleet.Api(home).run("refuse", run_id)
    assert run.status == "failed"
    assert run.history()["x"].tolist() == [1.0]
    stored = run.alerts()[-1]["text"]  # the whole traceback stays with the run
    assert "Traceback (most recent call last)" in stored and "cannot log 'bad'" in stored
