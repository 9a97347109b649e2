"""The progress table in Jupyter: one output refreshed in place through IPython's display
handle (no widget library, so no ``install "ipywidgets"`` warning), ending on the final
table; executed as a real notebook (nbclient) that defines its own create_model_fn."""

from __future__ import annotations

import textwrap
from pathlib import Path

SETUP = textwrap.dedent("""
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
        return Net(int(config["hidden"]))

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2, generator=g)
    data = [{"x": x[i], "y": x[i].sum()} for i in range(32)]
""")

RUN = textwrap.dedent("""
    exp = runfleet.Experiment("nb", dir={home!r})
    space = runfleet.GridSearch(TorchConfig(hidden=runfleet.List([2, 3]),
                                            per_device_train_batch_size=8,
                                            num_train_epochs=1), trainer="torch")
    results = exp.run_fit(space, create_model_fn, data, num_chunks=2, workers=1)
    print("statuses:", list(results["status"]))
""")


def test_notebook_shows_the_table_without_a_widget_warning(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell(RUN.format(home=str(tmp_path / "home")))])
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = notebook.cells[1]["outputs"]
    everything = repr(outputs)
    assert "ipywidgets" not in everything and "Jupyter support" not in everything
    assert not [o for o in outputs if o.get("output_type") == "error"]
    streams = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    assert "statuses: ['completed', 'completed']" in streams
    assert "Traceback" not in streams
    # one display output, refreshed in place: it ends on the finished table
    shown = [o for o in outputs if o["output_type"] == "display_data"]
    assert len(shown) == 1, everything
    text = shown[0]["data"]["text/plain"]
    html = shown[0]["data"]["text/html"]
    assert text.startswith("nb: 2 runs x 2 chunks on 1 local worker(s)")
    for hidden in ("2", "3"):
        assert any(line.split("│")[2].strip() == hidden and "2/2" in line
                   and "completed" in line for line in text.splitlines() if "│" in line)
    assert "…" not in text
    assert html.startswith("<pre") and "completed" in html
