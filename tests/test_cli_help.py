"""Each command's --help describes that command; the top-level help names every command
family (tracking, dashboard, demo, engine control)."""

from __future__ import annotations

import argparse
import re
from typing import cast

import pytest

from runfleet.cli import build_parser, main

CONTROL = ("stop", "resume", "delete", "clone")


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main([*argv, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())  # argparse's line wrapping undone


def _description(name: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    choices = cast("dict[str, argparse.ArgumentParser]", sub.choices)
    return " ".join(str(choices[name].description).split())


def test_top_level_description_names_the_engine_commands(capsys):
    top = _help(capsys)
    description = top.split("positional arguments")[0]
    assert "fine-tuning" in description
    for word in ("list", "export", "import", "dashboard", "demo", *CONTROL):
        assert re.search(rf"\b{word}\b", description), word


def test_only_stop_speaks_of_a_stop_within_one_training_step(capsys):
    texts = {name: _help(capsys, name) for name in CONTROL}
    assert "within one training step" in texts["stop"]
    for name in ("resume", "delete", "clone"):
        assert "stop within one training step" not in texts[name], name
        assert "within one training step" not in texts[name], name


@pytest.mark.parametrize(("name", "words"), [
    ("stop", ("stops the run", "resume")),
    ("resume", ("from the state kept when it stopped", "Only a stopped run")),
    ("delete", ("hides it from listings", "--purge")),
    ("clone", ("adds a new run", "--set", "--warm")),
])
def test_control_help_describes_its_own_command(name, words):
    description = _description(name)
    for word in words:
        assert word in description, (name, word)
    # no two control commands share their description
    others = {_description(o) for o in CONTROL if o != name}
    assert description not in others
