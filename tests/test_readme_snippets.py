"""The README's "Train many configs at once" program runs as written: pasted into a file
and run with ``python`` (no ``__main__`` guard: the workers never import the script)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import runfleet
from tests.conftest import subprocess_env

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_snippet(heading: str) -> str:
    """The first ```python block under the README section ``heading``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else None]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block under {heading!r}"
    return match.group(1)


def test_train_many_configs_snippet_runs_as_a_plain_script(tmp_path: Path) -> None:
    code = readme_snippet("Train many configs at once")
    assert "__main__" not in code
    for name in ("create_model_fn", "train_dataset", "eval_dataset"):
        assert re.search(rf"^(def {name}\(|{name}\b.* = |.*, {name} = )", code, re.M), name
    script = tmp_path / "train.py"
    script.write_text(code, encoding="utf-8")
    home = tmp_path / "home"
    env = subprocess_env(RUNFLEET_DIR=str(home), RUNFLEET_WORKER_THREADS="1")
    env.pop("PYTHONUNBUFFERED", None)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    runs = runfleet.Api(home).runs("sft-quickstart")
    assert len(runs) == 4 and {r.status for r in runs} == {"completed"}
    assert {(r.config["peft_config.r"], r.config["training_args.learning_rate"])
            for r in runs} == {(8, 1e-3), (8, 1e-4), (32, 1e-3), (32, 1e-4)}
    assert all(r.history(keys=["eval_loss"])["eval_loss"].notna().sum() == 2 for r in runs)
    printed = proc.stdout.splitlines()  # the results the script prints, one row per run
    assert sum(line.split()[:3] == [str(i), r.id, r.name] for i, r in enumerate(
        sorted(runs, key=lambda r: r.name)) for line in printed) == 4, proc.stdout


def test_examples_name_a_command_that_runs_them() -> None:
    """An example that says "run it with ``make T``" is run by that target's recipe; and
    track_demo.py points at itself, not at ``make demo`` (which runs ``runfleet demo``)."""
    root = README.parent
    makefile = (root / "Makefile").read_text(encoding="utf-8")

    def recipe(target: str) -> str:
        match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)*)", makefile, re.M)
        assert match, target
        return match.group(1)

    assert "runfleet demo" in recipe("demo")
    for example in sorted((root / "examples").glob("*.py")):
        text = example.read_text(encoding="utf-8")
        for target in re.findall(r"[Rr]un it with ``make (\w+)``", text):
            assert example.name in recipe(target), (example.name, target)
    track = (root / "examples" / "track_demo.py").read_text(encoding="utf-8")
    assert "Run it with ``python examples/track_demo.py``" in track
