"""``runfleet runs`` as a table: config and summary columns say which is which."""

from __future__ import annotations

from pathlib import Path

import pytest

import runfleet
from runfleet.cli import main


def test_config_and_summary_columns_of_the_same_name_are_told_apart(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for lr in (0.1, 0.01):
        with runfleet.init(project="p", dir=home, config={"lr": lr}) as run:
            run.log({"lr": lr / 10})  # a scheduled learning rate, logged as a metric
    capsys.readouterr()
    assert main(["runs", "--dir", str(home)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "config.lr" in line)
    titles = [cell.strip() for cell in header.strip("│┃| ").split("┃")]
    assert titles.count("config.lr") == 1 and titles.count("lr") == 1, titles
    body = "\n".join(lines)
    assert "0.01" in body and "0.001" in body  # config.lr 0.1 / summary lr 0.01, ...
