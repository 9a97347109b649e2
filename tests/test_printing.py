"""Tables a person reads stay whole: no cell cut to ``…`` in output that is not a terminal
(pipes, files, CI logs) whatever COLUMNS says, cells folded on a narrow terminal, and a
title on its own line, apart from the table's border."""

from __future__ import annotations

import io
import subprocess
import sys

import pandas as pd
import pytest
from rich.console import Console
from rich.table import Table

import runfleet
from runfleet.demo import rag_demo, sft_demo
from runfleet.printing import print_table
from tests.conftest import subprocess_env

SFT_ROWS = pd.DataFrame([
    {"name": f"run-{i}-with-a-long-name", "peft_config.r": r,
     "training_args.learning_rate": lr, "status": "completed", "last_loss": 1.2345,
     "best_eval_loss": 1.1, "best_eval_chrf": 41.5 + i, "best_eval_bleu": 12.25}
    for i, (r, lr) in enumerate([(4, 2e-3), (4, 5e-4), (16, 2e-3), (16, 5e-4)], 1)])
RAG_ROWS = pd.DataFrame([
    {"name": f"run-{i}", "chunker.size": size, "retriever.kind": kind, "status": "completed",
     "ndcg@10": 0.41, "ndcg@10_ci_low": 0.35, "ndcg@10_ci_high": 0.47, "recall@10": 0.5,
     "recall@10_ci_low": 0.44, "recall@10_ci_high": 0.56, "mrr@10": 0.6,
     "mrr@10_ci_low": 0.52, "mrr@10_ci_high": 0.68, "latency_ms/retrieve_p50": 1.25}
    for i, (size, kind) in enumerate([(128, "dense"), (256, "hybrid")], 1)])


def _captured(width: int, terminal: bool = False) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=terminal,
                   color_system=None, highlight=False)


def _text(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("table", "title", "cells"), [
    (sft_demo.comparison_table(SFT_ROWS), sft_demo.TITLE,
     ["run-1-with-a-long-name", "completed", "0.0005", "1.234", "42.5", "best chrF",
      "best eval loss", "LoRA r"]),
    (rag_demo.comparison_table(RAG_ROWS), rag_demo.TITLE,
     ["0.410 [0.350, 0.470]", "retrieve p50 ms", "hybrid", "completed", "Recall@10"]),
])
def test_not_a_terminal_prints_every_cell_whole_at_a_narrow_width(table, title, cells):
    console = _captured(width=30)
    console.print("a line printed before")
    print_table(table, console, title=title)
    out = _text(console)
    assert "…" not in out
    for cell in cells:
        assert cell in out, cell
    lines = out.splitlines()
    # the title stands on its own line, after a blank one, right above the top border
    at = lines.index(title)
    assert lines[at - 1] == "" and lines[at + 1].startswith("┏")
    assert len({len(line) for line in lines[at + 1:] if line}) == 1  # one rectangle


@pytest.mark.parametrize("width", [90, 100])  # the table needs 110 unfolded, 84 folded
def test_a_narrow_terminal_folds_cells_instead_of_cutting_them(width):
    table = sft_demo.comparison_table(SFT_ROWS.head(1))
    console = _captured(width=width, terminal=True)
    print_table(table, console, title=sft_demo.TITLE)
    out = _text(console)
    assert "…" not in out and "┏" in out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width
    # the one row's cells, each put back together from its folded pieces
    body = [line.split("│")[1:-1] for line in lines[next(
        i for i, line in enumerate(lines) if line.startswith("┡")) + 1:] if "│" in line]
    assert len(body) > 1  # something was folded
    cells = ["".join(piece.strip() for piece in column) for column in zip(*body)]
    assert cells == ["run-1-with-a-long-name", "4", "0.002", "completed", "1.234", "1.1",
                     "42.5", "12.25"]


@pytest.mark.parametrize("width", [24, 80])
def test_a_terminal_too_narrow_for_the_table_gets_one_block_per_row(width):
    console = _captured(width=width, terminal=True)
    print_table(sft_demo.comparison_table(SFT_ROWS), console, title=sft_demo.TITLE)
    out = _text(console)
    assert "…" not in out and "┏" not in out
    assert "run: run-1-with-a-long-name" in out and "best chrF: 42.5" in out
    assert out.count("status: completed") == 4


def test_runs_listing_is_whole_when_piped_with_a_narrow_columns(tmp_path):
    long_value = "a-config-value-much-longer-than-any-terminal-column-would-allow"
    for i in range(2):
        with runfleet.init(project="wide", name=f"run-{i}", dir=tmp_path,
                           system_metrics=False,
                           config={"note": f"{long_value}-{i}", "lr": 0.1 * (i + 1)}) as run:
            run.log({"loss": 0.5 / (i + 1)})
    proc = subprocess.run([sys.executable, "-m", "runfleet", "runs", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120,
                          env=subprocess_env(COLUMNS="40"))
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    assert f"{long_value}-0" in proc.stdout and f"{long_value}-1" in proc.stdout
    assert "completed" in proc.stdout


def test_cells_are_not_read_as_markup(tmp_path):
    with runfleet.init(project="markup", name="[bold]x[/bold]", dir=tmp_path,
                       system_metrics=False, config={"tag": "[red]"}) as run:
        run.log({"loss": 1.0})
    proc = subprocess.run([sys.executable, "-m", "runfleet", "runs", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert "[bold]x[/bold]" in proc.stdout


def test_records_are_plain_column_value_lines():
    table = Table("name", "value")
    table.add_row("a", "1")
    console = _captured(width=5, terminal=True)
    print_table(table, console)
    assert _text(console).splitlines() == ["name: a", "value: 1"]
