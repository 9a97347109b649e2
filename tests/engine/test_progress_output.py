"""The progress table where the output is not a terminal: plain lines (one per change of
a run's chunk or status), the whole table once at the end, and everything the user's own
code prints kept, in order, never drawn over."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from rich.console import Console

from runfleet.engine.progress import ProgressTable
from tests.conftest import subprocess_env

# The user's script: its create_model_fn (defined in __main__, so it travels by value to
# the workers) prints a marker in the worker; the script prints its own lines around
# run_fit. No __main__ guard, as a user would write it.
SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import runfleet
    from runfleet.fit import TorchConfig

    class Net(torch.nn.Module):
        def __init__(self, hidden):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Linear(hidden, 1))

        def forward(self, batch):
            return torch.nn.functional.mse_loss(self.net(batch["x"]).squeeze(-1), batch["y"])

    def create_model_fn(config):
        print(f"USER-MARKER model built hidden={config['hidden']}")
        return Net(int(config["hidden"]))

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2, generator=g)
    data = [{"x": x[i], "y": x[i].sum()} for i in range(32)]
    print("USER-MARKER before run_fit")
    exp = runfleet.Experiment("piped", dir=sys.argv[1])
    space = runfleet.GridSearch(TorchConfig(hidden=runfleet.List([2, 3]),
                                            per_device_train_batch_size=8,
                                            num_train_epochs=1), trainer="torch")
    results = exp.run_fit(space, create_model_fn, data, num_chunks=2, workers=1)
    print("USER-MARKER after run_fit", list(results["status"]))
""")


def test_piped_output_keeps_user_lines_and_prints_progress_as_lines(home: Path) -> None:
    env = subprocess_env(RUNFLEET_WORKER_THREADS="1", COLUMNS="40")
    env.pop("PYTHONUNBUFFERED", None)  # a pipe block-buffers stdout, as for most users
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(home)], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300, env=env)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:]
    lines = out.splitlines()
    # the user's lines, whole, each on its own line, in the order they were printed
    markers = [line for line in lines if "USER-MARKER" in line]
    assert markers[0] == "USER-MARKER before run_fit"
    assert markers[-1] == "USER-MARKER after run_fit ['completed', 'completed']"
    # printed in the workers, once per chunk the model is built for
    assert sorted(markers[1:-1]) == ["USER-MARKER model built hidden=2"] * 2 + \
        ["USER-MARKER model built hidden=3"] * 2
    # each model is built after the run's pending line and before its chunk's end
    first_build = lines.index("USER-MARKER model built hidden=2")
    assert lines.index("run-1  hidden=2  chunk 0/2  step 0/4  loss -  pending") < first_build
    assert first_build < next(i for i, line in enumerate(lines) if "┏" in line)
    # no redraws: no cursor movement or erase sequences anywhere
    assert "\x1b[" not in out
    # one progress line per change of chunk or status, never longer lines cut to the width
    progress = [line for line in lines if re.match(r"run-\d+  hidden=\d", line)]
    for name, hidden in (("run-1", 2), ("run-2", 3)):
        states = [re.search(r"chunk (\d)/2 .* (\w+)$", line).groups()  # type: ignore[union-attr]
                  for line in progress if line.startswith(f"{name}  hidden={hidden}  ")]
        assert states[0] == ("0", "pending") and states[-1] == ("2", "completed"), states
        assert len(states) == len(set(states)), states  # a line only when something changed
        assert ("1", "running") in states
    # the final table is printed once, whole, after the lines
    assert sum("┏" in line for line in lines) == 1
    assert any(re.search(r"run-1 .* 2/2 .* completed", line) for line in lines)
    assert "…" not in out
    assert "piped: 2 runs x 2 chunks on 1 local worker(s) on cpu" in lines  # never wrapped


def test_lines_mode_prints_a_line_only_on_a_change_of_chunk_or_status() -> None:
    console = Console(record=True, width=30, file=open("/dev/null", "w"))  # noqa: SIM115
    table = ProgressTable("exp", [{"lr": 0.1}, {"lr": 0.2}], console=console)
    assert table.mode == "lines"
    row = {"name": "run-1", "config": {"lr": 0.1}, "chunks_done": 0, "num_chunks": 2,
           "step": 0, "total_steps": 4, "loss": None, "status": "pending"}
    table.start([row])
    for step in (1, 2):  # steps within a chunk print nothing
        table.update([{**row, "status": "running", "step": step, "loss": 1.0 / step}])
    table.update([{**row, "status": "running", "chunks_done": 1, "step": 2, "loss": 0.5}])
    table.stop([{**row, "status": "completed", "chunks_done": 2, "step": 4, "loss": 0.25}])
    text = console.export_text()
    assert text.splitlines()[:5] == [
        "exp",
        "run-1  lr=0.1  chunk 0/2  step 0/4  loss -  pending",
        "run-1  lr=0.1  chunk 0/2  step 1/4  loss 1  running",
        "run-1  lr=0.1  chunk 1/2  step 2/4  loss 0.5  running",
        "run-1  lr=0.1  chunk 2/2  step 4/4  loss 0.25  completed"]
    assert "│ run-1 │ 0.1 │" in text  # the whole table at the end, at its full width


def test_live_mode_on_a_narrow_terminal_folds_instead_of_cutting() -> None:
    console = Console(record=True, width=40, force_terminal=True, color_system=None,
                      file=io.StringIO())
    table = ProgressTable("exp", [{"lr": 0.1}, {"lr": 0.2}], console=console)
    assert table.mode == "live"
    row = {"name": "run-with-a-rather-long-name-1", "config": {"lr": 0.1}, "chunks_done": 2,
           "num_chunks": 2, "step": 4, "total_steps": 4, "loss": 0.25, "status": "completed"}
    table.start([row])
    table.stop([row])
    text = console.export_text()
    assert "…" not in text
    lines = text.splitlines()
    body = [line.split("│")[1:-1] for line in lines[next(
        i for i, line in enumerate(lines) if line.startswith("┡")) + 1:] if "│" in line]
    cells = ["".join(piece.strip() for piece in column) for column in zip(*body)]
    assert cells == ["run-with-a-rather-long-name-1", "0.1", "2/2", "4/4", "0.25", "completed"]
