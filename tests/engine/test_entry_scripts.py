"""``run_fit`` from a plain script with no ``if __name__ == "__main__":`` guard, from
``python -c`` and from a notebook: the workers never import the caller's ``__main__``, so
the caller's top-level code runs once, and functions defined there reach the workers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import subprocess_env

PROGRAM = textwrap.dedent("""
    import sys
    import torch
    from runfleet import Experiment, GridSearch, List
    from runfleet.fit import TorchConfig

    HOME, MARKER = {home!r}, {marker!r}
    with open(MARKER, "a") as f:  # top-level code: must run once, in this process only
        f.write("ran\\n")

    class Net(torch.nn.Module):  # defined here, in __main__: travels to workers by value
        def __init__(self, hidden):
            super().__init__()
            self.layers = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Tanh(),
                                              torch.nn.Linear(hidden, 1))

        def forward(self, batch):
            return torch.nn.functional.mse_loss(self.layers(batch["x"]).squeeze(-1), batch["y"])

    def make_model(config):
        return Net(int(config["hidden"]))

    g = torch.Generator().manual_seed(0)
    data = [{{"x": torch.randn(4, generator=g), "y": torch.tensor(float(i % 3))}}
            for i in range(32)]
    space = GridSearch(TorchConfig(hidden=List([4, 8]), learning_rate=0.01, max_steps=4,
                                   per_device_train_batch_size=8))
    exp = Experiment("plain", dir=HOME)
    exp.run_fit(space, make_model, data, num_chunks=2, workers=2, progress=False)
    print("statuses:", ",".join(sorted(str(s) for s in exp.runs()["status"])))
""")


def check(home: Path, marker: Path, output: str) -> None:
    assert "statuses: completed,completed" in output, output
    assert marker.read_text() == "ran\n"  # the workers did not run the caller's code


def test_a_script_without_a_main_guard(tmp_path: Path) -> None:
    home, marker = tmp_path / "home", tmp_path / "marker"
    script = tmp_path / "train.py"
    script.write_text(PROGRAM.format(home=str(home), marker=str(marker)))
    out = subprocess.run([sys.executable, str(script)], env=subprocess_env(), cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    check(home, marker, out.stdout)


def test_python_dash_c(tmp_path: Path) -> None:
    home, marker = tmp_path / "home", tmp_path / "marker"
    out = subprocess.run([sys.executable, "-c", PROGRAM.format(home=str(home),
                                                               marker=str(marker))],
                         env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    check(home, marker, out.stdout)


def test_a_notebook(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    home, marker = tmp_path / "home", tmp_path / "marker"
    code = PROGRAM.format(home=str(home), marker=str(marker))
    head, _, tail = code.partition("g = torch.Generator()")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(head),
                                               nbformat.v4.new_code_cell("g = torch.Generator()"
                                                                         + tail)])
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    output = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    check(home, marker, output)
